"""Operators' own tools, as Python entry points in the ``xiaozhi.tools`` group.

A plugin is a distribution that declares, in its ``pyproject.toml``::

    [project.entry-points."xiaozhi.tools"]
    my_tool = "my_package.module:make_tool"

where ``make_tool(settings: dict) -> ServerTool`` builds the tool from its section of the edge config
(``tools.plugins.my_tool``). Only plugins named in ``tools.plugins`` are loaded, so installing a
package never adds a tool by itself. One that is named but missing, or whose factory fails, stops the
node at start with the reason: a tool an operator configured must not silently be absent.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from edge_node.tools.base import ServerTool

__all__ = ["GROUP", "available", "load_plugins"]

GROUP = "xiaozhi.tools"
log = logging.getLogger("edge_node.tools")


def available() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_plugins(configured: dict[str, dict[str, Any]]) -> list[ServerTool]:
    found = available()
    tools: list[ServerTool] = []
    for name, settings in configured.items():
        ep = found.get(name)
        if ep is None:
            raise ValueError(f"tools.plugins.{name}: no such plugin installed (installed: {sorted(found) or 'none'})")
        try:
            tool = ep.load()(dict(settings or {}))
        except Exception as exc:
            raise ValueError(f"tools.plugins.{name}: {ep.value} could not be set up: {exc}") from exc
        for attr in ("name", "description", "parameters", "call"):
            if not hasattr(tool, attr):
                raise ValueError(f"tools.plugins.{name}: {ep.value} returned a tool without {attr!r}")
        log.info("tool plugin %s loaded from %s as %s", name, ep.value, tool.name)
        tools.append(tool)
    return tools
