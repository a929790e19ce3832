"""The record journal: every record reaches disk (fsync'd) before the database, so none is lost.

One append-only file of JSON lines and a checkpoint file holding the byte offset up to which
the lines are known to be in the database. The writer appends each batch, then writes from
the checkpoint onwards and moves it. A crash between a database commit and the checkpoint
only replays lines whose upserts are idempotent on natural keys: nothing is duplicated, and
nothing written to the journal is dropped. When everything is written, the file is emptied.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.records.cdr import (
    CallAttemptRecord, CallRecord, DtmfRecord, EventRecord, Record, RecordingRecord, ToolCallRecord, TransferRecord,
    TurnRecord, WebhookDeliveryRecord,
)

_KINDS: dict[str, type[Record]] = {
    "call": CallRecord, "event": EventRecord, "turn": TurnRecord, "dtmf": DtmfRecord,
    "tool_call": ToolCallRecord, "transfer": TransferRecord, "recording": RecordingRecord,
    "call_attempt": CallAttemptRecord, "webhook_delivery": WebhookDeliveryRecord,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}
_TIMES = {cls: {f.name for f in fields(cls) if "datetime" in str(f.type)} for cls in _KINDS.values()}


class JournalError(RuntimeError):
    """The journal cannot be written or read; the message names the file and why."""


def encode(record: Record) -> bytes:
    data = asdict(record)
    for name in _TIMES[type(record)]:
        if data[name] is not None:
            data[name] = data[name].isoformat()
    return json.dumps({"kind": _NAMES[type(record)], "record": data}, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> Record:
    entry = json.loads(line)
    cls = _KINDS[entry["kind"]]
    data: dict[str, Any] = entry["record"]
    for name in _TIMES[cls]:
        if data.get(name) is not None:
            data[name] = datetime.fromisoformat(data[name])
    return cls(**data)


class Journal:
    """Blocking file operations: the writer calls them from its worker thread."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "records.jsonl"
        self._checkpoint_path = self.directory / "records.checkpoint"
        self._lock = threading.Lock()  # appends (spooler) and commits (replayer) run in different threads
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")
            self._drop_torn_tail()
        except OSError as exc:
            raise JournalError(f"cannot open the record journal {self.path}: {exc.strerror or exc}") from exc
        self.checkpoint = self._read_checkpoint()

    @property
    def size(self) -> int:
        return self._file.tell()

    @property
    def backlog_bytes(self) -> int:
        return self.size - self.checkpoint

    def append(self, records: list[Record]) -> None:
        """Write and fsync; when this returns the records survive a crash."""
        data = b"".join(encode(r) for r in records)
        try:
            with self._lock:
                self._file.write(data)
                self._file.flush()
                os.fsync(self._file.fileno())
        except OSError as exc:
            raise JournalError(f"cannot write the record journal {self.path}: {exc.strerror or exc}") from exc

    def pending(self, limit: int) -> tuple[list[Record], int]:
        """Up to `limit` records after the checkpoint, and the offset just past them."""
        records: list[Record] = []
        with open(self.path, "rb") as reader:
            reader.seek(self.checkpoint)
            offset = self.checkpoint
            while len(records) < limit:
                line = reader.readline()
                if not line.endswith(b"\n"):
                    break  # the end (a torn last line from a crash is never acknowledged: skip it)
                offset += len(line)
                records.append(decode(line))
        return records, offset

    def commit(self, offset: int) -> None:
        """The lines before `offset` are in the database; empty the journal once all are."""
        with self._lock:
            if offset >= self.size:
                self._file.truncate(0)
                self._file.seek(0)
                os.fsync(self._file.fileno())
                offset = 0
            self._write_checkpoint(offset)

    def count_pending(self) -> int:
        with open(self.path, "rb") as reader:
            reader.seek(self.checkpoint)
            return sum(1 for line in reader if line.endswith(b"\n"))

    def close(self) -> None:
        self._file.close()

    def _drop_torn_tail(self) -> None:
        """A crash mid-append leaves a line without its newline; it was never acknowledged."""
        size = self._file.seek(0, os.SEEK_END)
        if size == 0:
            return
        with open(self.path, "rb") as reader:
            data = reader.read()
        keep = data.rfind(b"\n") + 1
        if keep < size:
            self._file.truncate(keep)
            self._file.seek(keep)

    def _read_checkpoint(self) -> int:
        try:
            offset = int(self._checkpoint_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            raise JournalError(f"unreadable journal checkpoint {self._checkpoint_path}: {exc}") from exc
        # emptied journal whose checkpoint was not reset before a crash: start over
        return offset if offset <= self.size else 0

    def _write_checkpoint(self, offset: int) -> None:
        temporary = self._checkpoint_path.with_suffix(".tmp")
        with open(temporary, "w") as out:
            out.write(str(offset))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self._checkpoint_path)
        self.checkpoint = offset
