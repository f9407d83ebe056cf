"""Firmware images and which one a device should run.

A directory with ``firmware.yaml``:

    - {board: bread-compact-wifi, version: 2.4.3, file: bread-compact-wifi-2.4.3.bin}
    - {board: "*", version: 2.5.0, file: generic-2.5.0.bin, force: false}

A device gets the newest image for its board (``board.type`` in its OTA body, else the
``User-Agent``'s board) that is newer than what it runs, compared the way the firmware does:
dot-separated integers, left to right. ``force: true`` sends that image even to a device that
runs a newer one (a rollback). Only files the manifest lists are ever served.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = ["FirmwareError", "FirmwareImage", "FirmwareStore", "parse_version"]


class FirmwareError(ValueError):
    """The firmware manifest is wrong: the message says where."""


_INT_MAX = 2**31 - 1


def parse_version(text: str) -> tuple[int, ...]:
    """``2.4.10`` -> (2, 4, 10). Each part is read like the firmware's ``std::stoi``: its leading
    digits (``0-rc1`` is 0), and a part without any counts as 0."""
    out = []
    for part in text.strip().split("."):
        digits = ""
        for c in part:
            # ASCII only: found by fuzzing, "2.²" passed str.isdigit() and int() then raised.
            if not "0" <= c <= "9":
                break
            digits += c
        # stoi cannot hold more than 2**31 - 1 either; and int() refuses over 4300 digits (fuzzing).
        significant = digits.lstrip("0")[:11]  # 11 digits are already more than _INT_MAX
        out.append(min(int(significant), _INT_MAX) if significant else 0)
    return tuple(out)


@dataclass(frozen=True)
class FirmwareImage:
    board: str
    version: str
    file: str
    force: bool


class FirmwareStore:
    def __init__(self, directory: str) -> None:
        self.dir = Path(directory) if directory else None
        self.images: list[FirmwareImage] = []
        if self.dir is not None:
            self.images = self._load(self.dir / "firmware.yaml")

    def _load(self, manifest: Path) -> list[FirmwareImage]:
        try:
            entries = yaml.safe_load(manifest.read_text(encoding="utf-8")) or []
        except (OSError, yaml.YAMLError) as exc:
            raise FirmwareError(f"{manifest}: {exc}") from exc
        if not isinstance(entries, list):
            raise FirmwareError(f"{manifest}: expected a list of images")
        images = []
        for i, e in enumerate(entries):
            if isinstance(e, dict) and isinstance(e.get("version"), int | float):
                e["version"] = str(e["version"])  # YAML reads 2.5 as a number
            fields = ("board", "version", "file")
            if not isinstance(e, dict) or not all(isinstance(e.get(k), str) and e[k] for k in fields):
                raise FirmwareError(f"{manifest}[{i}]: needs board, version and file strings")
            name = e["file"]
            if "/" in name or name.startswith(".") or not (manifest.parent / name).is_file():
                raise FirmwareError(f"{manifest}[{i}]: {name!r} is not a file in {manifest.parent}")
            images.append(FirmwareImage(e["board"], e["version"], name, bool(e.get("force", False))))
        return images

    def offer(self, board: str, running: str) -> FirmwareImage | None:
        """The image this device should download, or None (it keeps what it runs)."""
        mine = [i for i in self.images if i.board == board] or [i for i in self.images if i.board == "*"]
        forced = [i for i in mine if i.force and parse_version(i.version) != parse_version(running)]
        if forced:
            return max(forced, key=lambda i: parse_version(i.version))
        newer = [i for i in mine if parse_version(i.version) > parse_version(running)]
        return max(newer, key=lambda i: parse_version(i.version)) if newer else None

    def path(self, name: str) -> Path | None:
        if self.dir is None or name not in {i.file for i in self.images}:
            return None
        return self.dir / name
