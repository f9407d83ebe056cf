"""The device client's exceptions, in a module of their own because every part raises or catches them.

The transport raises ``ChannelClosed``, the uplink catches it (a closed socket ends a stream quietly,
like the firmware dropping its send queue) and ``DeviceClient`` raises ``HelloTimeout``; callers catch
``DeviceClientError`` for all of them. ``shared.client.device`` re-exports the three.
"""

from __future__ import annotations

__all__ = ["ChannelClosed", "DeviceClientError", "HelloTimeout"]


class DeviceClientError(RuntimeError):
    """The device client could not do what was asked (connect, hello, send)."""


class HelloTimeout(DeviceClientError):
    """No valid server hello (type hello, transport websocket) within the firmware's 10 s."""


class ChannelClosed(DeviceClientError):
    """The WebSocket is closed (by the server, the network, or ``close()``)."""
