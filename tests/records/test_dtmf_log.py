"""DTMF records: digits in order, long runs (card and account numbers) masked, sent digits kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controller.records.dtmf_log import DtmfLog

T0 = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def _press(log: DtmfLog, digits: str, start: float = 0.0, gap: float = 0.5) -> None:
    for i, digit in enumerate(digits):
        log.pressed(T0 + timedelta(seconds=start + i * gap), digit, 80)


def test_menu_choices_are_kept_and_long_runs_masked():
    stored = []
    log = DtmfLog("freeswitch", "c", stored.append)
    _press(log, "2")
    _press(log, "4556737586899855#", start=10)
    _press(log, "1234#", start=30)
    log.close()
    assert "".join(r.digit for r in stored) == "2" + "x" * 16 + "#" + "1234#"
    assert [r.seq for r in stored] == list(range(1, len(stored) + 1))
    assert all(r.direction == "in" and r.duration_ms == 80 for r in stored)


def test_a_pause_ends_a_run():
    stored = []
    log = DtmfLog("freeswitch", "c", stored.append)
    _press(log, "123")
    _press(log, "4567", start=10)  # 3 + 4 digits, but not one run
    log.close()
    assert "".join(r.digit for r in stored) == "1234567"
    stored.clear()
    log = DtmfLog("freeswitch", "c", stored.append)
    _press(log, "1234567", gap=3.0)  # slow typing is still one run
    log.close()
    assert "".join(r.digit for r in stored) == "x" * 7


def test_held_digits_reach_the_records_only_when_the_run_ends():
    stored = []
    log = DtmfLog("freeswitch", "c", stored.append)
    _press(log, "123")
    assert stored == []
    log.close()
    assert len(stored) == 3


def test_sent_digits_and_unmasked_logs():
    stored = []
    log = DtmfLog("freeswitch", "c", stored.append, mask=False)
    log.sent(T0, "4556737586899855")
    _press(log, "4556737586899855")
    log.close()
    assert "".join(r.digit for r in stored) == "4556737586899855" * 2
    assert [r.direction for r in stored[:16]] == ["out"] * 16


def test_a_later_session_numbers_its_digits_after_the_earlier_ones():
    stored = []
    log = DtmfLog("freeswitch", "c", stored.append, mask=False, first_seq=1_000_001)
    _press(log, "12")
    log.sent(T0, "9")
    assert [r.seq for r in stored] == [1_000_001, 1_000_002, 1_000_003]
