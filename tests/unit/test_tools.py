"""Tools the LLM calls: reading calls as models write them, the server's tools, the loop, plugins.

The model in the loop tests is ``ScriptedModel``, a fake that replies with fixed text: these tests are
about what the node does with a call, not whether a model makes it (tests/provider/test_tools_llm.py
asks a real Qwen 1.5B). The Home Assistant plugin is called against ``FakeHomeAssistant``, a real
HTTP server on loopback that records what it receives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from edge_node.routing.intent import DeviceAction, DeviceCapabilities, IntentMatcher
from edge_node.tools.base import ToolContext, ToolError
from edge_node.tools.builtin import Calculator, SetTimer, builtin_tools, evaluate
from edge_node.tools.calls import looks_like_call, parse_structured_calls, parse_text_calls
from edge_node.tools.loop import answer_with_tools
from edge_node.tools.plugins import available, load_plugins
from edge_node.tools.toolbox import ToolBox
from shared.client.device_mcp import DEFAULT_TOOLS

LOG = logging.LoggerAdapter(logging.getLogger("tests.tools"), {})
VOLUME = "self_audio_speaker_set_volume"


def _caps(state: dict[str, Any] | None = None) -> DeviceCapabilities:
    tools = {t["name"]: t["inputSchema"] for t in DEFAULT_TOOLS}
    return DeviceCapabilities(
        tools=tools, state=state or {}, descriptions={t["name"]: t["description"] for t in DEFAULT_TOOLS}
    )


def _ctx(language: str = "en", announce: Any = None) -> ToolContext:
    return ToolContext("dev-1", language, LOG, announce=announce)


# -- reading calls ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{{"name": "self_audio_speaker_set_volume", "arguments": {"volume": 60}}}',  # Qwen-Coder 1.5B, doubled
        '```json\n{\n  "name": "self_audio_speaker_set_volume",\n  "arguments": {\n    "volume": 60\n  }\n}\n```',
        '<tool_call>\n{"name": "self_audio_speaker_set_volume", "arguments": {"volume": 60}}\n</tool_call>',
        '{"name": "self_audio_speaker_set_volume", "arguments": "{\\"volume\\": 60}"}',  # arguments as a string
    ],
)
def test_calls_are_read_as_models_write_them(text: str) -> None:
    assert looks_like_call(text.lstrip())
    [call] = parse_text_calls(text, {VOLUME, "get_time"})
    assert (call.name, call.arguments) == (VOLUME, {"volume": 60})


def test_only_offered_tools_and_real_calls_count() -> None:
    assert parse_text_calls('{"name": "delete_everything", "arguments": {}}', {VOLUME}) == []
    assert parse_text_calls("The capital of France is Paris.", {VOLUME}) == []
    assert parse_text_calls('{"name": "' + VOLUME + '", "arguments": "not json"}', {VOLUME}) == []
    assert not looks_like_call("The capital")
    structured = [
        {"id": "c1", "name": VOLUME, "arguments": '{"volume": 30}'},
        {"id": "c2", "name": "x", "arguments": ""},
    ]
    [call] = parse_structured_calls(structured, {VOLUME})
    assert (call.id, call.arguments) == ("c1", {"volume": 30})


# -- the server's tools ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [("15 * 240 / 100", "36"), ("(2 + 3) * 4", "20"), ("7 / 2", "3.5"), ("2 ** 10", "1024"), ("-4 + 1", "-3")],
)
def test_calculator_computes_exactly(expression: str, value: str) -> None:
    assert evaluate(expression) == __import__("decimal").Decimal(value)


@pytest.mark.parametrize("expression", ["__import__('os').system('id')", "x + 1", "open('f')", "9 ** 9 ** 9", "1 / 0"])
def test_calculator_refuses_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(ToolError):
        evaluate(expression)


async def test_calculator_and_time_speak_in_the_turn_language() -> None:
    assert await Calculator().call({"expression": "10 / 4"}, _ctx()) == "That's 2.5."
    assert await Calculator().call({"expression": "6 * 7"}, _ctx("zh")) == "结果是42。"
    get_time = builtin_tools(["get_time"], IntentMatcher([], 0))[0]
    assert (await get_time.call({}, _ctx())).startswith("It's ")
    assert (await get_time.call({}, _ctx("zh"))).startswith("现在是")
    with pytest.raises(ValueError, match="unknown tool"):
        builtin_tools(["get_weather"], IntentMatcher([], 0))


async def test_a_timer_is_handed_to_the_session_and_confirmed() -> None:
    asked: list[tuple[str, float]] = []
    ctx = _ctx(announce=lambda text, delay: asked.append((text, delay)) or True)
    said = await SetTimer().call({"seconds": 300, "message": "take the tea out"}, ctx)
    assert said == "Okay, I'll remind you in 5 minutes." and asked == [("Reminder: take the tea out", 300.0)]
    with pytest.raises(ToolError):
        await SetTimer().call({"seconds": 300}, _ctx(announce=None))
    with pytest.raises(ToolError):
        await SetTimer().call({"seconds": 0}, ctx)


def test_device_tools_are_offered_with_safe_names_and_the_known_level() -> None:
    box = ToolBox(builtin_tools(["calculator"], IntentMatcher([], 0)))
    turn = box.for_turn(_caps({"volume": 40}))
    names = [s["function"]["name"] for s in turn.specs]
    assert names[0] == "calculator" and VOLUME in names and "self_get_device_status" in names
    volume = next(s for s in turn.specs if s["function"]["name"] == VOLUME)["function"]
    assert "now 40" in volume["description"] and "a bit more: 50" in volume["description"]
    assert volume["parameters"]["required"] == ["volume"]
    with pytest.raises(ValueError, match="named"):
        ToolBox([Calculator(), Calculator()])


# -- the loop ------------------------------------------------------------------------------------


class ScriptedModel:
    """Fake model: each round replies with the next scripted text, in small deltas; records what it saw."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.seen: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]], tools: Any, calls: Any) -> AsyncIterator[str]:
        self.seen.append(list(messages))
        reply = self.replies.pop(0)

        async def stream() -> AsyncIterator[str]:
            for i in range(0, len(reply), 5):
                yield reply[i : i + 5]

        return stream()


async def _run(model: ScriptedModel, caps: DeviceCapabilities, action: Any, language: str = "en") -> str:
    tools = ToolBox(builtin_tools(["calculator"], IntentMatcher([], 0))).for_turn(caps)
    messages = [{"role": "user", "content": "question"}]
    parts = [p async for p in answer_with_tools(model, messages, tools, _ctx(language), action, 3, 1.0)]
    return "".join(parts)


async def test_a_plain_answer_streams_through() -> None:
    model = ScriptedModel("The capital of France is Paris.")
    assert await _run(model, _caps(), None) == "The capital of France is Paris."


async def test_a_device_call_reaches_the_device_and_its_result_is_spoken() -> None:
    actions: list[DeviceAction] = []

    async def act(action: DeviceAction) -> str:
        actions.append(action)
        return "true"

    caps = _caps({"volume": 50})
    said = await _run(ScriptedModel('```json\n{"name": "' + VOLUME + '", "arguments": {"volume": 60}}\n```'), caps, act)
    assert actions == [DeviceAction("mcp", "self.audio_speaker.set_volume", {"volume": 60})]
    assert said == "Okay, volume set to 60." and caps.state["volume"] == 60
    said = await _run(ScriptedModel('{"name": "' + VOLUME + '", "arguments": {"volume": 30}}'), caps, act, "zh")
    assert said == "好的，音量已调到30。"


async def test_a_status_read_goes_back_to_the_model_for_a_second_round() -> None:
    actions: list[str] = []

    async def act(action: DeviceAction) -> str:
        actions.append(action.name)
        return '{"audio_speaker": {"volume": 70}}'

    model = ScriptedModel(
        '{"name": "self_get_device_status", "arguments": {}}',
        '{"name": "' + VOLUME + '", "arguments": {"volume": 80}}',
    )
    said = await _run(model, _caps(), act)
    assert actions == ["self.get_device_status", "self.audio_speaker.set_volume"]
    assert said == "Okay, volume set to 80."
    second = model.seen[1]
    assert second[-1]["role"] == "tool" and "70" in second[-1]["content"]


async def test_a_failing_or_silent_tool_gets_a_spoken_apology() -> None:
    async def broken(action: DeviceAction) -> str:
        raise RuntimeError("device error -32601")

    async def hung(action: DeviceAction) -> str:
        await asyncio.sleep(30)
        return "late"

    call = '{"name": "' + VOLUME + '", "arguments": {"volume": 60}}'
    assert await _run(ScriptedModel(call), _caps(), broken) == "Sorry, that didn't work."
    assert await _run(ScriptedModel(call), _caps(), hung) == "Sorry, that didn't work."
    assert await _run(ScriptedModel('{"name": "calculator", "arguments": {"expression": "1/0"}}'), _caps(), None) == (
        "Sorry, that didn't work."
    )


# -- plugins ---------------------------------------------------------------------------------------


class FakeHomeAssistant:
    """Fake Home Assistant: a real HTTP server on loopback that records service calls."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        async def service(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return web.json_response({"message": "unauthorized"}, status=401)
            self.calls.append((f"{request.match_info['domain']}.{request.match_info['service']}", await request.json()))
            return web.json_response([])

        app = web.Application()
        app.router.add_post("/api/services/{domain}/{service}", service)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def test_a_plugin_tool_is_discovered_by_its_entry_point_and_called(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "homeassistant" in available()
    hass = FakeHomeAssistant("hass-token-1")
    await hass.start()
    try:
        monkeypatch.setenv("TEST_HASS_TOKEN", "hass-token-1")
        settings = {"url": hass.url, "token_env": "TEST_HASS_TOKEN", "entities": ["light.kitchen"]}
        [tool] = load_plugins({"homeassistant": settings})
        box = ToolBox([tool]).for_turn(DeviceCapabilities())
        assert [s["function"]["name"] for s in box.specs] == ["home_assistant"]
        model = ScriptedModel(
            '{"name": "home_assistant", "arguments": '
            '{"domain": "light", "service": "turn_on", "entity_id": "light.kitchen"}}'
        )
        parts = [p async for p in answer_with_tools(model, [], box, _ctx(), None, 3, 5.0)]  # type: ignore[arg-type]
        assert "".join(parts) == "Okay, done."
        assert hass.calls == [("light.turn_on", {"entity_id": "light.kitchen"})]
        # An entity it was not given is refused without a request.
        bad = ScriptedModel(
            '{"name": "home_assistant", "arguments": {"domain": "lock", "service": "unlock", '
            '"entity_id": "lock.front_door"}}'
        )
        parts = [p async for p in answer_with_tools(bad, [], box, _ctx(), None, 3, 5.0)]  # type: ignore[arg-type]
        assert "".join(parts) == "Sorry, that didn't work." and len(hass.calls) == 1
    finally:
        await hass.stop()


def test_a_missing_or_misconfigured_plugin_stops_the_node() -> None:
    with pytest.raises(ValueError, match="no such plugin installed.*homeassistant"):
        load_plugins({"weather": {}})
    with pytest.raises(ValueError, match="no token"):
        load_plugins({"homeassistant": {"url": "http://h:8123", "token_env": "NO_SUCH_VARIABLE_XZ"}})
