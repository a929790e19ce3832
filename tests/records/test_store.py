"""The record writer against real SQLite and PostgreSQL databases, including an outage."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from controller.records import migrate
from controller.records.cdr import CallRecord, EventRecord
from controller.records.store import RecordQueueFull, RecordWriter, list_calls, list_events

T0 = datetime(2026, 11, 23, 22, 20, 8, 685252, tzinfo=UTC)


def _call(uuid: str, **changes: object) -> CallRecord:
    record = CallRecord(
        pbx="freeswitch",
        call_uuid=uuid,
        direction="inbound",
        caller_id_name="Alice",
        caller_id_number="15551230003",
        destination="300",
        started_at=T0,
        answered_at=T0 + timedelta(milliseconds=20),
        ended_at=T0 + timedelta(seconds=2),
        duration_s=2,
        billsec=2,
        hangup_cause="NORMAL_CLEARING",
        flow="welcome",
        outcome="completed",
        error=None,
        variables={"my_custom_var": "hello", "digits_dialed": "none"},
    )
    return dataclasses.replace(record, **changes)


def _event(uuid: str, seq: int, type: str = "dtmf") -> EventRecord:
    return EventRecord("freeswitch", uuid, seq, T0 + timedelta(milliseconds=seq), type, {"seq": seq, "digit": "5"})


def _stored_call(row: dict) -> CallRecord:
    return CallRecord(**{f.name: row[f.name] for f in dataclasses.fields(CallRecord)})


async def test_records_round_trip(database_url):
    writer = RecordWriter(database_url)
    writer.start()
    unanswered = _call("c2", answered_at=None, outcome="abandoned", error="caller hung up", started_at=T0 + timedelta(1))
    writer.submit_call(_call("c1"))
    writer.submit_call(unanswered)
    writer.submit_event(_event("c1", 0, "answered"))
    await writer.flush()
    await writer.close()

    calls = list_calls(database_url)
    assert [_stored_call(row) for row in calls] == [_call("c1"), unanswered]
    assert all(row["created_at"].tzinfo is not None for row in calls)
    [event] = list_events(database_url, "c1")
    assert EventRecord(**{k: event[k] for k in ("pbx", "call_uuid", "seq", "at", "type", "payload")}) == _event(
        "c1", 0, "answered"
    )
    assert event["at"].utcoffset() == timedelta(0)


async def test_resubmitted_records_are_written_once(database_url):
    writer = RecordWriter(database_url)
    writer.start()
    for seq in range(5):
        writer.submit_event(_event("c1", seq))
    writer.submit_call(_call("c1", outcome="no_input"))
    writer.submit_call(_call("c1", outcome="completed"))  # same batch: the last one wins
    await writer.flush()
    for seq in range(3, 8):  # overlaps what is already stored
        writer.submit_event(_event("c1", seq, "again"))
    writer.submit_call(_call("c1", outcome="error", error="boom"))  # a later batch: updates the row
    await writer.flush()
    await writer.close()

    [call] = list_calls(database_url)
    assert (call["outcome"], call["error"]) == ("error", "boom")
    events = list_events(database_url, "c1")
    assert [e["seq"] for e in events] == list(range(8))
    assert [e["type"] for e in events] == ["dtmf"] * 5 + ["again"] * 3  # first write of a seq stays
    assert (writer.written_calls, writer.written_events, writer.failed_batches) == (3, 10, 0)
    assert writer.pending == 0


async def test_events_may_arrive_without_a_cdr(database_url):
    writer = RecordWriter(database_url)
    writer.start()
    writer.submit_event(_event("orphan", 0))
    await writer.close()
    assert [e["seq"] for e in list_events(database_url, "orphan")] == [0]
    assert list_calls(database_url) == []


async def test_many_records_are_written_in_batches(sqlite_url):
    migrate.upgrade(sqlite_url)
    writer = RecordWriter(sqlite_url, batch_size=100)
    writer.start()
    for n in range(30):
        writer.submit_call(_call(f"call-{n:02d}", started_at=T0 + timedelta(seconds=n)))
        for seq in range(40):
            writer.submit_event(_event(f"call-{n:02d}", seq))
    assert writer.pending == 30 * 41
    await writer.flush()
    assert writer.pending == 0
    await writer.close()
    assert [c["call_uuid"] for c in list_calls(sqlite_url)] == [f"call-{n:02d}" for n in range(30)]
    assert [e["seq"] for e in list_events(sqlite_url, "call-29")] == list(range(40))
    assert (writer.written_calls, writer.written_events) == (30, 1200)


async def test_a_full_queue_refuses_instead_of_waiting(sqlite_url):
    migrate.upgrade(sqlite_url)
    writer = RecordWriter(sqlite_url, max_pending=2)
    writer.submit_event(_event("c1", 0))
    writer.submit_event(_event("c1", 1))
    with pytest.raises(RecordQueueFull, match="2 records are already waiting"):
        writer.submit_event(_event("c1", 2))
    assert (writer.rejected, writer.pending) == (1, 2)

    writer.start()
    await writer.flush()
    writer.submit_event(_event("c1", 2))  # room again once written
    await writer.close()
    assert [e["seq"] for e in list_events(sqlite_url, "c1")] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit_call(_call("c1"))


async def test_close_gives_up_on_a_dead_database_and_says_so(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'not-migrated.sqlite3'}"  # no tables: every batch fails
    writer = RecordWriter(url)
    writer.start()
    writer.submit_call(_call("c1"))
    await writer.close(timeout_s=0.3)
    assert writer.pending == 1 and writer.failed_batches >= 1
    assert "closed with 1 records not written" in caplog.text
    with pytest.raises(RuntimeError, match="not running"):
        await writer.flush()


async def test_writer_survives_a_database_outage(private_postgres, caplog):
    url = private_postgres.url
    migrate.upgrade(url)
    writer = RecordWriter(url)
    writer.start()
    for seq in range(10):
        writer.submit_event(_event("c1", seq))
    await writer.flush()

    await asyncio.to_thread(private_postgres.stop)
    for seq in range(10, 20):
        writer.submit_event(_event("c1", seq))
    writer.submit_call(_call("c1"))
    async with asyncio.timeout(10):
        while writer.failed_batches < 2:
            await asyncio.sleep(0.05)
    for seq in range(5, 15):  # re-sent while down: some stored before the outage, some not yet
        writer.submit_event(_event("c1", seq))
    assert writer.pending == 21

    await asyncio.to_thread(private_postgres.start)
    async with asyncio.timeout(15):
        await writer.flush()
    await writer.close()

    events = list_events(url, "c1")
    assert [e["seq"] for e in events] == list(range(20))
    ids = [e["id"] for e in events]
    assert ids == sorted(ids), "events were stored out of submission order"
    assert [c["call_uuid"] for c in list_calls(url)] == ["c1"]
    assert writer.written_events == 30 and writer.written_calls == 1
    assert "127.0.0.1" in caplog.text and "***" in caplog.text
    assert private_postgres.password not in caplog.text
