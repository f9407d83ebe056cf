"""The settings of every service: one loader, one precedence, one way to fail.

Each service has its own typed schema (the edge's in ``edge_node/config.py``, the cloud tier's in
``cloud/config.py``, provisioning's in ``provisioning/config.py``), built from ``Settings`` sections
and read by ``load_settings``: defaults < YAML file < environment < explicit overrides (flags). The
environment follows one rule, ``XIAOZHI_<SERVICE>__<SECTION>__<KEY>`` (the edge's service part is
empty: ``XIAOZHI__SERVER__PORT=9000``), values parsed as YAML scalars or lists, so a field tech can
change one value on a box without editing the file that Ansible renders. Unknown keys are refused
with their path, so a typo never silently falls back to a default (docs/configuration.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

ENV_PREFIX = "XIAOZHI__"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container or taskset narrows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def pool_size(workers: int, per_core: float = 1.0, extra: int = 0) -> int:
    """A stage's ``workers`` setting resolved: 0 means ``per_core`` instances per usable core + ``extra``."""
    return workers if workers > 0 else max(1, int(usable_cores() * per_core) + extra)


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message says which key and why."""


class Settings(BaseModel):
    """A section of settings: unknown keys are refused, and assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _env_overrides(environ: dict[str, str], prefix: str = ENV_PREFIX) -> dict[str, Any]:
    """Turn ``XIAOZHI__A__B=v`` into ``{"a": {"b": v}}``; values are parsed as YAML scalars/lists."""
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(prefix):
            continue
        parts = [p.lower() for p in key[len(prefix) :].split("__") if p]
        if not parts:
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment override {key} conflicts with another override")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment override {key}: {yaml_problem(exc)}") from exc
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML parse error on one line: what is wrong and where (PyYAML's own text spans several lines)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (empty file: empty mapping); ConfigError otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {yaml_problem(exc)}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return loaded


def validation_message(exc: ValidationError) -> str:
    """One line per problem, each naming the key's path: what an operator needs to fix it."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors())


M = TypeVar("M", bound=BaseModel)


def load_settings(
    model: type[M],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    prefix: str = ENV_PREFIX,
) -> M:
    """Defaults < YAML file < environment (``prefix`` + ``SECTION__KEY``) < explicit overrides."""
    data: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    data = _merge(data, _env_overrides(dict(os.environ if environ is None else environ), prefix))
    if overrides:
        data = _merge(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {validation_message(exc)}") from exc


class LogConfig(Settings):
    level: str = "INFO"
    json_format: bool = False
