"""deploy/prometheus, checked by the real promtool: rules, their unit tests, the scrape config.

``promtool check rules`` parses every rule, ``promtool test rules`` runs the unit tests in
deploy/prometheus/tests (input series, expected alerts with labels and annotations, expected
recording-rule values) and ``promtool check config`` the example configuration. Around that,
what promtool cannot know: every alert has a severity, a summary, a description and a runbook
that exists in docs/operations.md, every alert is tested both firing and quiet, every recording
rule is tested or feeds one that is, and the Kubernetes scrape job is a valid scrape job too.

promtool comes with Debian's ``prometheus`` package, which scripts/install.sh installs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.yml"))
OPERATIONS = ROOT / "docs" / "operations.md"
SEVERITIES = {"critical", "warning"}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found on PATH: it comes with Debian's `prometheus` package; run scripts/install.sh "
            "(or apt-get install prometheus)"
        )
    return path


def run(cmd: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (
        f"{' '.join(proc.args)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )


def rules() -> list[dict[str, Any]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out.extend(group["rules"])
    return out


def alerts() -> list[dict[str, Any]]:
    return [r for r in rules() if "alert" in r]


def recordings() -> list[dict[str, Any]]:
    return [r for r in rules() if "record" in r]


def unit_tests() -> list[dict[str, Any]]:
    return [test for path in TEST_FILES for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]]


# -- promtool -------------------------------------------------------------------------------------
def test_files_exist() -> None:
    assert RULE_FILES, "no rule files in deploy/prometheus/rules"
    assert TEST_FILES, "no promtool unit tests in deploy/prometheus/tests"


def test_promtool_check_rules(promtool: str) -> None:
    assert_ok(run([promtool, "check", "rules", *map(str, RULE_FILES)]))


def test_promtool_unit_tests(promtool: str) -> None:
    proc = run([promtool, "test", "rules", *map(str, TEST_FILES)])
    assert_ok(proc)
    assert proc.stdout.count("SUCCESS") == len(TEST_FILES), proc.stdout


def test_promtool_check_config(promtool: str) -> None:
    proc = run([promtool, "check", "config", str(PROM / "prometheus.yml")])
    assert_ok(proc)
    # The config loads the rule files promtool checked above, not an empty glob.
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in proc.stdout, proc.stdout


def test_kubernetes_scrape_job(promtool: str, tmp_path: Path) -> None:
    """kubernetes-workers.scrape.yml put in place of prometheus.yml's worker job is a valid config.

    Debian's promtool is built without Kubernetes discovery; there the pod discovery is replaced
    by a static target carrying the same ``__meta_kubernetes_*`` labels, so the relabelling is
    still checked."""
    config = yaml.safe_load((PROM / "prometheus.yml").read_text(encoding="utf-8"))
    (k8s_job,) = yaml.safe_load((PROM / "kubernetes-workers.scrape.yml").read_text(encoding="utf-8"))["scrape_configs"]
    assert k8s_job["job_name"] == "xiaozhi-cloud-worker"
    config["rule_files"] = [str(PROM / "rules" / "*.yml")]
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(PROM / f) for f in sd["files"]]
    jobs = [j for j in config["scrape_configs"] if j["job_name"] != k8s_job["job_name"]]
    config["scrape_configs"] = [*jobs, k8s_job]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = run([promtool, "check", "config", str(path)])
    if proc.returncode != 0 and "kubernetes_sd_configs not found" in proc.stdout + proc.stderr:
        meta = {
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
            "__meta_kubernetes_pod_annotation_prometheus_io_port": "9400",
            "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
            "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_namespace": "xiaozhi",
            "__meta_kubernetes_pod_name": "llm-worker-0",
        }
        del k8s_job["kubernetes_sd_configs"]
        k8s_job["static_configs"] = [{"targets": ["10.0.0.7:8080"], "labels": meta}]
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        proc = run([promtool, "check", "config", str(path)])
    assert_ok(proc)
    # What prometheus-adapter (deploy/k8s/prometheus-adapter) relies on: namespace and pod labels.
    targets = {r.get("target_label") for r in k8s_job["relabel_configs"]}
    assert {"namespace", "pod", "__address__"} <= targets
    assert "role" not in targets, "a `role` target label would rename the worker metrics' own role label"


def test_file_sd_targets() -> None:
    for path in sorted((PROM / "targets").glob("*.yml")):
        groups = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(groups, list), f"{path.name}: a file_sd file is a list of target groups"
        for group in groups:
            for target in group["targets"]:
                assert re.fullmatch(r"[\w.-]+:\d+", target), f"{path.name}: {target!r} is not host:port"
            labels = group.get("labels", {})
            assert all(isinstance(v, str) for v in labels.values()), f"{path.name}: label values must be strings"
            assert "role" not in labels, f"{path.name}: `role` would clash with the worker metrics' own label"
            if path.name.startswith("edges"):
                assert "node" in labels, f"{path.name}: every edge target names its node"
                assert labels.get("cloud", "none") == "none", f'{path.name}: cloud is only ever "none"'


# -- what promtool does not check ------------------------------------------------------------------
def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_alert_has_severity_annotations_and_runbook() -> None:
    anchors = _anchors(OPERATIONS.read_text(encoding="utf-8"))
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    for alert in alerts():
        name = alert["alert"]
        assert name.startswith("Xiaozhi"), name
        assert alert.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity must be one of {SEVERITIES}"
        notes = alert.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert notes.get(key, "").strip(), f"{name}: no {key} annotation"
        url = notes["runbook_url"]
        assert url == f"docs/operations.md#{name.lower()}", f"{name}: runbook_url {url!r}"
        assert name.lower() in anchors, f"{name}: docs/operations.md has no section '### {name}'"


def test_every_alert_is_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - fired == set(), f"alerts with no test that fires them: {sorted(names - fired)}"
    assert names - quiet == set(), f"alerts with no test where they stay quiet: {sorted(names - quiet)}"
    assert (fired | quiet) - names == set(), f"tests of alerts that do not exist: {sorted((fired | quiet) - names)}"


def test_recording_rules_named_and_covered() -> None:
    """level:metric:operations, and each recording is checked by a promql_expr_test or feeds a rule
    (alert or recording) whose result is."""
    records = {r["record"]: r["expr"] for r in recordings()}
    for name in records:
        assert re.fullmatch(r"[a-z_]+:xiaozhi_[a-z0-9_]+:[a-z0-9_]+", name), f"{name}: not level:metric:operations"
    tested_exprs = [case["expr"] for test in unit_tests() for case in test.get("promql_expr_test", [])]
    alert_exprs = [a["expr"] for a in alerts()]

    def used_in(name: str, exprs: list[str]) -> bool:
        return any(re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", e) for e in exprs)

    covered = {n for n in records if used_in(n, tested_exprs) or used_in(n, alert_exprs)}
    changed = True
    while changed:  # a recording that feeds a covered one is covered through it
        changed = False
        for name in set(records) - covered:
            if any(used_in(name, [records[c]]) for c in covered):
                covered.add(name)
                changed = True
    assert set(records) - covered == set(), f"recording rules no test reaches: {sorted(set(records) - covered)}"
