"""Timing engines (fleet runs only): they take the profile's measured times, stop on cancel, and an
edge configured with a profile answers a spoken turn through its real protocol, VAD, routing, pools
and Opus path while saying in /ready and its log that its engines are timing stand-ins."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from bench.fleet.calibrate import CalibrationError, profile_from_eval
from edge_node.engines.timing import TimingAsr, TimingLlm, TimingTts, load_profile
from shared.client.device import DeviceClient
from shared.engines.errors import ModelError
from tests.conftest import ROOT, start_edge, stop_edge
from tests.edge.helpers import speech

PROFILE = ROOT / "bench" / "fleet" / "timing.2026-11-25.yaml"
EVAL = ROOT / "docs" / "perf" / "2026-11-25" / "eval.json"


def _profile(tmp_path: Path, **overrides: object) -> Path:
    data = yaml.safe_load(PROFILE.read_text())
    data.update(overrides)
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_profile_is_the_calibration_of_the_shipped_eval() -> None:
    import json

    written = yaml.safe_load(PROFILE.read_text())
    again = profile_from_eval(json.loads(EVAL.read_text()), "docs/perf/2026-11-25/eval.json")
    assert {k: written[k] for k in ("asr", "llm", "tts")} == {k: again[k] for k in ("asr", "llm", "tts")}
    assert abs(sum(t["weight"] for t in written["transcripts"]) - 1.0) < 1e-3
    with pytest.raises(CalibrationError, match="llm.mean_ttft_ms"):
        profile_from_eval({"asr": {"mean_ms": 100}, "llm": {"mean_ms": 300}}, "x")


def test_engines_take_the_profile_times(tmp_path: Path) -> None:
    profile = load_profile(
        _profile(
            tmp_path,
            asr={"base_s": 0.15, "per_audio_s": 0.05},
            llm={"first_token_s": 0.1, "per_token_s": 0.02, "reply": "one two three four"},
            tts={"base_s": 0.0, "per_audio_s": 0.1, "chars_per_s": 20.0},
        )
    )
    asr = TimingAsr(profile)
    started = time.perf_counter()
    result = asr.transcribe(np.zeros(32000, dtype=np.int16))
    assert time.perf_counter() - started >= 0.15 + 0.05 * 2.0 - 0.005
    assert result.text in {t.text for t in profile.transcripts} and result.audio_ms == 2000.0

    llm = TimingLlm(profile)
    started = time.perf_counter()
    assert "".join(llm.stream_chat([], max_tokens=3)) == "one two three"
    assert time.perf_counter() - started >= 0.1 + 2 * 0.02 - 0.005
    cancel = threading.Event()
    stream = llm.stream_chat([], cancel=cancel)
    assert next(stream) == "one"
    cancel.set()
    assert list(stream) == []

    tts = TimingTts(profile)
    started = time.perf_counter()
    pcm = tts.synthesize("x" * 40)  # two seconds of speech at 20 characters per second
    assert time.perf_counter() - started >= 0.2 - 0.005
    assert pcm.dtype == np.int16 and pcm.size == 2 * tts.sample_rate and np.abs(pcm).max() > 0


def test_a_bad_profile_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not readable"):
        load_profile(tmp_path / "missing.yaml")
    with pytest.raises(ModelError, match="(?s)invalid.*llm.per_token_s"):
        load_profile(_profile(tmp_path, llm={"first_token_s": 0.1, "reply": "hi"}))


async def test_an_edge_with_a_timing_profile_answers_a_spoken_turn() -> None:
    edge = start_edge("timing-edge", {"XIAOZHI__TIMING__PROFILE": str(PROFILE)})
    try:
        async with httpx.AsyncClient() as http:
            ready = (await http.get(f"{edge.http}/ready", timeout=10)).json()
        assert ready["models"]["asr"] == "timing:asr" and ready["models"]["llm"] == "timing:llm"
        assert "TIMING ENGINES" in edge.log_text()
        client = DeviceClient(edge.url, device_id="aa:71:00:00:00:01")
        await client.connect()
        try:
            await client.listen_start("auto")
            await client.send_speech(speech("What is the capital of France?"))
            turn = await client.wait_turn_end(30)
        finally:
            await client.close()
        assert turn.stt_text and turn.audio_packets > 0 and turn.order[-1] == "tts:stop"
        assert turn.stt_ms is not None and turn.stt_ms >= 120  # the profile's 0.129 s of ASR at least
    finally:
        stop_edge(edge)
