"""Log lines an operator can grep: every line carries the device id and session id fields."""

from __future__ import annotations

import json
import logging
import sys

from shared.settings import LogConfig


class _Defaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key in ("device_id", "session_id"):
            if not hasattr(record, key):
                setattr(record, key, "-")
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "device_id": record.device_id,  # type: ignore[attr-defined]
            "session_id": record.session_id,  # type: ignore[attr-defined]
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(cfg: LogConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Defaults())
    if cfg.json_format:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s device=%(device_id)s session=%(session_id)s %(message)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.level.upper())
