"""A bilingual node's replies, in process: each turn is answered by its language's LLM, with that
language's system prompt, spoken by that language's voice, and cached under its language.

The Chinese LLM and voice here are recording fakes around the timing stand-ins (these tests are about
which engine a turn reaches, not what the models say); tests/edge/test_chinese.py runs the real ones.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from edge_node.config import ZH_SYSTEM_PROMPT, EdgeConfig
from edge_node.engines.runtime import asr_config
from edge_node.engines.timing import TimingLlm, TimingTts
from edge_node.routing.router import Route
from edge_node.session.reply import ReplyState
from tests.session.harness import RecordingPort, node, profile, run_turn, text_turn

ZH_REPLY = "北京是中国的首都。它有三千年的历史。"


class RecordingLlm(TimingLlm):
    """Fake Chinese LLM: the timing stand-in, recording the messages it was given."""

    def __init__(self, reply: str = ZH_REPLY) -> None:
        super().__init__(profile(reply=reply))
        self.name = "recording:zh-llm"
        self.calls: list[list[dict[str, str]]] = []

    def stream_chat(
        self,
        messages: list[dict[str, str]],
        max_tokens: int | None = None,
        cancel: threading.Event | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> Iterator[str]:
        self.calls.append(list(messages))
        return super().stream_chat(messages, max_tokens, cancel, tools)


class RecordingTts(TimingTts):
    """Fake Chinese voice: the timing stand-in, recording what it was asked to read."""

    def __init__(self) -> None:
        super().__init__(profile())
        self.name = "recording:zh-voice"
        self.read: list[str] = []

    def synthesize(self, text: str) -> np.ndarray:
        self.read.append(text)
        return super().synthesize(text)


async def test_a_chinese_turn_reaches_the_chinese_llm_prompt_and_voice() -> None:
    llm, tts = RecordingLlm(), RecordingTts()
    with node(languages={"zh": (llm, tts)}) as services:
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn("中国的首都是哪里？"))
        assert reply.state == ReplyState.DONE and reply.route == Route.LOCAL_LLM
        assert reply.result is not None and reply.result.language == "zh"
        assert len(llm.calls) == 1 and llm.calls[0][0] == {"role": "system", "content": ZH_SYSTEM_PROMPT}
        assert "".join(port.sentences()) == ZH_REPLY
        assert tts.read, "the Chinese voice read nothing"
        assert port.language == "zh"


async def test_an_english_turn_on_the_same_node_stays_english() -> None:
    llm, tts = RecordingLlm(), RecordingTts()
    with node(languages={"zh": (llm, tts)}) as services:
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn("What is a cat?"))
        assert reply.result is not None and reply.result.language == "en"
        assert reply.route == Route.LOCAL_LLM
        assert llm.calls == [] and tts.read == [], "an English turn reached a Chinese engine"
        assert port.sentences()


async def test_the_chinese_voice_reads_numbers_as_words_and_the_device_sees_the_digits() -> None:
    llm, tts = RecordingLlm("熊猫有4条腿。"), RecordingTts()
    with node(languages={"zh": (llm, tts)}) as services:
        port = RecordingPort()
        await run_turn(services, port, text_turn("熊猫有几条腿？"))
        assert llm.calls, "the question should have reached the Chinese model"
        shown = "".join(port.sentences())
        assert "4" in shown, shown
        assert tts.read and not any(ch.isdigit() for ch in "".join(tts.read)), tts.read


async def test_an_answer_cached_in_one_language_is_not_served_in_the_other() -> None:
    llm, tts = RecordingLlm(), RecordingTts()
    with node(languages={"zh": (llm, tts)}) as services:
        cache = services.router.answer_cache
        assert cache is not None
        await cache.put("Paris", "巴黎。", "zh")
        assert await cache.get("Paris", "zh") == "巴黎。"
        assert await cache.get("Paris", "en") is None


async def test_a_turn_in_a_language_the_node_does_not_serve_is_answered_in_its_first_language() -> None:
    with node() as services:  # English only
        port = RecordingPort()
        reply = await run_turn(services, port, text_turn("中国的首都是哪里？"))
        assert reply.result is not None and reply.result.language == "en"


def test_a_bilingual_node_runs_the_multilingual_asr_restricted_to_its_languages() -> None:
    english = EdgeConfig()
    assert asr_config(english) is english.asr  # tiny.en, untouched
    both = EdgeConfig.model_validate({"languages": {"serve": ["en", "zh"]}})
    asr = asr_config(both)
    assert asr.language == "auto" and asr.languages == ["en", "zh"]
    assert asr.model_path.endswith("whisper-base"), asr.model_path
    chosen = EdgeConfig.model_validate({"languages": {"serve": ["en", "zh"]}, "asr": {"model_path": "/m/sv"}})
    assert asr_config(chosen).model_path == "/m/sv"
