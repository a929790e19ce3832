"""Conversation turns: validated records, written once however often replayed, shown by `voxgate turns`."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import pytest

from controller.cli import main
from controller.records import migrate
from controller.records.cdr import EventRecord, TurnRecord
from controller.records.store import RecordWriter, list_events, list_turns

T0 = datetime(2026, 11, 25, 9, 30, 0, 125000, tzinfo=UTC)

DETAIL = {
    "tool_calls": [{"name": "lookup_order", "arguments": {"order": "A-17", "express": True}, "ms": 41.5}],
    "fallback": None,
    "reason": "LLM timed out — «grounded» reply used",
    "counts": {"tokens": 37, "retries": 0},
}


def _turn(uuid: str, seq: int, **changes: object) -> TurnRecord:
    """Even seqs are the caller, odd seqs the agent's full, heard reply."""
    start = T0 + timedelta(seconds=2 * seq)
    if seq % 2 == 0:
        record = TurnRecord("freeswitch", uuid, seq, "caller", f"question {seq}", None, start,
                            start + timedelta(seconds=1), confidence=0.92, engines={"stt": "whisper"})
    else:
        record = TurnRecord("freeswitch", uuid, seq, "agent", f"answer {seq}", f"answer {seq}", start,
                            start + timedelta(seconds=1.5), stt_ms=180.0, llm_first_token_ms=420.5,
                            tts_first_audio_ms=610.25, voice_to_voice_ms=702.0,
                            engines={"stt": "whisper", "llm": "grounded", "tts": "hibari"})
    return dataclasses.replace(record, **changes)


INTERRUPTED = _turn(
    "c1", 1, text="Your order A-17 ships tomorrow by express courier.", heard_text="Your order A-17",
    interrupted=True, barge_in_ms=212.4, detail=DETAIL,
)


def _stored_turn(row: dict) -> TurnRecord:
    return TurnRecord(**{f.name: row[f.name] for f in dataclasses.fields(TurnRecord)})


async def _write(url: str, *batches: list[TurnRecord | EventRecord]) -> RecordWriter:
    """Each list is submitted, then flushed, before the next: one batch each."""
    writer = RecordWriter(url)
    writer.start()
    for batch in batches:
        for record in batch:
            if isinstance(record, TurnRecord):
                writer.submit_turn(record)
            else:
                writer.submit_event(record)
        await writer.flush()
    await writer.close()
    return writer


async def test_turns_round_trip_beside_events(database_url):
    event = EventRecord("freeswitch", "c1", 0, T0, "answered", {"seq": 0})
    turns = [_turn("c1", 2), INTERRUPTED, _turn("c1", 0), _turn("other", 0)]
    writer = await _write(database_url, [event, *turns])

    rows = list_turns(database_url, "c1")
    assert [_stored_turn(row) for row in rows] == [_turn("c1", 0), INTERRUPTED, _turn("c1", 2)]
    assert rows[1]["detail"] == DETAIL and rows[1]["interrupted"] is True
    assert all(row[name].utcoffset() == timedelta(0) for row in rows for name in ("started_at", "ended_at"))
    assert [e["type"] for e in list_events(database_url, "c1")] == ["answered"]
    assert (writer.written_events, writer.written_turns, writer.failed_batches) == (1, 4, 0)


async def test_replayed_turns_are_stored_once(database_url):
    first = [_turn("c1", seq) for seq in range(4)]
    replay = [_turn("c1", seq, text="replayed") for seq in range(2, 6)]
    writer = await _write(database_url, first + first, replay + replay)

    rows = list_turns(database_url, "c1")
    assert [row["seq"] for row in rows] == list(range(6))
    assert [row["text"] for row in rows] == ["question 0", "answer 1", "question 2", "answer 3"] + ["replayed"] * 2
    assert writer.written_turns == 16 and writer.pending == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"speaker": "bot"}, "speaker is 'bot'"),
        ({"speaker": "Caller"}, "speaker is 'Caller'"),
        ({"started_at": datetime(2026, 11, 25, 9, 30)}, "naive datetime"),
        ({"ended_at": datetime(2026, 11, 25, 9, 31)}, "naive datetime"),
        ({"detail": {"at": T0}}, "not storable as JSON"),
        ({"detail": {"score": math.nan}}, "not storable as JSON"),
    ],
)
def test_unstorable_turns_are_refused_when_made(changes, message):
    with pytest.raises(ValueError, match=message):
        _turn("c1", 0, **changes)



def test_the_writer_refuses_what_it_cannot_store(sqlite_url):
    writer = RecordWriter(sqlite_url)
    with pytest.raises(TypeError, match="dict is not a record type"):
        writer.submit_turn(dataclasses.asdict(_turn("c1", 0)))  # type: ignore[arg-type]
    assert writer.pending == 0


async def test_turns_command_prints_the_conversation(sqlite_url, monkeypatch, capsys):
    migrate.upgrade(sqlite_url)
    await _write(sqlite_url, [_turn("c1", 0, text="When does\nmy order ship?"), INTERRUPTED, _turn("c1", 2)])
    monkeypatch.delenv("VOXGATE_CONFIG", raising=False)
    monkeypatch.setenv("VOXGATE_DATABASE_URL", sqlite_url)

    assert main(["turns", "c1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "seq  speaker  interrupted  voice_to_voice_ms  barge_in_ms  text",
        "0    caller   no                                           When does my order ship?",
        "1    agent    yes          702                212          "
        "Your order A-17 ships tomorrow by express courier.  [heard: Your order A-17]",
        "2    caller   no                                           question 2",
    ]

    assert main(["turns", "unknown"]) == 1
    assert "no turns recorded for call unknown" in capsys.readouterr().err
