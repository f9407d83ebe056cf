"""MCP over the Xiaozhi channel (docs/protocol.md §3): the device is the MCP *server*, we are the
client.

JSON-RPC 2.0 objects travel inside ``{"type":"mcp","payload":{...}}``. This module builds the
requests the server sends (``initialize``, paginated ``tools/list``, ``tools/call``), classifies what
the device sends back, turns the device's dotted tool names into LLM function names and back, and
keeps the legacy IoT descriptor parser for firmware <= 1.7.

Firmware facts this module encodes (FW ``mcp_server.cc``):

* ``id`` must be a JSON number and is read as a C ``int``: ids are ints in ``0 .. 2**31-1``;
* ``tools/list`` pages are cut at ~8000 bytes; ``nextCursor`` is absent on the last page;
* error replies are ``{"error": {"message": "..."}}`` *without* a ``code``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import BAD_FIELD, ProtocolError

JSONRPC = "2.0"
MCP_PROTOCOL_VERSION = "2024-11-05"
CLIENT_INFO = {"name": "xiaozhi-fleet", "version": "0.1.0"}
# Code used when the device gives none (its ReplyError omits it) and for isError tool results.
DEVICE_ERROR_CODE = -32000
MAX_ID = 2**31 - 1
LLM_NAME_MAX = 64

_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
_UNSAFE_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


class McpError(Exception):
    """A JSON-RPC error from the device, or a tool result flagged ``isError``.

    Raised to the tool-calling code so the LLM can be told the call failed with the device's text.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"MCP error {self.code}: {self.message}"


# --------------------------------------------------------------------------------------------------
# requests (server -> device)


def request(id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-RPC request payload. ``params`` is omitted when None (the device accepts that)."""
    if isinstance(id, bool) or not isinstance(id, int):
        raise TypeError(f"MCP request id must be an int (the device drops other ids), got {type(id).__name__}")
    if not 0 <= id <= MAX_ID:
        raise ValueError(f"MCP request id {id} outside 0..{MAX_ID} (the device stores it in a C int)")
    if not isinstance(method, str) or not method:
        raise TypeError("MCP method must be a non-empty string")
    msg: dict[str, Any] = {"jsonrpc": JSONRPC, "id": id, "method": method}
    if params is not None:
        if not isinstance(params, dict):
            raise TypeError("MCP params must be a dict (the device rejects non-object params)")
        msg["params"] = params
    return msg


def initialize_request(id: int, vision_url: str = "", vision_token: str = "") -> dict[str, Any]:
    """``initialize``; the camera's explain endpoint is announced only when ``vision_url`` is set.

    The token is left out when empty so the device does not send a bare ``Authorization: Bearer``.
    """
    capabilities: dict[str, Any] = {}
    if vision_url:
        vision = {"url": vision_url}
        if vision_token:
            vision["token"] = vision_token
        capabilities["vision"] = vision
    params = {
        "protocolVersion": MCP_PROTOCOL_VERSION,
        "capabilities": capabilities,
        "clientInfo": dict(CLIENT_INFO),
    }
    return request(id, "initialize", params)


def tools_list_request(id: int, cursor: str = "", with_user_tools: bool = False) -> dict[str, Any]:
    """One page of ``tools/list``; pass the previous page's ``nextCursor`` to continue."""
    params: dict[str, Any] = {"cursor": cursor}
    if with_user_tools:
        params["withUserTools"] = True
    return request(id, "tools/list", params)


def tools_call_request(id: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """``tools/call`` with the *device* tool name (map LLM names back with :class:`ToolNameMap`)."""
    if not isinstance(arguments, dict):
        raise TypeError("tool arguments must be a dict (the device rejects non-object arguments)")
    return request(id, "tools/call", {"name": name, "arguments": arguments})


# --------------------------------------------------------------------------------------------------
# device -> server payloads


@dataclass(frozen=True, slots=True)
class McpResponse:
    """Reply to one of our requests: exactly one of ``result`` / ``error`` is set."""

    id: int | None
    result: dict[str, Any] | None
    error: McpError | None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class McpNotification:
    """A device-initiated ``notifications/...`` message; needs no reply."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)


def _bad(what: str) -> ProtocolError:
    return ProtocolError(BAD_FIELD, f"MCP payload: {what}")


def _response_id(payload: dict[str, Any]) -> int | None:
    value = payload["id"]
    if value is None:  # JSON-RPC: error replies to unparseable requests carry id null
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'id' must be a number or null, got {type(value).__name__}")
    return value


def _parse_error(value: object) -> McpError:
    if not isinstance(value, dict):
        raise _bad("'error' must be an object")
    code = value.get("code", DEVICE_ERROR_CODE)
    if isinstance(code, float) and code.is_integer():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int):
        raise _bad("'error.code' must be an integer")
    message = value.get("message", "")
    if message is None:
        message = ""
    if not isinstance(message, str):
        raise _bad("'error.message' must be a string")
    return McpError(code, message or "device reported an error", value.get("data"))


def parse_payload(payload: dict[str, Any]) -> McpResponse | McpNotification:
    """Classify a device MCP payload: a response to our request, or a notification.

    Anything else (a request from the device, missing ``jsonrpc``, both/neither of result and error)
    raises ProtocolError("bad_field"): we never expose methods to the device.
    """
    if not isinstance(payload, dict):
        raise _bad("not an object")
    if payload.get("jsonrpc") != JSONRPC:
        raise _bad("'jsonrpc' must be \"2.0\"")
    method = payload.get("method")
    if method is not None:
        if not isinstance(method, str):
            raise _bad("'method' must be a string")
        if not method.startswith("notifications"):
            raise _bad(f"unexpected request {method[:40]!r} from the device")
        params = payload.get("params")
        if params is None:
            params = {}
        elif not isinstance(params, dict):
            raise _bad("'params' must be an object")
        return McpNotification(method, params)
    if "id" not in payload:
        raise _bad("neither a response (no 'id') nor a notification (no 'method')")
    msg_id = _response_id(payload)
    # Some JSON-RPC stacks send the unused member as null; treat null as absent on both sides.
    has_result = payload.get("result") is not None
    has_error = payload.get("error") is not None
    if has_result == has_error:
        raise _bad("a response needs exactly one of 'result' and 'error'")
    if has_error:
        return McpResponse(msg_id, None, _parse_error(payload["error"]))
    result = payload["result"]
    if not isinstance(result, dict):
        raise _bad("'result' must be an object")
    return McpResponse(msg_id, result, None)


# --------------------------------------------------------------------------------------------------
# tools


@dataclass(frozen=True, slots=True)
class Tool:
    """One device tool as listed by ``tools/list``; ``name`` is the device's dotted name."""

    name: str
    description: str
    input_schema: dict[str, Any]


def parse_tools_list(result: dict[str, Any]) -> tuple[list[Tool], str]:
    """Tools of one ``tools/list`` page and the cursor for the next ("" when this was the last).

    A malformed single tool entry is skipped rather than failing the page: losing one tool is better
    than losing all of them. A cursor equal to the one requested means the device is stuck; the
    caller should stop paginating then.
    """
    if not isinstance(result, dict):
        raise _bad("tools/list result must be an object")
    raw_tools = result.get("tools")
    if raw_tools is None:
        raw_tools = []
    if not isinstance(raw_tools, list):
        raise _bad("tools/list 'tools' must be an array")
    tools: list[Tool] = []
    for item in raw_tools:
        if not isinstance(item, dict):
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name:
            continue
        description = item.get("description")
        if not isinstance(description, str):
            description = ""
        schema = item.get("inputSchema")
        if not isinstance(schema, dict):
            schema = dict(_EMPTY_SCHEMA)
        tools.append(Tool(name, description, schema))
    cursor = result.get("nextCursor")
    if cursor is None:
        cursor = ""
    if not isinstance(cursor, str):
        raise _bad("tools/list 'nextCursor' must be a string")
    return tools, cursor


def llm_tool_name(name: str) -> str:
    """An LLM-safe function name (``^[a-zA-Z0-9_-]{1,64}$``) for a device tool name.

    Every other character (the dots of ``self.audio_speaker.set_volume``, non-ASCII) becomes "_".
    Not injective: use :class:`ToolNameMap` to resolve collisions and to map back.
    """
    safe = _UNSAFE_NAME_CHARS.sub("_", name)[:LLM_NAME_MAX]
    return safe or "_"


class ToolNameMap:
    """Bidirectional device-name <-> LLM-name registry for one device's tools.

    Names that collide after sanitising get ``_2``, ``_3`` ... (kept within 64 characters), in the
    order tools are added, so the mapping is stable across identical ``tools/list`` replies.
    Re-adding a device name replaces its Tool but keeps its LLM name.
    """

    __slots__ = ("_by_llm", "_llm_by_device")

    def __init__(self) -> None:
        self._by_llm: dict[str, Tool] = {}
        self._llm_by_device: dict[str, str] = {}

    def add(self, tool: Tool) -> str:
        existing = self._llm_by_device.get(tool.name)
        if existing is not None:
            self._by_llm[existing] = tool
            return existing
        base = llm_tool_name(tool.name)
        candidate = base
        n = 2
        while candidate in self._by_llm:
            suffix = f"_{n}"
            candidate = base[: LLM_NAME_MAX - len(suffix)] + suffix
            n += 1
        self._by_llm[candidate] = tool
        self._llm_by_device[tool.name] = candidate
        return candidate

    def device_name(self, llm_name: str) -> str | None:
        tool = self._by_llm.get(llm_name)
        return None if tool is None else tool.name

    def llm_name(self, device_name: str) -> str | None:
        return self._llm_by_device.get(device_name)

    def tool(self, llm_name: str) -> Tool | None:
        return self._by_llm.get(llm_name)

    def llm_functions(self) -> list[dict[str, Any]]:
        """Tools in OpenAI function-tool shape, ready for a chat-completions ``tools`` list."""
        return [
            {
                "type": "function",
                "function": {
                    "name": llm_name,
                    "description": tool.description,
                    "parameters": tool.input_schema or dict(_EMPTY_SCHEMA),
                },
            }
            for llm_name, tool in self._by_llm.items()
        ]

    def clear(self) -> None:
        self._by_llm.clear()
        self._llm_by_device.clear()

    def __len__(self) -> int:
        return len(self._by_llm)

    def __contains__(self, llm_name: object) -> bool:
        return llm_name in self._by_llm


def call_result_text(result: dict[str, Any]) -> str:
    """The text of a ``tools/call`` result (text items joined by newlines; images etc. skipped).

    A result flagged ``isError: true`` raises :class:`McpError` with that text, so callers handle
    tool failures and JSON-RPC errors the same way.
    """
    if not isinstance(result, dict):
        raise _bad("tools/call result must be an object")
    content = result.get("content")
    if content is None:
        content = []
    if not isinstance(content, list):
        raise _bad("tools/call 'content' must be an array")
    parts = [
        item["text"]
        for item in content
        if isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str)
    ]
    text = "\n".join(parts)
    if result.get("isError") is True:
        raise McpError(DEVICE_ERROR_CODE, text or "tool reported an error")
    return text


# --------------------------------------------------------------------------------------------------
# legacy IoT (firmware <= 1.7.x)


@dataclass(frozen=True, slots=True)
class IotThing:
    """One legacy IoT "thing": properties ``{name: {description, type}}`` and methods
    ``{name: {description, parameters: {arg: {description, type}}}}``."""

    name: str
    description: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, Any] = field(default_factory=dict)


def parse_iot_descriptors(descriptors: list[Any]) -> list[IotThing]:
    """Things from an ``iot`` descriptors array; junk entries (non-objects, nameless) are skipped,
    because old firmware is what it is and one bad thing should not hide the others."""
    if not isinstance(descriptors, list):
        return []
    things: list[IotThing] = []
    for item in descriptors:
        if not isinstance(item, dict):
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name:
            continue
        description = item.get("description")
        properties = item.get("properties")
        methods = item.get("methods")
        things.append(
            IotThing(
                name=name,
                description=description if isinstance(description, str) else "",
                properties=properties if isinstance(properties, dict) else {},
                methods=methods if isinstance(methods, dict) else {},
            )
        )
    return things
