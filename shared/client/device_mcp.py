"""The device-side MCP server (docs/protocol.md §3): the device is the server, the Xiaozhi server the client.

Like the firmware's ``mcp_server.cc``: ``initialize`` (its params, with the vision URL and token, are
kept), ``tools/list`` paginated by tool name (``cursor`` / ``nextCursor``) with user-only tools
hidden unless ``withUserTools``, and ``tools/call`` with its arguments checked against the tool's
``inputSchema`` before the simulated board's state changes. A request whose id is not a JSON number
gets no reply at all (the firmware drops it), and notifications are accepted silently; what breaks
the protocol is counted and noted, never answered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["DEFAULT_TOOLS", "DeviceMcpServer", "is_json_number"]

DEFAULT_TOOLS: list[dict[str, Any]] = [
    {
        "name": "self.get_device_status",
        "description": (
            "Provides the real-time information of the device, including the current status of the audio "
            "speaker, screen, battery, network, etc.\nUse this tool for: \n1. Answering questions about "
            "current condition (e.g. what is the current volume of the audio speaker?)\n2. As the first step "
            "to control the device (e.g. turn up / down the volume of the audio speaker, etc.)"
        ),
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "self.audio_speaker.set_volume",
        "description": (
            "Set the volume of the audio speaker. If the current volume is unknown, you must call "
            "`self.get_device_status` tool first and then call this tool."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {"volume": {"type": "integer", "minimum": 0, "maximum": 100}},
            "required": ["volume"],
        },
    },
    {
        "name": "self.screen.set_brightness",
        "description": "Set the brightness of the screen.",
        "inputSchema": {
            "type": "object",
            "properties": {"brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
            "required": ["brightness"],
        },
    },
    {
        "name": "self.screen.set_theme",
        "description": "Set the theme of the screen. The theme can be `light` or `dark`.",
        "inputSchema": {
            "type": "object",
            "properties": {"theme": {"type": "string"}},
            "required": ["theme"],
        },
    },
]


def is_json_number(value: Any) -> bool:
    """A JSON number as cJSON sees one: an int or a float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class DeviceMcpServer:
    """The MCP server of one simulated board: its tools, its state and the calls it received."""

    def __init__(
        self,
        tools: list[dict[str, Any]],
        page_size: int,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        violation: Callable[[str], None],
    ) -> None:
        self.tools = [dict(t) for t in tools]
        self.page_size = page_size
        self.state: dict[str, Any] = {"volume": 70, "brightness": 75, "theme": "light"}
        self.tool_calls: list[dict[str, Any]] = []
        self.initialize_params: dict[str, Any] | None = None
        self.protocol_violations = 0
        self._send = send  # a JSON-RPC payload -> an ``mcp`` message to the server (never raises on close)
        self._violation = violation

    async def handle(self, msg: dict[str, Any]) -> None:
        """One ``mcp`` message from the server: answer it, or count why the firmware would not."""
        payload = msg.get("payload")
        if not isinstance(payload, dict):
            return self._protocol_violation(f"mcp message without an object payload: {msg}")
        if payload.get("jsonrpc") != "2.0":
            return self._protocol_violation(f"mcp payload without jsonrpc 2.0: {payload}")
        method = payload.get("method")
        if not isinstance(method, str):
            return self._protocol_violation(
                f"mcp payload without a string method (the device is the MCP server): {payload}"
            )
        if method.startswith("notifications"):
            return None  # accepted silently
        params = payload.get("params", {})
        if not isinstance(params, dict):
            return self._protocol_violation(f"mcp params is not an object: {payload}")
        req_id = payload.get("id")
        if not is_json_number(req_id):
            return self._protocol_violation(
                f"mcp request id {req_id!r} is not a JSON number (the firmware does not reply)"
            )

        if method == "initialize":
            self.initialize_params = params
            await self._reply(
                req_id,
                result={
                    "protocolVersion": "2024-11-05",
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "sim-board", "version": "2.4.2"},
                },
            )
        elif method == "tools/list":
            await self._reply(req_id, result=self.tools_page(params))
        elif method == "tools/call":
            await self._tools_call(req_id, params)
        else:
            await self._reply(req_id, error={"code": -32601, "message": f"Method not implemented: {method}"})
        return None

    def tools_page(self, params: dict[str, Any]) -> dict[str, Any]:
        """The ``tools/list`` result for these params: the page starting at ``cursor`` (a tool name)."""
        with_user = bool(params.get("withUserTools", False))
        visible = [t for t in self.tools if with_user or not t.get("user_only")]
        cursor = params.get("cursor", "")
        start = 0
        if isinstance(cursor, str) and cursor:
            names = [t["name"] for t in visible]
            if cursor not in names:
                return {"tools": [], "nextCursor": ""}
            start = names.index(cursor)
        page = visible[start : start + self.page_size]
        rest = visible[start + self.page_size :]
        tools = [{k: v for k, v in t.items() if k != "user_only"} for t in page]
        return {"tools": tools, "nextCursor": rest[0]["name"] if rest else ""}

    async def _tools_call(self, req_id: Any, params: dict[str, Any]) -> None:
        name = params.get("name")
        args = params.get("arguments", {})
        self.tool_calls.append({"id": req_id, "name": name, "arguments": args, "at": time.monotonic()})
        tool = next((t for t in self.tools if t["name"] == name), None)
        if tool is None:
            await self._reply(req_id, error={"code": -32601, "message": f"Unknown tool: {name}"})
            return
        if not isinstance(args, dict):
            await self._reply(req_id, error={"code": -32602, "message": "arguments must be an object"})
            return
        problem = self._invalid_argument(tool.get("inputSchema", {}), args)
        if problem:
            await self._reply(req_id, error={"code": -32602, "message": problem})
            return
        text = self._apply(name, args)
        await self._reply(req_id, result={"content": [{"type": "text", "text": text}], "isError": False})

    @staticmethod
    def _invalid_argument(schema: dict[str, Any], args: dict[str, Any]) -> str:
        """What is wrong with ``args`` for this ``inputSchema`` (the firmware's message), or ""."""
        for arg, spec in (schema.get("properties") or {}).items():
            if arg not in args:
                if arg in (schema.get("required") or []):
                    return f"Missing valid argument: {arg}"
                continue
            value = args[arg]
            kind = spec.get("type")
            ok = (
                (kind == "integer" and isinstance(value, int) and not isinstance(value, bool))
                or (kind == "number" and is_json_number(value))
                or (kind == "string" and isinstance(value, str))
                or (kind == "boolean" and isinstance(value, bool))
                or kind is None
            )
            if ok and kind == "integer":
                ok = spec.get("minimum", value) <= value <= spec.get("maximum", value)
            if not ok:
                return f"Invalid argument: {arg}={value!r}"
        return ""

    def _apply(self, name: Any, args: dict[str, Any]) -> str:
        """Carry out a validated call on the simulated board; the text of its result."""
        if name == "self.audio_speaker.set_volume":
            self.state["volume"] = args["volume"]
        elif name == "self.screen.set_brightness":
            self.state["brightness"] = args["brightness"]
        elif name == "self.screen.set_theme":
            self.state["theme"] = args["theme"]
        elif name == "self.get_device_status":
            return json.dumps(
                {
                    "audio_speaker": {"volume": self.state["volume"]},
                    "screen": {"brightness": self.state["brightness"], "theme": self.state["theme"]},
                    "battery": {"level": 87, "charging": False},
                    "network": {"type": "wifi", "ssid": "sim", "signal": "strong"},
                },
                separators=(",", ":"),
            )
        return "true"

    async def _reply(self, req_id: Any, *, result: Any = None, error: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id}
        if error is not None:
            payload["error"] = error
        else:
            payload["result"] = result
        await self._send(payload)

    def _protocol_violation(self, note: str) -> None:
        self.protocol_violations += 1
        self._violation(note)
