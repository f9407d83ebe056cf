"""What NATS adds to an escalated turn: the same chat request straight to the endpoint vs edge -> cloud -> edge.

    .venv/bin/python -m bench.nats_overhead [--requests 60] [--json out.json] [--plain-leaf]

Starts the real topology on loopback: a hub nats-server (JetStream, leaf port), an edge leaf
server linked to it, an OpenAI-compatible server on the bundled model (llama-cpp-python's: the
stand-in for vLLM) and a cloud LLM worker process. Then, alternating so both see the same machine
state, it sends the same short chat request

- directly: httpx streaming to the endpoint (what the cloud worker itself does), and
- through NATS: the edge's ``CloudLink.chat_stream`` on the leaf server, over the leaf link to the
  hub, to the worker's queue group, streamed back chunk by chunk,

and reports time to the first chunk and to the end for each, as medians and p95, and the
difference (the NATS overhead). The prompt is identical every time, so llama.cpp serves it from its
prompt cache and the model's own time is short and steady.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from edge_node.config import EdgeConfig
from shared import models
from shared.nats.configs import cloud_config, edge_config, new_credential, save_credential
from shared.nats.pki import LeafPki
from shared.nats.server import free_port, start_nats_server
from shared.openai_stream import stream_chat
from shared.routing_config import RouteLimits

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [
    {"role": "system", "content": "You are a helpful voice assistant. Give short, correct answers."},
    {"role": "user", "content": "What is the capital of France?"},
]
MAX_TOKENS = 12


def _wait_for(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{path.name}: {needle!r} never appeared:\n{path.read_text(errors='replace')[-2000:]}")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 2),
        "p95": round(_pct(values, 0.95), 2),
        "min": round(min(values), 2),
    }


async def _measure(openai_url: str, leaf_url: str, requests: int) -> dict[str, Any]:
    from edge_node.cloud_link.link import CloudLink

    cfg = EdgeConfig.model_validate({"node_id": "bench-edge", "nats": {"url": leaf_url}})
    link = CloudLink(cfg.nats, cfg.node_id)
    await link.start()
    if not await link.wait_connected(10):
        raise RuntimeError("the edge link did not connect")
    limits = RouteLimits(accept_timeout_s=2.0, first_token_timeout_s=10.0, retries=0)
    rows: dict[str, dict[str, list[float]]] = {k: {"first_ms": [], "total_ms": []} for k in ("direct", "nats")}
    async with httpx.AsyncClient(timeout=30) as http:

        async def direct() -> tuple[float, float]:
            t0 = time.perf_counter()
            first = None
            async for _ in stream_chat(http, openai_url, "smollm2", MESSAGES, MAX_TOKENS, 0.0):
                if first is None:
                    first = time.perf_counter()
            end = time.perf_counter()
            return ((first or end) - t0) * 1000, (end - t0) * 1000

        async def via_nats(i: int) -> tuple[float, float]:
            t0 = time.perf_counter()
            first = None
            async for _ in link.chat_stream(MESSAGES, MAX_TOKENS, f"bench-{i}", 1, limits, 0.0):
                if first is None:
                    first = time.perf_counter()
            end = time.perf_counter()
            return ((first or end) - t0) * 1000, (end - t0) * 1000

        for _ in range(3):  # warm both paths (prompt cache, connections, interest over the leaf)
            await direct()
            await via_nats(-1)
        for i in range(requests):
            for name in ("direct", "nats") if i % 2 == 0 else ("nats", "direct"):
                first_ms, total_ms = await (direct() if name == "direct" else via_nats(i))
                rows[name]["first_ms"].append(first_ms)
                rows[name]["total_ms"].append(total_ms)
    await link.stop()
    out: dict[str, Any] = {name: {k: _summary(v) for k, v in r.items()} for name, r in rows.items()}
    out["overhead_ms"] = {
        "first_chunk_p50": round(out["nats"]["first_ms"]["p50"] - out["direct"]["first_ms"]["p50"], 2),
        "first_chunk_p95": round(out["nats"]["first_ms"]["p95"] - out["direct"]["first_ms"]["p95"], 2),
        "total_p50": round(out["nats"]["total_ms"]["p50"] - out["direct"]["total_ms"]["p50"], 2),
        "total_p95": round(out["nats"]["total_ms"]["p95"] - out["direct"]["total_ms"]["p95"], 2),
    }
    out["requests"] = requests
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bench.nats_overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=60, help="requests per path (default 60)")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--plain-leaf", action="store_true", help="the leaf link without TLS, to measure what TLS adds")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="nats-overhead-"))
    procs: list[subprocess.Popen[bytes]] = []
    servers = []
    try:
        oport = free_port()
        olog = work / "openai.log"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(models.smollm2_gguf()),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(oport),
                    "--n_threads",
                    "1",
                    "--n_ctx",
                    "2048",
                    "--model_alias",
                    "smollm2",
                    "--interrupt_requests",
                    "False",
                ],
                stdout=olog.open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        edge_cred, cloud_cred = new_credential("bench-edge"), new_credential("cloud", "cloud")
        pki = LeafPki(work / "tls")  # the leaf link over mutual TLS, as deployed
        pki.ensure_ca()
        pki.ensure_hub(["127.0.0.1"])
        pki.ensure_edge("bench-edge")
        hub_port, leaf_port, edge_port = free_port(), free_port(), free_port()
        servers.append(
            start_nats_server(
                cloud_config(
                    server_name="hub",
                    edges=[edge_cred],
                    clients=[cloud_cred],
                    tls=None if args.plain_leaf else pki.hub_files(),
                    host="127.0.0.1",
                    port=hub_port,
                    leaf_port=leaf_port,
                    http_port=None,
                    store_dir=str(work / "js"),
                ),
                work,
                "hub",
                "127.0.0.1",
                hub_port,
            )
        )
        servers.append(
            start_nats_server(
                edge_config(
                    server_name="bench-edge",
                    cloud_leaf_urls=[f"nats-leaf://127.0.0.1:{leaf_port}"],
                    credential=edge_cred,
                    tls=None if args.plain_leaf else pki.edge_files("bench-edge"),
                    port=edge_port,
                ),
                work,
                "leaf",
                "127.0.0.1",
                edge_port,
            )
        )
        _wait_for(olog, "Uvicorn running", procs[0])
        cred = work / "cloud.json"
        save_credential(cloud_cred, cred)
        wlog = work / "worker.log"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cloud.cli",
                    "worker",
                    "--role",
                    "llm",
                    "--nats",
                    f"nats://127.0.0.1:{hub_port}",
                    "--credential",
                    str(cred),
                    "--openai-url",
                    f"http://127.0.0.1:{oport}/v1",
                    "--model",
                    "smollm2",
                    "--http-port",
                    "0",
                    "--log-level",
                    "WARNING",
                ],
                cwd=ROOT,
                stdout=wlog.open("wb"),
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        )
        _wait_for(wlog, "READY worker=", procs[1])
        time.sleep(1.0)  # the leaf learns the worker's interest
        result = asyncio.run(_measure(f"http://127.0.0.1:{oport}/v1", f"nats://127.0.0.1:{edge_port}", args.requests))
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for server in servers:
            server.stop()
    result["leaf_link"] = "plain" if args.plain_leaf else "mutual TLS"
    d, n, o = result["direct"], result["nats"], result["overhead_ms"]
    print(f"{args.requests} requests per path, alternating, leaf link {result['leaf_link']}; ms (p50 / p95):")
    print(
        f"  direct to the endpoint : first chunk {d['first_ms']['p50']} / {d['first_ms']['p95']}, "
        f"end {d['total_ms']['p50']} / {d['total_ms']['p95']}"
    )
    print(
        f"  edge -> NATS -> cloud  : first chunk {n['first_ms']['p50']} / {n['first_ms']['p95']}, "
        f"end {n['total_ms']['p50']} / {n['total_ms']['p95']}"
    )
    print(
        f"  NATS overhead          : first chunk {o['first_chunk_p50']} / {o['first_chunk_p95']}, "
        f"end {o['total_p50']} / {o['total_p95']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
