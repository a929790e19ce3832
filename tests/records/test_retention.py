"""Retention: old transcripts erased, numbers kept, recent turns untouched."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.cli import main
from controller.records.retention import PURGED, parse_age, purge_transcripts
from controller.records.store import list_turns
from tests.records.test_report import _store
from tests.records.test_store import T0


async def test_purge_erases_old_words_and_keeps_the_numbers(database_url):
    await _store(database_url)
    assert purge_transcripts(database_url, timedelta(days=90), now=T0 + timedelta(days=30)) == 0
    assert purge_transcripts(database_url, timedelta(days=90), now=T0 + timedelta(days=91)) == 4
    turns = list_turns(database_url, "a")
    assert all(t["text"] == "" and t["heard_text"] is None and t["detail"] == PURGED for t in turns)
    assert [t["voice_to_voice_ms"] for t in turns] == [500.0, 600.0, 700.0, 800.0]
    assert [t["interrupted"] for t in turns] == [False, False, False, True]
    assert purge_transcripts(database_url, timedelta(days=90), now=T0 + timedelta(days=91)) == 0  # idempotent


def test_the_command_checks_its_age(database_url, monkeypatch, capsys):
    monkeypatch.setenv("VOXGATE_DATABASE_URL", database_url)
    assert main(["db", "purge", "--older-than", "90d"]) == 0
    assert "erased the transcripts of 0 turn(s) older than 90d" in capsys.readouterr().out
    assert main(["db", "purge", "--older-than", "soon"]) == 2
    assert parse_age("12h") == timedelta(hours=12)
    with pytest.raises(ValueError):
        parse_age("0d")
