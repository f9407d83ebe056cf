"""Xiaozhi device wire protocol: JSON text messages, binary audio framing, and MCP payloads.

Pure, synchronous, dependency-free code (stdlib ``json``/``struct``/``re`` only) so the server, the
test client and the benchmarks share one definition of the protocol described in docs/protocol.md
(whose section numbers the ``§`` references in this package cite).

Name note: the server->device MCP *message builder* is ``messages.mcp``; at package level it is
re-exported as ``mcp_message`` because ``shared.protocol.mcp`` is the MCP submodule and must stay so
(``import shared.protocol.mcp`` would otherwise resolve to the function). For the same reason the
generic MCP ``request`` / ``parse_payload`` are re-exported as ``mcp_request`` / ``parse_mcp_payload``.
"""

from __future__ import annotations

from . import errors, framing, mcp, messages
from .errors import ProtocolError
from .framing import AudioFrame, frame_samples, pack_audio, unpack_audio
from .mcp import (
    IotThing,
    McpError,
    McpNotification,
    McpResponse,
    Tool,
    ToolNameMap,
    call_result_text,
    initialize_request,
    llm_tool_name,
    parse_iot_descriptors,
    parse_tools_list,
    tools_call_request,
    tools_list_request,
)
from .mcp import parse_payload as parse_mcp_payload
from .mcp import request as mcp_request
from .messages import (
    EMOJI_EMOTION,
    EMOTION_EMOJI,
    EMOTIONS,
    Abort,
    AudioParams,
    ClientMessage,
    Goodbye,
    Hello,
    Iot,
    Listen,
    ListenMode,
    ListenState,
    Mcp,
    Ping,
    alert,
    encode,
    goodbye,
    iot_commands,
    llm_emotion,
    parse_client_message,
    pong,
    server_hello,
    stt,
    system_reboot,
    tts_sentence_start,
    tts_start,
    tts_stop,
)
from .messages import mcp as mcp_message

__all__ = [
    "EMOJI_EMOTION",
    "EMOTIONS",
    "EMOTION_EMOJI",
    "Abort",
    "AudioFrame",
    "AudioParams",
    "ClientMessage",
    "Goodbye",
    "Hello",
    "Iot",
    "IotThing",
    "Listen",
    "ListenMode",
    "ListenState",
    "Mcp",
    "McpError",
    "McpNotification",
    "McpResponse",
    "Ping",
    "ProtocolError",
    "Tool",
    "ToolNameMap",
    "alert",
    "call_result_text",
    "encode",
    "errors",
    "frame_samples",
    "framing",
    "goodbye",
    "initialize_request",
    "iot_commands",
    "llm_emotion",
    "llm_tool_name",
    "mcp",
    "mcp_message",
    "mcp_request",
    "messages",
    "pack_audio",
    "parse_client_message",
    "parse_iot_descriptors",
    "parse_mcp_payload",
    "parse_tools_list",
    "pong",
    "server_hello",
    "stt",
    "system_reboot",
    "tools_call_request",
    "tools_list_request",
    "tts_sentence_start",
    "tts_start",
    "tts_stop",
    "unpack_audio",
]
