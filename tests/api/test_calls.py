"""GET /calls and /calls/{uuid} over HTTP against records written by voxgate's own writer."""

from __future__ import annotations

import pytest

from controller.openapi import PAGE_MAX
from tests.api.conftest import SEEDED, detail_records, seed

NEWEST_FIRST = ["c7", "c6", "c5", "c4", "c3", "c2", "c1"]  # c6 was written after c5 at the same instant


@pytest.fixture
async def seeded(api_rig):
    await seed(api_rig.database_url, [*SEEDED, *detail_records("c2")])
    return api_rig


def _uuids(body) -> list[str]:
    return [call["call_uuid"] for call in body["calls"]]


async def test_calls_are_listed_newest_first_with_their_cdr_fields(seeded):
    status, body = await seeded.get("/calls")
    assert status == 200 and _uuids(body) == NEWEST_FIRST and body["next_cursor"] is None
    c2 = next(call for call in body["calls"] if call["call_uuid"] == "c2")
    assert c2 == {"pbx": "freeswitch", "call_uuid": "c2", "direction": "inbound", "caller_id_name": "Caller",
                  "caller_id_number": "15551230001", "destination": "5000", "started_at": "2026-03-02T09:10:00Z",
                  "answered_at": "2026-03-02T09:10:01Z", "ended_at": "2026-03-02T09:11:01Z", "duration_s": 61,
                  "billsec": 60, "hangup_cause": "NORMAL_CLEARING", "flow": "assistant", "outcome": "transferred",
                  "error": None, "instance": None}  # seeded records name no instance


@pytest.mark.parametrize(("query", "expected"), [
    ({"flow": "assistant"}, ["c6", "c5", "c2"]),
    ({"outcome": "transferred"}, ["c2"]),
    ({"pbx": "asterisk"}, ["c3"]),
    ({"direction": "outbound"}, ["c4"]),
    ({"caller_number": "+441632960001"}, ["c3"]),
    ({"since": "2026-03-02T09:40:00Z"}, ["c7", "c6", "c5"]),  # since is inclusive
    ({"until": "2026-03-02T09:20:00Z"}, ["c2", "c1"]),  # until is not
    ({"since": "2026-03-02T10:10:00+01:00", "until": "2026-03-02T04:40:00-05:00"}, ["c4", "c3", "c2"]),
    ({"flow": "assistant", "caller_number": "15551230001"}, ["c5", "c2"]),
    ({"flow": "nobody"}, []),
])
async def test_filters_select_the_matching_calls(seeded, query, expected):
    status, body = await seeded.get("/calls", params=query)
    assert status == 200 and _uuids(body) == expected


async def test_pages_follow_the_cursor_through_every_call_once(seeded):
    pages, cursor = [], None
    while True:
        status, body = await seeded.get("/calls", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert status == 200
        pages.append(_uuids(body))
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [["c7", "c6"], ["c5", "c4"], ["c3", "c2"], ["c1"]]


async def test_a_page_with_filters_keeps_them(seeded):
    status, first = await seeded.get("/calls", params={"flow": "assistant", "limit": 1})
    status, second = await seeded.get("/calls", params={"flow": "assistant", "limit": 1,
                                                        "cursor": first["next_cursor"]})
    assert _uuids(first) == ["c6"] and _uuids(second) == ["c5"] and second["next_cursor"] is not None


async def test_a_call_comes_with_everything_stored_about_it_in_order(seeded):
    status, body = await seeded.get("/calls/c2")
    assert status == 200
    assert body["call"]["outcome"] == "transferred" and body["call"]["variables"] == {"voxgate_flow": "assistant"}
    assert body["call"]["state"] == {"note": "kept"}
    assert [(t["seq"], t["speaker"]) for t in body["turns"]] == [(0, "caller"), (1, "agent")]  # not the asterisk one
    agent = body["turns"][1]
    assert (agent["voice_to_voice_ms"], agent["llm_first_token_ms"], agent["tts_first_audio_ms"], agent["stt_ms"],
            agent["barge_in_ms"]) == (612.5, 210.0, 390.0, 180.0, 140.0)
    assert agent["interrupted"] is True and agent["heard_text"] == "Thanks."
    assert body["turns"][0]["text"] == "my card is [card]" and body["turns"][0]["detail"] == {"redactions": {"card": 1}}
    assert [e["type"] for e in body["events"]] == ["CHANNEL_CREATE", "CHANNEL_ANSWER"]
    assert body["dtmf"] == [{"seq": 0, "at": "2026-03-02T09:10:05Z", "digit": "x", "direction": "in",
                             "duration_ms": 120}]
    assert body["tool_calls"][0]["arguments"] == {"order": "[phone]"} and body["tool_calls"][0]["result"] == "shipped"
    assert body["transfers"][0]["destination"] == "1000" and body["transfers"][0]["reason"] == "agent"
    [recording] = body["recordings"]
    assert recording["size_bytes"] == 123456 and recording["key_id"] == "k1" and "path" not in recording


async def test_a_call_without_rows_of_its_own_has_empty_lists(seeded):
    status, body = await seeded.get("/calls/c7")
    assert status == 200 and body["call"]["call_uuid"] == "c7"
    assert all(body[key] == [] for key in ("turns", "events", "dtmf", "transfers", "tool_calls", "recordings"))


async def test_an_unknown_call_is_404_and_a_malformed_uuid_422(seeded):
    status, body = await seeded.get("/calls/nope-123")
    assert status == 404 and body["error"]["code"] == "not_found" and "nope-123" in body["error"]["message"]
    status, body = await seeded.get("/calls/bad%20uuid")
    assert status == 422 and body["error"]["field"] == "call_uuid"


@pytest.mark.parametrize(("query", "field"), [
    ({"limit": str(PAGE_MAX + 1)}, "limit"),
    ({"limit": "0"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "+5"}, "limit"),
    ({"since": "2026-03-02T09:00:00"}, "since"),  # no offset: which time zone?
    ({"since": "yesterday"}, "since"),
    ({"until": "2026-02-30T09:00:00Z"}, "until"),
    ({"pbx": "sip"}, "pbx"),
    ({"direction": "sideways"}, "direction"),
    ({"caller_number": "555-1234"}, "caller_number"),
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"flow": "two words"}, "flow"),
])
async def test_invalid_parameters_are_422_naming_the_field(seeded, query, field):
    status, body = await seeded.get("/calls", params=query)
    assert status == 422, body
    assert body["error"]["code"] == "invalid" and body["error"]["field"] == field


async def test_unknown_or_repeated_parameters_are_400(seeded):
    status, body = await seeded.get("/calls", params={"flw": "assistant"})
    assert status == 400 and body["error"]["field"] == "flw" and "unknown query parameter" in body["error"]["message"]
    status, body = await seeded.get("/calls", params=[("flow", "a"), ("flow", "b")])
    assert status == 400 and body["error"]["field"] == "flow"


async def test_the_page_size_is_capped_and_honoured(api_rig):
    await seed(api_rig.database_url, [SEEDED[0].__class__(**{**_fields(SEEDED[0]), "call_uuid": f"m{i:03d}"})
                                      for i in range(PAGE_MAX + 3)])
    status, body = await api_rig.get("/calls", params={"limit": PAGE_MAX})
    assert status == 200 and len(body["calls"]) == PAGE_MAX and body["next_cursor"]
    status, rest = await api_rig.get("/calls", params={"limit": PAGE_MAX, "cursor": body["next_cursor"]})
    assert len(rest["calls"]) == 3 and rest["next_cursor"] is None
    assert not set(_uuids(body)) & set(_uuids(rest))
    status, default = await api_rig.get("/calls")
    assert len(default["calls"]) == 50


async def test_calls_on_postgresql(tmp_path, pg_database_url):
    from tests.api.conftest import start_api_rig, stop_api_rig

    rig = await start_api_rig(tmp_path, pg_database_url)
    try:
        await seed(pg_database_url, [*SEEDED, *detail_records("c2")])
        pages, cursor = [], None
        while cursor is not None or not pages:
            status, body = await rig.get("/calls", params={"limit": 3, **({"cursor": cursor} if cursor else {})})
            pages.append(_uuids(body))
            cursor = body["next_cursor"]
        assert pages == [["c7", "c6", "c5"], ["c4", "c3", "c2"], ["c1"]]
        status, body = await rig.get("/calls", params={"since": "2026-03-02T10:10:00+01:00", "flow": "assistant"})
        assert _uuids(body) == ["c6", "c5", "c2"]
        status, body = await rig.get("/calls/c2")
        assert status == 200 and len(body["turns"]) == 2 and body["turns"][1]["voice_to_voice_ms"] == 612.5
    finally:
        await stop_api_rig(rig)


def _fields(record) -> dict:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


async def test_a_database_error_is_503_and_the_log_names_no_statement(seeded, caplog):
    import sqlite3

    path = seeded.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE calls RENAME TO calls_away")
    try:
        status, body = await seeded.get("/calls", params={"flow": "assistant"})
        assert status == 503 and body == {"error": {"code": "unavailable",
                                                    "message": "the records database is unavailable"}}
        assert "no such table: calls" in caplog.text and "SELECT" not in caplog.text
    finally:
        with sqlite3.connect(path) as db:
            db.execute("ALTER TABLE calls_away RENAME TO calls")
    status, body = await seeded.get("/calls", params={"flow": "assistant"})
    assert status == 200 and _uuids(body) == ["c6", "c5", "c2"]
