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
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Executable, FromClause, create_engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.pool import NullPool

from controller.records.cdr import (
    CallAttemptRecord, CallRecord, DtmfRecord, EventRecord, Record, RecordingRecord, ToolCallRecord, TransferRecord,
    TurnRecord, WebhookDeliveryRecord,
)
from controller.records.journal import Journal, JournalError, encode
from controller.records.models import (
    CallAttemptRow, CallEventRow, CallRow, DtmfRow, RecordingRow, ToolCallRow, TransferRow, TurnRow, WebhookDeliveryRow,
)

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
# A database host that does not answer must not hold a write (and close()) for minutes.
PG_CONNECT_TIMEOUT_S = 5

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@dataclass(frozen=True, slots=True)
class _Kind:
    """Where one type of record goes, and what a second submission of the same natural key does."""

    table: FromClause
    key: tuple[str, ...]
    replaces: bool  # True: the later submission updates the row (a CDR); False: it is ignored (history)

    def statement(self, insert: Callable[[FromClause], Any]) -> Executable:
        statement = insert(self.table)
        if not self.replaces:
            return statement.on_conflict_do_nothing(index_elements=list(self.key))
        updated = [c.name for c in self.table.columns if c.name not in (*self.key, "id", "created_at")]
        return statement.on_conflict_do_update(
            index_elements=list(self.key), set_={name: statement.excluded[name] for name in updated}
        )


# In the order a batch writes them.
_KINDS: dict[type[Record], _Kind] = {
    CallRecord: _Kind(CallRow.__table__, ("pbx", "call_uuid"), replaces=True),
    EventRecord: _Kind(CallEventRow.__table__, ("pbx", "call_uuid", "seq"), replaces=False),
    TurnRecord: _Kind(TurnRow.__table__, ("pbx", "call_uuid", "seq"), replaces=False),
    DtmfRecord: _Kind(DtmfRow.__table__, ("pbx", "call_uuid", "seq"), replaces=False),
    ToolCallRecord: _Kind(ToolCallRow.__table__, ("pbx", "call_uuid", "turn_seq", "position"), replaces=False),
    TransferRecord: _Kind(TransferRow.__table__, ("pbx", "call_uuid", "seq"), replaces=False),
    # a recording closed after a crash (complete=False) is replaced when the file is finished later
    RecordingRecord: _Kind(RecordingRow.__table__, ("pbx", "call_uuid", "seq"), replaces=True),
    CallAttemptRecord: _Kind(CallAttemptRow.__table__, ("request_id", "attempt"), replaces=False),
    # replaced when the dispatcher gives up retrying after that attempt: the row becomes final
    WebhookDeliveryRecord: _Kind(WebhookDeliveryRow.__table__, ("delivery_id", "attempt"), replaces=True),
}


class RecordQueueFull(RuntimeError):
    """The writer already holds its maximum of unwritten records; this one was not taken."""


class RecordWriter:
    """Writes every kind of record (cdr.Record) from one background task; see the module docstring.

    `start()` inside the running loop, `submit()` (or the typed `submit_call()` / `submit_event()` /
    `submit_turn()`) from anywhere on it, `await flush()` to wait for what was submitted, `await close()`
    at shutdown.
    """

    def __init__(
        self,
        database_url: str,
        *,
        max_pending: int = 10_000,
        batch_size: int = 500,
        batch_window_s: float = 0.05,
        journal_dir: str | Path | None = None,
    ) -> None:
        url = make_url(database_url)
        insert = _INSERTS.get(url.get_backend_name())
        if insert is None:
            raise ValueError(f"records are written to PostgreSQL or SQLite, not {url.get_backend_name()!r}")
        connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S} if url.get_backend_name() == "postgresql" else {}
        self._engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args)
        self._safe_url = self._engine.url.render_as_string(hide_password=True)
        self._statements = {kind: spec.statement(insert) for kind, spec in _KINDS.items()}

        self._queue: asyncio.Queue[Record] = asyncio.Queue(max_pending)
        self._batch_size = batch_size
        self._batch_window_s = batch_window_s
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._submitted = 0
        self._completed = 0
        self._flushers: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._journal = Journal(journal_dir) if journal_dir is not None else None
        self._wake = asyncio.Event()
        if self._journal is not None:
            recovered = self._journal.count_pending()
            self._submitted += recovered  # left by an earlier run: written first, flush() waits for them
            if recovered:
                log.warning("record journal %s holds %d records not yet in the database: replaying",
                            self._journal.path, recovered)

        # Records committed, re-submissions included; batches that failed; submissions refused as full.
        self.written_calls = 0
        self.written_events = 0
        self.written_turns = 0
        self.written: Counter[str] = Counter()  # every kind, by table name
        self.failed_batches = 0
        self.rejected = 0
        self.quarantined = 0  # refused by a working database: set aside in the journal folder

    @property
    def pending(self) -> int:
        """Records submitted but not yet committed (queued or in the batch being written)."""
        return self._submitted - self._completed

    @property
    def queued(self) -> int:
        """Records only in memory (not yet in the journal or the database)."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the background task; call from inside the running event loop."""
        if self._task is not None:
            raise RuntimeError("RecordWriter is already started")
        self._task = asyncio.create_task(self._run(), name="voxgate-record-writer")

    def submit(self, record: Record) -> None:
        """Queue any record; never waits. Natural keys make a second submission harmless."""
        self._submit(record)

    def submit_call(self, record: CallRecord) -> None:
        """Queue a CDR; never waits. A later submission for the same call replaces the earlier."""
        self._submit(record)

    def submit_event(self, record: EventRecord) -> None:
        """Queue a call event; never waits. A second submission of the same seq is ignored."""
        self._submit(record)

    def submit_turn(self, record: TurnRecord) -> None:
        """Queue a conversation turn; never waits. A second submission of the same seq is ignored."""
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
        kept = await self._keep_unwritten()
        if self.pending:
            where = f"kept in {self._journal.path} for the next start" if kept else "lost"
            log.error("record writer closed with %d records not written to %s: %s", self.pending, self._safe_url,
                      where)
        for _, done in self._flushers:
            if not done.done():
                done.set_exception(RuntimeError(f"RecordWriter closed with {self.pending} records unwritten"))
        self._flushers.clear()
        self._engine.dispose()
        if self._journal is not None:
            self._journal.close()

    async def _keep_unwritten(self) -> bool:
        """At close: what is still queued goes to the journal, to be written by the next start."""
        if self._journal is None:
            return False
        queued = []
        while not self._queue.empty():
            queued.append(self._queue.get_nowait())
        if queued:
            try:
                await asyncio.to_thread(self._journal.append, queued)
            except JournalError as exc:
                log.error("%s", exc)
                return False
        return True

    def _submit(self, record: Record) -> None:
        if self._closing:
            raise RuntimeError("RecordWriter is closed")
        if type(record) not in _KINDS:  # refused here: in the worker it would fail, and be retried, forever
            raise TypeError(f"{type(record).__name__} is not a record type the writer stores")
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.rejected += 1
            raise RecordQueueFull(
                f"{self._queue.maxsize} records are already waiting to be written to {self._safe_url}"
            ) from None
        self._submitted += 1

    async def _run(self) -> None:
        if self._journal is None:
            while True:
                batch = await self._next_batch()
                await self._write_until_done(batch)
                self._done(len(batch))
        replayer = asyncio.create_task(self._replay(self._journal))
        self._wake.set()
        try:
            while True:
                await self._spool(self._journal, await self._next_batch())
        finally:
            replayer.cancel()
            await asyncio.gather(replayer, return_exceptions=True)

    async def _spool(self, journal: Journal, batch: list[Record]) -> None:
        """To disk at once, so the queue never fills while the database is away."""
        try:
            await asyncio.to_thread(journal.append, batch)
        except JournalError as exc:  # disk full or gone: the database is the only way left
            log.error("%s; writing %d records straight to the database", exc, len(batch))
            await self._write_until_done(batch)
            self._done(len(batch))
            return
        self._wake.set()

    async def _replay(self, journal: Journal) -> None:
        """Journal -> database, in order, from the checkpoint."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                records, offset = await asyncio.to_thread(journal.pending, self._batch_size)
                if not records:
                    break
                await self._write_until_done(records)
                await asyncio.to_thread(journal.commit, offset)
                self._done(len(records))

    def _done(self, count: int) -> None:
        self._completed += count
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
                written = await asyncio.to_thread(self._write, batch)
            except (DataError, IntegrityError) as exc:
                # the database is up and refuses the data: retrying cannot help and would hold up
                # every later record, so the refused ones are set aside and the rest written
                log.error("the database refused a batch of %d records (%s): writing them one by one",
                          len(batch), _reason(exc))
                await self._write_each(batch)
                return
            except Exception as exc:  # an outage: the batch is kept and retried in order
                self.failed_batches += 1
                log.error(
                    "writing %d records to %s failed, retrying in %.1f s: %s",
                    len(batch), self._safe_url, delay, _reason(exc),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                self._count(written)
                return

    async def _write_each(self, batch: list[Record]) -> None:
        for record in batch:
            try:
                self._count(await asyncio.to_thread(self._write, [record]))
            except (DataError, IntegrityError) as exc:
                self.quarantined += 1
                await asyncio.to_thread(self._quarantine, record, _reason(exc))
            except Exception:  # the database went away meanwhile: this record waits for it like any batch
                await self._write_until_done([record])

    def _quarantine(self, record: Record, reason: str) -> None:
        """Keep a refused record where an operator can see and fix it, never silently drop it."""
        where = self._journal.directory / "refused.jsonl" if self._journal is not None else None
        log.error("%s %s/%s refused by the database (%s)%s", type(record).__name__, record.pbx, record.call_uuid,
                  reason, f": kept in {where}" if where else "")
        if where is not None:
            with open(where, "ab") as out:
                out.write(encode(record))

    def _count(self, written: Counter[type[Record]]) -> None:
        self.written_calls += written[CallRecord]
        self.written_events += written[EventRecord]
        self.written_turns += written[TurnRecord]
        for kind, count in written.items():
            self.written[_KINDS[kind].table.name] += count

    def _write(self, batch: list[Record]) -> Counter[type[Record]]:
        """One transaction for the batch (worker thread). Returns how many records of each type it held."""
        rows: dict[type[Record], dict[tuple[Any, ...], dict[str, Any]]] = {kind: {} for kind in _KINDS}
        for record in batch:
            spec = _KINDS[type(record)]
            by_key = rows[type(record)]
            key = tuple(getattr(record, name) for name in spec.key)
            # One statement may not touch a row twice: within a batch, as across batches, the
            # last submission wins where it replaces and the first stays where it is ignored.
            if spec.replaces or key not in by_key:
                by_key[key] = asdict(record)
        with self._engine.begin() as connection:
            for kind, by_key in rows.items():
                if by_key:
                    connection.execute(self._statements[kind], list(by_key.values()))
        return Counter(type(record) for record in batch)


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
    return list_rows(database_url, "call_events", call_uuid)


def list_turns(database_url: str, call_uuid: str) -> list[dict[str, Any]]:
    """One call's conversation turns in seq order."""
    return list_rows(database_url, "turns", call_uuid)


def list_rows(database_url: str, table_name: str, call_uuid: str) -> list[dict[str, Any]]:
    """One call's rows of a per-call table (call_events, turns, dtmf, tool_calls, transfers, recordings), in order."""
    spec = next((k for k in _KINDS.values() if k.table.name == table_name), None)
    if spec is None or len(spec.key) < 3:  # calls: one row per call, keyed by the call alone
        raise ValueError(f"{table_name!r} is not a per-call record table")
    table = spec.table
    order = [table.c.pbx, *(table.c[name] for name in spec.key[2:])]
    return _fetch(database_url, select(table).where(table.c.call_uuid == call_uuid).order_by(*order))


def list_attempts(database_url: str, request_id: str) -> list[dict[str, Any]]:
    """Every try of one outbound call, in order."""
    table = CallAttemptRow.__table__
    return _fetch(database_url, select(table).where(table.c.request_id == request_id).order_by(table.c.attempt))


def _fetch(database_url: str, query: Executable) -> list[dict[str, Any]]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()
