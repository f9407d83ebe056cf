"""Errors raised by the engines."""

from __future__ import annotations

__all__ = ["ModelError"]


class ModelError(RuntimeError):
    """A model file that cannot be loaded; raised at startup so a bad file never kills a live node."""
