"""Real helper processes the tests start: the shared ones (bench/processes.py) and Prometheus."""

from __future__ import annotations

from pathlib import Path

from bench.processes import Proc, ready_field, spawn

__all__ = ["Proc", "ready_field", "spawn", "start_prometheus"]


def start_prometheus(work: Path, jobs: dict[str, list[str]], port: int) -> Proc:
    """A real Prometheus (Debian's package) scraping ``jobs`` (job -> host:port targets) every second."""
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": hosts}]} for job, hosts in jobs.items()],
    }
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return spawn(
        "prometheus",
        [
            "prometheus",
            f"--config.file={path}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        "Server is ready to receive web requests",
        timeout_s=60,
    )
