"""The dashboard's data: live and recent calls as placed through the simulator, one call's record,
and the daily figures of `voxgate report` over a range of days."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from controller.records.report import build_report
from controller.records.store import list_calls
from tests.api.conftest import cdr, detail_records, seed
from tests.dashboard.conftest import FINISHED, write_history


async def test_live_and_recent_calls_are_the_calls_placed_through_the_simulator(board):
    cookie = await board.sign_in()
    held = await board.place(caller_id_number="15551230042", destination="7000")
    await board.live(held.uuid)
    done = []
    for number, destination in (("15551230043", "7001"), ("15551230044", "7002")):
        channel = await board.place(FINISHED, caller_id_number=number, destination=destination)
        await board.stored(channel.uuid)
        done.append(channel)

    status, body = await board.data("live", cookie)
    assert status == 200
    [live] = body["calls"]
    assert (live["call_uuid"], live["caller_id_number"], live["destination"], live["flow"], live["pbx"]) == \
        (held.uuid, "15551230042", "7000", "hold", "freeswitch")
    assert live["answered_at"] is not None
    assert abs(datetime.fromisoformat(body["now"]) - datetime.now(UTC)) < timedelta(seconds=5)

    stored = {row["call_uuid"]: row for row in list_calls(board.database_url)}
    status, body = await board.data("calls", cookie)
    assert status == 200
    assert [call["call_uuid"] for call in body["calls"]] == [done[1].uuid, done[0].uuid]  # newest first
    for call in body["calls"]:
        row = stored[call["call_uuid"]]
        for key in ("caller_id_number", "destination", "flow", "outcome", "hangup_cause", "duration_s", "billsec"):
            assert call[key] == row[key], key
        assert datetime.fromisoformat(call["started_at"]) == row["started_at"]
    status, body = await board.data("calls?limit=1", cookie)
    assert [call["call_uuid"] for call in body["calls"]] == [done[1].uuid]
    for bad in ("limit=0", "limit=201", "limit=x", "limit=-1", "limit=%C2%B2"):  # "²" is a digit to Python
        status, body = await board.data(f"calls?{bad}", cookie)
        assert status == 422 and "limit must be a whole number from 1 to 200" in body["error"]["message"], bad

    status, body = await board.data(f"calls/{done[0].uuid}", cookie)
    assert status == 200 and body["call"]["caller_id_number"] == "15551230043" and body["turns"] == []
    status, body = await board.data(f"calls/{held.uuid}", cookie)  # live: no record yet
    assert status == 404 and body["error"]["code"] == "not_found"

    status, body = await board.data("daily?days=3", cookie)
    assert status == 200 and [day["day"] for day in body["days"]] == [
        (datetime.now(UTC).date() - timedelta(days=n)).isoformat() for n in (2, 1, 0)]
    today = body["days"][-1]
    assert (today["calls"], today["answered"], today["contained"], today["transferred"]) == (2, 2, 2, 0)
    assert "hold" in body["flows"] and "agent" in body["flows"]

    await board.post(f"/live-calls/{held.uuid}/hangup")
    await board.stored(held.uuid)
    status, body = await board.data("live", cookie)
    assert body["calls"] == []
    status, body = await board.data("calls", cookie)
    assert [call["call_uuid"] for call in body["calls"]] == [done[1].uuid, done[0].uuid, held.uuid]  # by start


async def test_daily_figures_are_the_reports_pooled_across_flows(board_on_each_database):
    board = board_on_each_database
    await write_history(board.database_url)
    cookie = await board.sign_in()
    status, body = await board.data("daily?days=7", cookie)
    assert status == 200
    days = body["days"]
    today = datetime.now(UTC).date()
    assert [d["day"] for d in days] == [(today - timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    assert (body["since"], body["until"], body["flow"]) == (days[0]["day"], today.isoformat(), None)
    two_ago, five_ago = days[-3], days[-6]
    # h1 (agent, contained), h2 (sales, transferred), h3 (not answered); replies 400, 600 (h1) and 500 (h2, barged in)
    assert {k: two_ago[k] for k in ("calls", "answered", "contained", "transferred", "unanswered", "replies",
                                    "barged_in")} == {"calls": 3, "answered": 2, "contained": 1, "transferred": 1,
                                                      "unanswered": 1, "replies": 3, "barged_in": 1}
    assert two_ago["containment"] == 0.5 and two_ago["avg_handle_s"] == 60
    assert two_ago["p50_ms"] == 500 and abs(two_ago["p95_ms"] - 590) < 1e-6  # inclusive: 500 + 0.9 * (600 - 500)
    assert (five_ago["calls"], five_ago["p50_ms"], five_ago["p95_ms"]) == (1, 700, 700)
    for day in days:
        if day not in (two_ago, five_ago):
            assert (day["calls"], day["replies"], day["p50_ms"], day["containment"]) == (0, 0, None, None)
    assert body["causes"] == [{"cause": "NORMAL_CLEARING", "calls": 3}, {"cause": "NO_ANSWER", "calls": 1}]
    assert {"agent", "sales", "hold", "greeting"} <= set(body["flows"])

    report = build_report(board.database_url, today - timedelta(days=6), today)  # the same numbers as `voxgate report`
    for day in days:
        assert day["calls"] == sum(r.calls for r in report.days if r.day == day["day"])

    status, body = await board.data("daily?days=7&flow=sales", cookie)
    two_ago = body["days"][-3]
    assert body["flow"] == "sales" and "agent" in body["flows"]  # still offered, to switch back
    assert (two_ago["calls"], two_ago["transferred"], two_ago["contained"], two_ago["containment"]) == (1, 1, 0, 0)
    assert (two_ago["replies"], two_ago["p50_ms"], two_ago["p95_ms"]) == (1, 500, 500)
    assert sum(day["calls"] for day in body["days"]) == 1

    status, body = await board.data("daily?days=3", cookie)
    assert sum(day["calls"] for day in body["days"]) == 3 and len(body["days"]) == 3
    status, body = await board.data("daily", cookie)
    assert len(body["days"]) == 14 and sum(day["calls"] for day in body["days"]) == 4
    for bad in ("days=0", "days=91", "days=7.5"):
        status, body = await board.data(f"daily?{bad}", cookie)
        assert status == 422 and "days must be a whole number from 1 to 90" in body["error"]["message"], bad


async def test_one_call_shows_its_transcript_latencies_transfers_and_tool_calls(board_on_each_database):
    board = board_on_each_database
    await seed(board.database_url, [cdr("c2", 10, flow="assistant", outcome="transferred"), *detail_records("c2")])
    cookie = await board.sign_in()
    status, body = await board.data("calls/c2", cookie)
    assert status == 200
    assert body["call"]["outcome"] == "transferred" and body["call"]["flow"] == "assistant"
    caller, agent = body["turns"]  # this PBX's turns only, in order
    assert (caller["speaker"], caller["text"]) == ("caller", "my card is [card]")  # stored redacted, shown so
    assert (agent["text"], agent["heard_text"], agent["interrupted"]) == ("Thanks. What is the card?", "Thanks.", True)
    assert (agent["stt_ms"], agent["llm_first_token_ms"], agent["tts_first_audio_ms"], agent["voice_to_voice_ms"],
            agent["barge_in_ms"]) == (180.0, 210.0, 390.0, 612.5, 140.0)
    assert [(t["destination"], t["reason"]) for t in body["transfers"]] == [("1000", "agent")]
    assert [(t["name"], t["result"], t["duration_ms"]) for t in body["tool_calls"]] == \
        [("lookup_order", "shipped", 12.5)]
    text = json.dumps(body)
    assert "/var/secret/path.vxr" not in text and "[phone]" not in text  # no recording paths, no tool arguments

