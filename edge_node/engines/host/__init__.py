"""Engines in their own Python environment, run as child processes (``docs/engine-host.md``)."""

from edge_node.engines.host.client import EngineHost, EngineHostError, HostedTts, host_python

__all__ = ["EngineHost", "EngineHostError", "HostedTts", "host_python"]
