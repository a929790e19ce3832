"""Retention: old transcripts, digits and recordings erased, numbers kept, recent records untouched."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.cli import main
from controller.records.cdr import DtmfRecord, RecordingRecord, ToolCallRecord
from controller.records.retention import PURGED, Purged, parse_age, purge
from controller.records.store import RecordWriter, list_calls, list_rows, list_turns
from tests.records.test_report import _store
from tests.records.test_store import T0, _call

STATE = {"account": "4242 1234", "callback": "+15551230007"}  # what a flow may keep: personal data


async def _details(url: str, recording_path: str) -> None:
    writer = RecordWriter(url)
    writer.start()
    for seq, digit in enumerate("12#", start=1):
        writer.submit(DtmfRecord("freeswitch", "a", seq, T0, digit))
    writer.submit(ToolCallRecord("freeswitch", "a", 1, 0, T0, "order_status", {"order_number": "45721"},
                                 '{"say": "shipped"}', None, 3.5))
    writer.submit(RecordingRecord("freeswitch", "a", 1, recording_path, T0, 12.0, 2, 8000, 100, "0" * 64, "k1"))
    writer.submit_call(_call("old-state", state=STATE))
    writer.submit_call(_call("new-state", state=STATE, started_at=T0 + timedelta(days=60)))
    await writer.flush()
    await writer.close()


async def test_purge_erases_old_words_and_keeps_the_numbers(database_url, tmp_path):
    recording = tmp_path / "a.vxrec"
    recording.write_bytes(b"sealed")
    await _store(database_url)
    await _details(database_url, str(recording))
    assert purge(database_url, timedelta(days=90), now=T0 + timedelta(days=30)) == Purged(0, 0, 0, 0, 0)
    assert recording.exists()
    assert {c["call_uuid"]: c["state"] for c in list_calls(database_url)}["old-state"] == STATE
    assert purge(database_url, timedelta(days=90), now=T0 + timedelta(days=91)) == Purged(4, 1, 3, 1, 1)
    turns = list_turns(database_url, "a")
    assert all(t["text"] == "" and t["heard_text"] is None and t["detail"] == PURGED for t in turns)
    assert [t["voice_to_voice_ms"] for t in turns] == [500.0, 600.0, 700.0, 800.0]
    assert [t["interrupted"] for t in turns] == [False, False, False, True]
    [tool] = list_rows(database_url, "tool_calls", "a")
    assert tool["arguments"] == PURGED and tool["result"] is None
    assert tool["name"] == "order_status" and tool["duration_ms"] == 3.5
    assert [d["digit"] for d in list_rows(database_url, "dtmf", "a")] == ["x", "x", "x"]
    assert not recording.exists() and list_rows(database_url, "recordings", "a") == []
    calls = {c["call_uuid"]: c for c in list_calls(database_url)}
    assert calls["old-state"]["state"] is None and calls["new-state"]["state"] == STATE
    assert calls["old-state"]["caller_id_number"] == "15551230003" and calls["old-state"]["billsec"] == 2  # CDR kept
    assert purge(database_url, timedelta(days=90), now=T0 + timedelta(days=91)) == Purged(0, 0, 0, 0, 0)  # idempotent
    assert purge(database_url, timedelta(days=1), now=T0 + timedelta(days=62)) == Purged(0, 0, 0, 0, 1)
    assert all(c["state"] is None for c in list_calls(database_url))


def test_the_command_checks_its_age(database_url, monkeypatch, capsys):
    monkeypatch.setenv("VOXGATE_DATABASE_URL", database_url)
    assert main(["db", "purge", "--older-than", "90d"]) == 0
    out = capsys.readouterr().out
    assert "older than 90d: erased the words of 0 turn(s)" in out and "the flow state of 0 call(s)" in out
    assert main(["db", "purge", "--older-than", "soon"]) == 2
    assert parse_age("12h") == timedelta(hours=12)
    with pytest.raises(ValueError):
        parse_age("0d")
