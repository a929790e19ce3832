"""Logging set-up: every line carries the call it belongs to, as text or as one JSON object per line.

The call's uuid lives in a context variable set when the call's task starts; asyncio copies the
context into every task the call spawns, so engine, media and record lines all carry it without
being passed the uuid.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

current_call: ContextVar[str] = ContextVar("voxgate_call", default="")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(call_uuid)s] %(message)s"
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "call_uuid"}


class CallFilter(logging.Filter):
    """Stamps each record with the current call's uuid ('-' outside any call)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.call_uuid = current_call.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, call_uuid, message, extras, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "call_uuid": getattr(record, "call_uuid", "-"),
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Root logging for the voxgate process (stderr unless `stream`): `fmt` is 'text' or 'json'."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(CallFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
