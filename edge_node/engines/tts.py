"""Text to speech with Piper, plus the downlink encoding that goes with it.

Piper speaks at the voice's rate (22.05 kHz for the bundled joe voice), which Opus cannot carry,
so :func:`encode_for_device` resamples and encodes in the TTS worker thread: the event loop only
ever sends ready Opus packets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from edge_node.config import TtsConfig
from shared import models
from shared.audio.opus import OpusEncoder
from shared.audio.resample import resample
from shared.engines.errors import ModelError

__all__ = ["PiperTts", "SpeechModel", "encode_for_device"]


class SpeechModel(Protocol):
    """What a TTS worker needs from a voice (PiperTts, or the fleet run's TimingTts)."""

    name: str

    @property
    def sample_rate(self) -> int: ...

    def synthesize(self, text: str) -> np.ndarray: ...


class _ArenaReleasingSession:
    """An onnxruntime session whose every ``run`` ends by shrinking the CPU arena.

    Piper calls ``session.run(None, feeds)`` once per sentence. The arena keeps what the longest
    sentence needed, and its power-of-two extensions come in steps, so an edge node's memory
    crept up for most of an hour. Shrinking at the end of each run hands the chunks back.
    """

    def __init__(self, session: ort.InferenceSession) -> None:
        self._session = session
        self.run_options = ort.RunOptions()
        self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, output_names: list[str] | None, input_feed: dict[str, object], run_options: object = None) -> list:
        return self._session.run(output_names, input_feed, self.run_options)

    def __getattr__(self, name: str) -> object:
        return getattr(self._session, name)


class PiperTts:
    """A Piper voice loaded once; ``synthesize`` runs on the caller's (TTS) thread."""

    def __init__(self, cfg: TtsConfig) -> None:
        from piper import PiperVoice
        from piper.config import PiperConfig

        if cfg.voice_path:
            model = Path(cfg.voice_path)
            config = Path(cfg.voice_config_path) if cfg.voice_config_path else Path(f"{model}.json")
        else:
            model, config = models.joe_piper_voice()
        for label, path in (("voice", model), ("voice config", config)):
            if not path.is_file():
                raise ModelError(f"Piper {label} file not found: {path}")
        try:
            config_dict = json.loads(config.read_text(encoding="utf-8"))
            # PiperVoice.load() builds a default SessionOptions (all cores); building the session
            # here lets the node cap onnxruntime at cfg.threads so TTS does not starve ASR/LLM.
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = cfg.threads
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
            if cfg.release_arena:
                session = _ArenaReleasingSession(session)
            self._voice = PiperVoice(session=session, config=PiperConfig.from_dict(config_dict))
        except Exception as exc:  # bad JSON, bad ONNX, or a piper API change
            raise ModelError(f"cannot load Piper voice {model}: {exc}") from exc
        self.cfg = cfg
        self.name = f"piper:{model.stem}"

    @property
    def sample_rate(self) -> int:
        return int(self._voice.config.sample_rate)

    def synthesize(self, text: str) -> np.ndarray:
        """Speak ``text``; returns int16 mono at :attr:`sample_rate` (empty for empty text)."""
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        audio = b"".join(chunk.audio_int16_bytes for chunk in self._voice.synthesize(text))
        return np.frombuffer(audio, dtype=np.int16).copy()


def encode_for_device(pcm: np.ndarray, src_rate: int, encoder: OpusEncoder) -> list[bytes]:
    """Resample to the encoder's rate and encode into ``frame_ms`` packets from a fresh state.

    The encoder is reset first so one shared encoder per TTS thread can serve every session.
    """
    pcm = resample(pcm, src_rate, encoder.sample_rate)
    encoder.reset()
    return encoder.encode_pcm(pcm)
