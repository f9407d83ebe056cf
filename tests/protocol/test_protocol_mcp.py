"""MCP client side (docs/protocol.md §3): requests, payload classification, tools, name mapping, IoT."""

from __future__ import annotations

import json
import re

import pytest

from shared.protocol import ProtocolError, parse_client_message
from shared.protocol.mcp import (
    DEVICE_ERROR_CODE,
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
    parse_payload,
    parse_tools_list,
    request,
    tools_call_request,
    tools_list_request,
)

LLM_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

# ---- requests --------------------------------------------------------------------------------------


def test_request_shape() -> None:
    assert request(5, "tools/list", {"cursor": ""}) == {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "tools/list",
        "params": {"cursor": ""},
    }


def test_request_without_params_omits_key() -> None:
    assert request(1, "ping") == {"jsonrpc": "2.0", "id": 1, "method": "ping"}


@pytest.mark.parametrize("bad_id", ["1", 1.0, True, False, None, [1]])
def test_request_id_must_be_int(bad_id: object) -> None:
    with pytest.raises(TypeError):
        request(bad_id, "initialize")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad_id", [-1, 2**31, 2**40])
def test_request_id_must_fit_c_int(bad_id: int) -> None:
    with pytest.raises(ValueError):
        request(bad_id, "initialize")


def test_request_rejects_bad_method_and_params() -> None:
    with pytest.raises(TypeError):
        request(1, "")
    with pytest.raises(TypeError):
        request(1, "x", [1])  # type: ignore[arg-type]


@pytest.mark.parametrize("msg_id", [0, 1, 2, 3, 2**31 - 1])
def test_ids_serialise_as_json_numbers(msg_id: int) -> None:
    text = json.dumps(tools_list_request(msg_id))
    assert f'"id": {msg_id}' in text


def test_initialize_without_vision() -> None:
    msg = initialize_request(1)
    assert msg["method"] == "initialize" and msg["id"] == 1
    assert msg["params"]["capabilities"] == {}
    assert msg["params"]["protocolVersion"] == "2024-11-05"


def test_initialize_with_vision() -> None:
    msg = initialize_request(1, "http://host:8003/mcp/vision/explain", "T")
    assert msg["params"]["capabilities"] == {"vision": {"url": "http://host:8003/mcp/vision/explain", "token": "T"}}


def test_initialize_with_vision_no_token() -> None:
    msg = initialize_request(1, "http://h/v")
    assert msg["params"]["capabilities"]["vision"] == {"url": "http://h/v"}


def test_initialize_token_without_url_ignored() -> None:
    assert initialize_request(1, "", "T")["params"]["capabilities"] == {}


def test_tools_list_request() -> None:
    assert tools_list_request(2) == {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"cursor": ""}}
    assert tools_list_request(3, cursor="self.reboot", with_user_tools=True)["params"] == {
        "cursor": "self.reboot",
        "withUserTools": True,
    }


def test_tools_call_request() -> None:
    assert tools_call_request(3, "self.audio_speaker.set_volume", {"volume": 50}) == {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "self.audio_speaker.set_volume", "arguments": {"volume": 50}},
    }
    with pytest.raises(TypeError):
        tools_call_request(3, "x", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tools_call_request("3", "x", {})  # type: ignore[arg-type]


# ---- parse_payload ---------------------------------------------------------------------------------


def test_parse_initialize_result() -> None:
    payload = {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {
            "protocolVersion": "2024-11-05",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bread-compact-wifi", "version": "2.4.0"},
        },
    }
    got = parse_payload(payload)
    assert isinstance(got, McpResponse)
    assert got.id == 1 and got.ok and got.error is None
    assert got.result is not None and got.result["serverInfo"]["version"] == "2.4.0"


def test_parse_device_error_without_code() -> None:
    # FW ReplyError sends only a message.
    got = parse_payload({"jsonrpc": "2.0", "id": 7, "error": {"message": "Unknown tool: self.x"}})
    assert isinstance(got, McpResponse)
    assert not got.ok and got.result is None
    assert got.error is not None
    assert got.error.code == DEVICE_ERROR_CODE
    assert got.error.message == "Unknown tool: self.x"


def test_parse_error_with_code_and_data() -> None:
    got = parse_payload({"jsonrpc": "2.0", "id": 7, "error": {"code": -32601, "message": "nope", "data": 1}})
    assert isinstance(got, McpResponse) and got.error is not None
    assert (got.error.code, got.error.message, got.error.data) == (-32601, "nope", 1)
    assert str(got.error) == "MCP error -32601: nope"


def test_parse_error_with_null_id() -> None:
    got = parse_payload({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse"}})
    assert isinstance(got, McpResponse) and got.id is None


def test_parse_null_member_treated_as_absent() -> None:
    got = parse_payload({"jsonrpc": "2.0", "id": 4, "result": {"x": 1}, "error": None})
    assert isinstance(got, McpResponse) and got.result == {"x": 1}
    got = parse_payload({"jsonrpc": "2.0", "id": 4, "result": None, "error": {"message": "m"}})
    assert isinstance(got, McpResponse) and got.error is not None and got.error.message == "m"


def test_parse_notification() -> None:
    got = parse_payload({"jsonrpc": "2.0", "method": "notifications/state_changed", "params": {"a": 1}})
    assert got == McpNotification("notifications/state_changed", {"a": 1})


def test_parse_notification_without_params() -> None:
    assert parse_payload({"jsonrpc": "2.0", "method": "notifications/x"}) == McpNotification("notifications/x", {})


def test_parse_payload_through_client_message() -> None:
    msg = parse_client_message(
        '{"session_id":"s","type":"mcp","payload":{"jsonrpc":"2.0","id":3,'
        '"result":{"content":[{"type":"text","text":"true"}],"isError":false}}}'
    )
    got = parse_payload(msg.payload)  # type: ignore[union-attr]
    assert isinstance(got, McpResponse) and got.result is not None
    assert call_result_text(got.result) == "true"


@pytest.mark.parametrize(
    "payload",
    [
        {"id": 1, "result": {}},  # no jsonrpc
        {"jsonrpc": "1.0", "id": 1, "result": {}},
        {"jsonrpc": "2.0"},  # neither
        {"jsonrpc": "2.0", "id": 1},  # response without result/error
        {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"message": "x"}},  # both
        {"jsonrpc": "2.0", "id": "1", "result": {}},  # string id
        {"jsonrpc": "2.0", "id": True, "result": {}},
        {"jsonrpc": "2.0", "id": 1, "result": "true"},  # non-object result
        {"jsonrpc": "2.0", "id": 1, "error": "boom"},
        {"jsonrpc": "2.0", "id": 1, "error": {"code": "x", "message": "m"}},
        {"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": 5}},
        {"jsonrpc": "2.0", "result": {}},  # result without id
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},  # device request: unsupported
        {"jsonrpc": "2.0", "method": 5},
        {"jsonrpc": "2.0", "method": "notifications/x", "params": [1]},
    ],
)
def test_parse_payload_malformed(payload: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_payload(payload)
    assert err.value.code == "bad_field"


def test_parse_payload_not_dict() -> None:
    with pytest.raises(ProtocolError):
        parse_payload([1])  # type: ignore[arg-type]


# ---- tools/list pagination -------------------------------------------------------------------------

PAGE1 = {
    "tools": [
        {
            "name": "self.get_device_status",
            "description": "Provides the real-time information of the device",
            "inputSchema": {"type": "object", "properties": {}},
        },
        {
            "name": "self.audio_speaker.set_volume",
            "description": "Set the volume",
            "inputSchema": {
                "type": "object",
                "properties": {"volume": {"type": "integer", "minimum": 0, "maximum": 100}},
                "required": ["volume"],
            },
        },
    ],
    "nextCursor": "self.screen.set_brightness",
}
PAGE2 = {
    "tools": [
        {
            "name": "self.screen.set_brightness",
            "description": "Set brightness",
            "inputSchema": {"type": "object", "properties": {"brightness": {"type": "integer"}}},
        }
    ]
}


def test_tools_list_first_page() -> None:
    tools, cursor = parse_tools_list(PAGE1)
    assert [t.name for t in tools] == ["self.get_device_status", "self.audio_speaker.set_volume"]
    assert tools[1].input_schema["required"] == ["volume"]
    assert cursor == "self.screen.set_brightness"


def test_tools_list_last_page_without_cursor() -> None:
    tools, cursor = parse_tools_list(PAGE2)
    assert [t.name for t in tools] == ["self.screen.set_brightness"]
    assert cursor == ""


def test_tools_list_paginate_loop() -> None:
    pages = {"": PAGE1, "self.screen.set_brightness": PAGE2}
    collected: list[Tool] = []
    cursor, msg_id = "", 2
    while True:
        req = tools_list_request(msg_id, cursor)
        tools, cursor = parse_tools_list(pages[req["params"]["cursor"]])
        collected += tools
        msg_id += 1
        if not cursor:
            break
    assert len(collected) == 3 and msg_id == 4


def test_tools_list_empty_and_null_cursor() -> None:
    assert parse_tools_list({"tools": [], "nextCursor": ""}) == ([], "")
    assert parse_tools_list({"tools": [], "nextCursor": None}) == ([], "")
    assert parse_tools_list({}) == ([], "")


def test_tools_list_skips_junk_and_defaults() -> None:
    tools, _ = parse_tools_list(
        {"tools": [1, None, "x", {}, {"name": ""}, {"name": 5}, {"name": "self.a"}, {"name": "b", "description": 3}]}
    )
    assert [t.name for t in tools] == ["self.a", "b"]
    assert tools[0].description == "" and tools[0].input_schema == {"type": "object", "properties": {}}


@pytest.mark.parametrize("result", [{"tools": {}}, {"tools": "x"}, {"tools": [], "nextCursor": 5}, [], "x"])
def test_tools_list_malformed(result: object) -> None:
    with pytest.raises(ProtocolError):
        parse_tools_list(result)  # type: ignore[arg-type]


# ---- name mapping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "llm"),
    [
        ("self.audio_speaker.set_volume", "self_audio_speaker_set_volume"),
        ("self.get_device_status", "self_get_device_status"),
        ("already_safe-name", "already_safe-name"),
        ("with space/slash:colon", "with_space_slash_colon"),
        ("灯.开", "___"),
        ("", "_"),
        ("a" * 100, "a" * 64),
    ],
)
def test_llm_tool_name(device: str, llm: str) -> None:
    assert llm_tool_name(device) == llm
    assert LLM_NAME.match(llm_tool_name(device))


def test_name_map_both_ways() -> None:
    names = ToolNameMap()
    tools, _ = parse_tools_list(PAGE1)
    llm_names = [names.add(t) for t in tools]
    assert llm_names == ["self_get_device_status", "self_audio_speaker_set_volume"]
    assert names.device_name("self_audio_speaker_set_volume") == "self.audio_speaker.set_volume"
    assert names.llm_name("self.audio_speaker.set_volume") == "self_audio_speaker_set_volume"
    assert names.device_name("self.audio_speaker.set_volume") is None
    assert names.device_name("unknown") is None
    assert names.llm_name("self.unknown") is None
    tool = names.tool("self_get_device_status")
    assert tool is not None and tool.name == "self.get_device_status"
    assert len(names) == 2 and "self_get_device_status" in names


def test_name_map_collisions_get_suffix() -> None:
    names = ToolNameMap()
    a = names.add(Tool("self.a.b", "", {}))
    b = names.add(Tool("self_a_b", "", {}))
    c = names.add(Tool("self-a.b", "", {}))  # differs: "-" is kept
    d = names.add(Tool("self/a/b", "", {}))
    assert (a, b, c, d) == ("self_a_b", "self_a_b_2", "self-a_b", "self_a_b_3")
    assert names.device_name("self_a_b_2") == "self_a_b"
    assert names.device_name("self_a_b_3") == "self/a/b"


def test_name_map_collision_with_suffixed_name() -> None:
    names = ToolNameMap()
    assert names.add(Tool("x.y", "", {})) == "x_y"
    assert names.add(Tool("x_y", "", {})) == "x_y_2"
    assert names.add(Tool("x_y_2", "", {})) == "x_y_2_2"
    assert names.device_name("x_y_2_2") == "x_y_2"


def test_name_map_long_collisions_stay_64() -> None:
    names = ToolNameMap()
    base = "self." + "x" * 100
    results = [names.add(Tool(base + str(i), "", {})) for i in range(12)]
    assert len(set(results)) == 12
    assert all(LLM_NAME.match(r) for r in results)
    assert results[0] == ("self_" + "x" * 100)[:64]
    assert results[11].endswith("_12") and len(results[11]) == 64
    for i, r in enumerate(results):
        assert names.device_name(r) == base + str(i)


def test_name_map_readd_keeps_name_and_updates_tool() -> None:
    names = ToolNameMap()
    first = names.add(Tool("self.a", "old", {}))
    names.add(Tool("self_a", "", {}))
    again = names.add(Tool("self.a", "new", {"type": "object"}))
    assert first == again == "self_a"
    assert len(names) == 2
    tool = names.tool("self_a")
    assert tool is not None and tool.description == "new"


def test_llm_functions_shape() -> None:
    names = ToolNameMap()
    for t in parse_tools_list(PAGE1)[0]:
        names.add(t)
    names.add(Tool("self.no_schema", "d", {}))
    funcs = names.llm_functions()
    assert funcs[1] == {
        "type": "function",
        "function": {
            "name": "self_audio_speaker_set_volume",
            "description": "Set the volume",
            "parameters": PAGE1["tools"][1]["inputSchema"],  # type: ignore[index]
        },
    }
    assert funcs[2]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert all(LLM_NAME.match(f["function"]["name"]) for f in funcs)


def test_name_map_clear() -> None:
    names = ToolNameMap()
    names.add(Tool("a.b", "", {}))
    names.clear()
    assert len(names) == 0 and names.llm_functions() == []
    assert names.add(Tool("a_b", "", {})) == "a_b"


# ---- call_result_text ------------------------------------------------------------------------------


def test_call_result_text_single() -> None:
    assert call_result_text({"content": [{"type": "text", "text": "true"}], "isError": False}) == "true"


def test_call_result_text_joins_and_skips_non_text() -> None:
    result = {
        "content": [
            {"type": "text", "text": "a"},
            {"type": "image", "data": "...", "mimeType": "image/jpeg"},
            {"type": "text", "text": "b"},
            {"type": "text", "text": 5},
            "junk",
        ]
    }
    assert call_result_text(result) == "a\nb"


def test_call_result_text_empty() -> None:
    assert call_result_text({}) == ""
    assert call_result_text({"content": []}) == ""


def test_call_result_is_error_raises() -> None:
    with pytest.raises(McpError) as err:
        call_result_text({"content": [{"type": "text", "text": "camera busy"}], "isError": True})
    assert err.value.code == -32000
    assert err.value.message == "camera busy"


def test_call_result_is_error_without_text() -> None:
    with pytest.raises(McpError) as err:
        call_result_text({"isError": True})
    assert err.value.message


def test_call_result_is_error_must_be_true() -> None:
    assert call_result_text({"content": [{"type": "text", "text": "x"}], "isError": "yes"}) == "x"


@pytest.mark.parametrize("result", [{"content": "x"}, {"content": {}}, [], None])
def test_call_result_malformed(result: object) -> None:
    with pytest.raises(ProtocolError):
        call_result_text(result)  # type: ignore[arg-type]


# ---- legacy IoT ------------------------------------------------------------------------------------

SPEAKER = {
    "name": "Speaker",
    "description": "扬声器",
    "properties": {"volume": {"description": "当前音量值", "type": "number"}},
    "methods": {
        "SetVolume": {
            "description": "设置音量",
            "parameters": {"volume": {"description": "0到100之间的整数", "type": "number"}},
        }
    },
}


def test_parse_iot_descriptor() -> None:
    things = parse_iot_descriptors([SPEAKER])
    assert things == [
        IotThing(
            name="Speaker",
            description="扬声器",
            properties=SPEAKER["properties"],  # type: ignore[arg-type]
            methods=SPEAKER["methods"],  # type: ignore[arg-type]
        )
    ]


def test_parse_iot_from_message() -> None:
    msg = parse_client_message(json.dumps({"session_id": "s", "type": "iot", "update": True, "descriptors": [SPEAKER]}))
    things = parse_iot_descriptors(msg.descriptors)  # type: ignore[union-attr,arg-type]
    assert [t.name for t in things] == ["Speaker"]
    assert "SetVolume" in things[0].methods


def test_parse_iot_skips_junk() -> None:
    junk = [None, 1, "Speaker", [], {}, {"name": ""}, {"name": 3}, {"description": "no name"}, SPEAKER]
    assert [t.name for t in parse_iot_descriptors(junk)] == ["Speaker"]


def test_parse_iot_defaults_bad_subfields() -> None:
    things = parse_iot_descriptors([{"name": "Lamp", "description": 1, "properties": [], "methods": "x"}])
    assert things == [IotThing("Lamp", "", {}, {})]


@pytest.mark.parametrize("value", [None, {}, "x", 5])
def test_parse_iot_non_list(value: object) -> None:
    assert parse_iot_descriptors(value) == []  # type: ignore[arg-type]
