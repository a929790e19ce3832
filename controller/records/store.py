"""The single writer of call records, and read helpers for tests and the CLI.

Submitting a record never touches the database and never waits, because the media path
does it. One background task drains a bounded queue in batches and writes each batch in a
worker thread with a synchronous engine, so the event loop never blocks on the database.
Writes are upserts on the natural keys, so a record submitted twice is stored once. A
batch that fails (database down) is kept and retried with backoff, in order, until written.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import asdict
from typing import Any

from sqlalchemy import Executable, create_engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from controller.records.cdr import CallRecord, EventRecord
from controller.records.models import CallEventRow, CallRow

log = logging.getLogger(__name__)

Record = CallRecord | EventRecord

RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
# A database host that does not answer must not hold a write (and close()) for minutes.
PG_CONNECT_TIMEOUT_S = 5

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
_CALL_KEY = ("pbx", "call_uuid")
_EVENT_KEY = ("pbx", "call_uuid", "seq")


class RecordQueueFull(RuntimeError):
    """The writer already holds its maximum of unwritten records; this one was not taken."""


class RecordWriter:
    """Writes CallRecords and EventRecords from one background task; see the module docstring.

    `start()` inside the running loop, `submit_call()` / `submit_event()` from anywhere on
    it, `await flush()` to wait for what was submitted, `await close()` at shutdown.
    """

    def __init__(
        self,
        database_url: str,
        *,
        max_pending: int = 10_000,
        batch_size: int = 500,
        batch_window_s: float = 0.05,
    ) -> None:
        url = make_url(database_url)
        insert = _INSERTS.get(url.get_backend_name())
        if insert is None:
            raise ValueError(f"records are written to PostgreSQL or SQLite, not {url.get_backend_name()!r}")
        connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S} if url.get_backend_name() == "postgresql" else {}
        self._engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args)
        self._safe_url = self._engine.url.render_as_string(hide_password=True)

        calls = insert(CallRow.__table__)
        updated = [c.name for c in CallRow.__table__.columns if c.name not in (*_CALL_KEY, "id", "created_at")]
        self._upsert_calls = calls.on_conflict_do_update(
            index_elements=list(_CALL_KEY), set_={name: calls.excluded[name] for name in updated}
        )
        self._insert_events = insert(CallEventRow.__table__).on_conflict_do_nothing(index_elements=list(_EVENT_KEY))

        self._queue: asyncio.Queue[Record] = asyncio.Queue(max_pending)
        self._batch_size = batch_size
        self._batch_window_s = batch_window_s
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._submitted = 0
        self._completed = 0
        self._flushers: deque[tuple[int, asyncio.Future[None]]] = deque()

        # Records committed, re-submissions included; batches that failed; submissions refused as full.
        self.written_calls = 0
        self.written_events = 0
        self.failed_batches = 0
        self.rejected = 0

    @property
    def pending(self) -> int:
        """Records submitted but not yet committed (queued or in the batch being written)."""
        return self._submitted - self._completed

    def start(self) -> None:
        """Start the background task; call from inside the running event loop."""
        if self._task is not None:
            raise RuntimeError("RecordWriter is already started")
        self._task = asyncio.create_task(self._run(), name="voxgate-record-writer")

    def submit_call(self, record: CallRecord) -> None:
        """Queue a CDR; never waits. A later submission for the same call replaces the earlier."""
        self._submit(record)

    def submit_event(self, record: EventRecord) -> None:
        """Queue a call event; never waits. A second submission of the same seq is ignored."""
        self._submit(record)

    async def flush(self) -> None:
        """Wait until every record submitted before this call is committed, however long that takes."""
        if self._completed >= self._submitted:
            return
        if self._task is None or self._task.done():
            raise RuntimeError(f"RecordWriter is not running; {self.pending} records are unwritten")
        done = asyncio.get_running_loop().create_future()
        self._flushers.append((self._submitted, done))
        await done

    async def close(self, timeout_s: float = 10.0) -> None:
        """Write what is pending, waiting at most `timeout_s` for the database, then stop.

        Records still unwritten then are logged as lost and left counted in `pending`.
        """
        if self._closing:
            return
        self._closing = True
        if self._task is not None:
            try:
                async with asyncio.timeout(timeout_s):
                    await self.flush()
            except TimeoutError:
                pass
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.pending:
            log.error("record writer closed with %d records not written to %s", self.pending, self._safe_url)
        for _, done in self._flushers:
            if not done.done():
                done.set_exception(RuntimeError(f"RecordWriter closed with {self.pending} records unwritten"))
        self._flushers.clear()
        self._engine.dispose()

    def _submit(self, record: Record) -> None:
        if self._closing:
            raise RuntimeError("RecordWriter is closed")
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.rejected += 1
            raise RecordQueueFull(
                f"{self._queue.maxsize} records are already waiting to be written to {self._safe_url}"
            ) from None
        self._submitted += 1

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            await self._write_until_done(batch)
            self._completed += len(batch)
            while self._flushers and self._flushers[0][0] <= self._completed:
                _, done = self._flushers.popleft()
                if not done.done():
                    done.set_result(None)

    async def _next_batch(self) -> list[Record]:
        """The first waiting record, plus whatever else arrives within the batch window."""
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._batch_window_s
        while len(batch) < self._batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._queue.get())
            except TimeoutError:
                break
        return batch

    async def _write_until_done(self, batch: list[Record]) -> None:
        delay = RETRY_FIRST_S
        while True:
            try:
                calls, events = await asyncio.to_thread(self._write, batch)
            except Exception as exc:  # whatever failed, the batch is kept and retried in order
                self.failed_batches += 1
                log.error(
                    "writing %d records to %s failed, retrying in %.1f s: %s",
                    len(batch), self._safe_url, delay, _reason(exc),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                self.written_calls += calls
                self.written_events += events
                return

    def _write(self, batch: list[Record]) -> tuple[int, int]:
        """One transaction for the batch (worker thread). Returns the call and event records it held."""
        calls: dict[tuple[str, str], dict[str, Any]] = {}
        events: dict[tuple[str, str, int], dict[str, Any]] = {}
        for record in batch:
            if isinstance(record, CallRecord):
                # One upsert may not touch a row twice: the last submission wins, as it would across batches.
                calls[(record.pbx, record.call_uuid)] = asdict(record)
            else:
                events.setdefault((record.pbx, record.call_uuid, record.seq), asdict(record))
        with self._engine.begin() as connection:
            if calls:
                connection.execute(self._upsert_calls, list(calls.values()))
            if events:
                connection.execute(self._insert_events, list(events.values()))
        call_count = sum(isinstance(record, CallRecord) for record in batch)
        return call_count, len(batch) - call_count


def _reason(exc: BaseException) -> str:
    """The driver's own message, first line only: SQLAlchemy's wording would add the whole statement."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


def list_calls(database_url: str) -> list[dict[str, Any]]:
    """Every call, oldest first."""
    table = CallRow.__table__
    return _fetch(database_url, select(table).order_by(table.c.started_at, table.c.id))


def list_events(database_url: str, call_uuid: str) -> list[dict[str, Any]]:
    """One call's events in seq order."""
    table = CallEventRow.__table__
    query = select(table).where(table.c.call_uuid == call_uuid).order_by(table.c.pbx, table.c.seq)
    return _fetch(database_url, query)


def _fetch(database_url: str, query: Executable) -> list[dict[str, Any]]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()
