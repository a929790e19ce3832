"""Manager views and `voxgate report` on SQLite and PostgreSQL, from records the writer stored."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

from sqlalchemy import create_engine, text

from controller.cli import main
from controller.records.cdr import TurnRecord
from controller.records.report import build_report, render_html, render_text
from controller.records.store import RecordWriter
from tests.records.test_store import T0, _call


def _agent(uuid: str, seq: int, v2v: float, interrupted: bool = False) -> TurnRecord:
    return TurnRecord("freeswitch", uuid, seq, "agent", "Hello.", "Hello." if not interrupted else "He",
                      T0, T0 + timedelta(seconds=1), interrupted=interrupted, voice_to_voice_ms=v2v,
                      barge_in_ms=120.0 if interrupted else None)


async def _store(url: str) -> None:
    writer = RecordWriter(url)
    writer.start()
    writer.submit_call(_call("a", flow="assistant"))
    writer.submit_call(_call("b", flow="assistant", outcome="transferred", billsec=4))
    writer.submit_call(_call("c", flow="assistant", answered_at=None, billsec=0, hangup_cause="NO_ANSWER"))
    writer.submit_call(_call("d", flow="greeting", started_at=T0 - timedelta(days=1)))
    for seq, v2v in enumerate([500.0, 600.0, 700.0, 800.0]):
        writer.submit_turn(_agent("a", seq, v2v, interrupted=seq == 3))
    await writer.flush()
    await writer.close()


async def test_views_and_report(database_url, tmp_path, capsys, monkeypatch):
    await _store(database_url)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        daily = [dict(r._mapping) for r in connection.execute(text("SELECT * FROM call_daily ORDER BY day, flow"))]
        causes = dict(connection.execute(text("SELECT hangup_cause, calls FROM hangup_causes")).all())
        replies = [dict(r._mapping) for r in connection.execute(text("SELECT * FROM reply_daily"))]
    engine.dispose()
    day = T0.date()
    assert [(str(d["day"]), d["flow"], d["calls"], d["answered"], d["transferred"], d["contained"]) for d in daily] == [
        (str(day - timedelta(days=1)), "greeting", 1, 1, 0, 1), (str(day), "assistant", 3, 2, 1, 1)]
    assert causes == {"NORMAL_CLEARING": 3, "NO_ANSWER": 1}
    assert replies[0]["replies"] == 4 and replies[0]["barged_in"] == 1 and replies[0]["avg_voice_to_voice_ms"] == 650

    report = build_report(database_url, since=day, until=day, flow="assistant")
    (today,) = report.days
    assert today.calls == 3 and today.containment == 0.5 and today.transfer_rate == 0.5
    assert today.avg_handle_s == 3.0  # (2 + 4) / 2 answered
    (latency,) = report.latency
    assert (latency.replies, latency.p50_ms, latency.barge_in_rate) == (4, 650.0, 0.25)
    assert 770 < latency.p95_ms <= 800
    assert report.causes == [("NORMAL_CLEARING", 2), ("NO_ANSWER", 1)]
    assert "greeting" not in render_text(report)
    page = render_html(report)
    assert page.count("<svg") == 2 and "<script" not in page

    monkeypatch.setenv("VOXGATE_DATABASE_URL", database_url)
    out_html = tmp_path / "report.html"
    assert main(["report", "--since", str(day - timedelta(days=1)), "--html", str(out_html)]) == 0
    printed = capsys.readouterr().out
    assert "Calls by day" in printed and "greeting" in printed and "assistant" in printed
    assert out_html.read_text().startswith("<!doctype html>")


def test_an_empty_database_reports_no_data(database_url):
    text_report = render_text(build_report(database_url, since=date(2020, 1, 1)))
    assert text_report.count("(no data)") == 3
    assert dataclasses.is_dataclass(build_report(database_url))
