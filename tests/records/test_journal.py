"""The record journal: records survive a database outage, a shutdown and a crash, exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from controller.records import migrate
from controller.records.cdr import TurnRecord
from controller.records.journal import Journal, decode, encode
from controller.records.store import RecordWriter, list_calls, list_events, list_turns
from tests.records.test_store import T0, _call, _event


def _turn(uuid: str, seq: int) -> TurnRecord:
    return TurnRecord("freeswitch", uuid, seq, "agent", "Order 45721 shipped…", "Order 45721", T0,
                      T0 + timedelta(seconds=1), interrupted=True, voice_to_voice_ms=512.5, barge_in_ms=130.0,
                      engines={"stt": "whisper"}, detail={"tool_calls": [{"name": "order_status"}]})


def test_every_record_type_round_trips_through_a_journal_line():
    for record in (_call("c1"), _call("c2", answered_at=None), _event("c1", 3), _turn("c1", 4)):
        line = encode(record)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode(line) == record


def test_commit_moves_the_checkpoint_and_empties_the_file_when_all_is_written(tmp_path):
    journal = Journal(tmp_path)
    journal.append([_event("c1", seq) for seq in range(5)])
    records, offset = journal.pending(3)
    assert [r.seq for r in records] == [0, 1, 2]
    journal.commit(offset)
    assert Journal(tmp_path).checkpoint == offset  # persisted
    rest, end = journal.pending(10)
    assert [r.seq for r in rest] == [3, 4]
    journal.commit(end)
    assert journal.size == 0 and journal.checkpoint == 0 and journal.count_pending() == 0


def test_a_torn_last_line_from_a_crash_is_dropped_and_the_rest_kept(tmp_path):
    journal = Journal(tmp_path)
    journal.append([_event("c1", 0), _event("c1", 1)])
    journal.close()
    with open(journal.path, "ab") as raw:
        raw.write(encode(_event("c1", 2))[:-10])  # the process died mid-write
    reopened = Journal(tmp_path)
    reopened.append([_event("c1", 3)])
    records, _ = reopened.pending(10)
    assert [r.seq for r in records] == [0, 1, 3]


def test_a_checkpoint_past_an_emptied_journal_starts_over(tmp_path):
    journal = Journal(tmp_path)
    journal.append([_event("c1", 0)])
    journal.close()
    (tmp_path / "records.checkpoint").write_text("999")  # crash between truncating and resetting it
    assert Journal(tmp_path).checkpoint == 0


async def test_an_outage_spools_to_disk_and_everything_arrives_once(private_postgres, tmp_path):
    url = private_postgres.url
    migrate.upgrade(url)
    writer = RecordWriter(url, journal_dir=tmp_path / "journal", max_pending=50)
    writer.start()
    await asyncio.to_thread(private_postgres.stop)
    for burst in range(10):  # 400 records, far more than the in-memory queue holds
        for seq in range(burst * 40, burst * 40 + 40):
            writer.submit_event(_event("c1", seq))
        async with asyncio.timeout(5):
            while writer.queued:  # the database is down, yet memory empties: onto the disk
                await asyncio.sleep(0.01)
    writer.submit_call(_call("c1"))
    writer.submit_turn(_turn("c1", 0))
    assert writer.rejected == 0
    await asyncio.to_thread(private_postgres.start)
    async with asyncio.timeout(30):
        await writer.flush()
    await writer.close()
    assert [e["seq"] for e in list_events(url, "c1")] == list(range(400))
    assert len(list_calls(url)) == 1 and len(list_turns(url, "c1")) == 1
    assert Journal(tmp_path / "journal").count_pending() == 0


async def test_records_unwritten_at_shutdown_are_written_by_the_next_start(private_postgres, tmp_path, caplog):
    url = private_postgres.url
    migrate.upgrade(url)
    journal_dir = tmp_path / "journal"
    await asyncio.to_thread(private_postgres.stop)
    first = RecordWriter(url, journal_dir=journal_dir)
    first.start()
    for seq in range(30):
        first.submit_event(_event("c2", seq))
    first.submit_call(_call("c2"))
    await first.close(timeout_s=0.5)
    assert "kept in" in caplog.text and "for the next start" in caplog.text

    await asyncio.to_thread(private_postgres.start)
    second = RecordWriter(url, journal_dir=journal_dir)
    assert second.pending == 31
    second.start()
    async with asyncio.timeout(20):
        await second.flush()
    await second.close()
    assert [e["seq"] for e in list_events(url, "c2")] == list(range(30))
    assert [c["call_uuid"] for c in list_calls(url)] == ["c2"]


async def test_a_crash_after_the_commit_but_before_the_checkpoint_duplicates_nothing(sqlite_url, tmp_path):
    migrate.upgrade(sqlite_url)
    journal_dir = tmp_path / "journal"
    writer = RecordWriter(sqlite_url, journal_dir=journal_dir)
    writer.start()
    for seq in range(20):
        writer.submit_event(_event("c3", seq))
    writer.submit_turn(_turn("c3", 0))
    await writer.flush()
    await writer.close()
    # the database has them; put them back in the journal as if the checkpoint never moved
    replay = Journal(journal_dir)
    replay.append([_event("c3", seq) for seq in range(20)] + [_turn("c3", 0)])
    replay.close()
    again = RecordWriter(sqlite_url, journal_dir=journal_dir)
    again.start()
    await again.flush()
    await again.close()
    assert [e["seq"] for e in list_events(sqlite_url, "c3")] == list(range(20))
    assert len(list_turns(sqlite_url, "c3")) == 1


async def test_a_record_the_database_refuses_is_set_aside_and_the_rest_written(pg_database_url, tmp_path):
    migrate.upgrade(pg_database_url)
    writer = RecordWriter(pg_database_url, journal_dir=tmp_path / "journal")
    writer.start()
    bad = TurnRecord("freeswitch", "c4", 1, "caller", "nul \x00 byte", None, T0, T0)  # PostgreSQL refuses NUL
    writer.submit_event(_event("c4", 0))
    writer.submit_turn(_turn("c4", 0))
    writer.submit_turn(bad)
    writer.submit_event(_event("c4", 1))
    async with asyncio.timeout(10):
        await writer.flush()
    await writer.close()
    assert writer.quarantined == 1 and writer.failed_batches == 0
    assert [e["seq"] for e in list_events(pg_database_url, "c4")] == [0, 1]
    assert [t["seq"] for t in list_turns(pg_database_url, "c4")] == [0]
    refused = (tmp_path / "journal" / "refused.jsonl").read_bytes().splitlines(keepends=True)
    assert [decode(line) for line in refused] == [bad]
