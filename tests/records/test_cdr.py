"""CDRs built from real CHANNEL_HANGUP_COMPLETE events, in both ESL event formats."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from controller.esl.protocol import EslParser, parse_event
from controller.records.cdr import CallRecord, EventRecord, call_record_from_hangup
from tests.fixture_data import esl_sessions, received_chunks


def _hangups(fixture: str, session: int) -> list[dict[str, str]]:
    parser = EslParser()
    for chunk in received_chunks(esl_sessions(fixture)[session]):
        parser.feed(chunk)
    events = (parse_event(frame) for frame in parser.frames())
    return [e.headers for e in events if e is not None and e.name == "CHANNEL_HANGUP_COMPLETE"]


OUTBOUND_PLAIN = _hangups("esl_outbound_session.json", 0)
INBOUND_JSON = _hangups("esl_inbound_session.json", 2)


def _record(headers: dict[str, str], **overrides: str) -> CallRecord:
    return call_record_from_hangup({**headers, **overrides}, flow="demo", outcome="completed")


def test_outbound_socket_call_from_plain_event():
    [headers] = OUTBOUND_PLAIN
    record = call_record_from_hangup(headers, flow="welcome", outcome="completed")
    assert record == CallRecord(
        pbx="freeswitch",
        call_uuid="28023d39-040e-4616-9a6a-e5a441533fca",
        direction="inbound",
        caller_id_name="",
        caller_id_number="15551230003",
        destination="300",
        started_at=datetime(2026, 11, 23, 22, 20, 8, 685252, tzinfo=UTC),
        answered_at=datetime(2026, 11, 23, 22, 20, 8, 705252, tzinfo=UTC),
        ended_at=datetime(2026, 11, 23, 22, 20, 10, 345246, tzinfo=UTC),
        duration_s=2,
        billsec=2,
        hangup_cause="NORMAL_CLEARING",
        flow="welcome",
        outcome="completed",
        error=None,
        variables=record.variables,
    )
    assert record.answered_at == datetime.fromtimestamp(1795472408, UTC).replace(microsecond=705252)
    assert record.variables["my_custom_var"] == "hello_from_dialplan"
    assert record.variables["current_application_data"] == "/opt/fs/run/sounds/short8k.wav"
    assert record.variables["answer_uepoch"] == "1795472408705252"
    assert not any(name.startswith("variable_") for name in record.variables)
    assert len(record.variables) == sum(key.startswith("variable_") for key in headers)


def test_both_legs_from_json_events():
    a_leg, b_leg = (call_record_from_hangup(h, flow="f", outcome="completed") for h in INBOUND_JSON)
    assert (a_leg.call_uuid, a_leg.direction, a_leg.caller_id_name, a_leg.caller_id_number, a_leg.destination) == (
        "a2a2a2a2-0000-4000-8000-00000000000a", "outbound", "Outbound Call", "default", "200",
    )
    assert (a_leg.hangup_cause, a_leg.duration_s, a_leg.billsec) == ("NORMAL_CLEARING", 2, 2)
    assert a_leg.started_at == a_leg.answered_at == datetime(2026, 11, 23, 22, 18, 16, 465253, tzinfo=UTC)
    assert a_leg.ended_at == datetime(2026, 11, 23, 22, 18, 18, 505252, tzinfo=UTC)
    assert a_leg.variables["my_cdr_tag"] == "esl-json"
    assert (b_leg.call_uuid, b_leg.direction, b_leg.caller_id_number) == (
        "2ec8f19c-2a10-4fdf-bb55-76079e4d77a2", "inbound", "15551230002",
    )
    assert b_leg.hangup_cause == "USER_BUSY"
    assert b_leg.variables["hangup_cause_q850"] == "17"


def test_flow_outcome_error_and_pbx_are_the_callers():
    [headers] = OUTBOUND_PLAIN
    record = call_record_from_hangup(headers, pbx="fs-2", flow="ivr", outcome="error", error="TTS timed out")
    assert (record.pbx, record.flow, record.outcome, record.error) == ("fs-2", "ivr", "error", "TTS timed out")


def test_credentials_are_not_kept():
    [headers] = OUTBOUND_PLAIN
    record = _record(
        headers,
        variable_sip_auth_password="hunter2",
        variable_X_API_Token="abc",
        variable_client_SECRET="s3",
        Caller_Password_Header="not a variable",
    )
    kept = " ".join(f"{k}={v}" for k, v in record.variables.items())
    assert "hunter2" not in kept and "abc" not in kept and "s3" not in kept
    assert "my_custom_var" in record.variables


@pytest.mark.parametrize("answer", ["0", "", "garbage"])
def test_unanswered_call_has_no_answer_time(answer):
    [headers] = OUTBOUND_PLAIN
    assert _record(headers, variable_answer_uepoch=answer).answered_at is None


def test_missing_answer_time_means_unanswered():
    headers = {k: v for k, v in OUTBOUND_PLAIN[0].items() if k != "variable_answer_uepoch"}
    assert _record(headers).answered_at is None


def test_hangup_cause_falls_back_to_the_variable():
    headers = {k: v for k, v in INBOUND_JSON[1].items() if k != "Hangup-Cause"}
    assert _record(headers).hangup_cause == "USER_BUSY"


@pytest.mark.parametrize(
    "header,value,message",
    [
        ("Unique-ID", None, "missing header Unique-ID"),
        ("Call-Direction", "sideways", "Call-Direction"),
        ("variable_start_uepoch", None, "missing header variable_start_uepoch"),
        ("variable_start_uepoch", "0", "variable_start_uepoch"),
        ("variable_end_uepoch", "12.5", "header variable_end_uepoch is not an integer"),
        ("variable_duration", "two", "header variable_duration is not an integer"),
        ("variable_billsec", "-1", "variable_billsec is negative"),
    ],
)
def test_bad_required_headers_are_named(header, value, message):
    headers = dict(OUTBOUND_PLAIN[0])
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    with pytest.raises(ValueError, match=message):
        _record(headers)


def test_missing_hangup_cause_is_an_error():
    headers = {k: v for k, v in OUTBOUND_PLAIN[0].items() if k not in ("Hangup-Cause", "variable_hangup_cause")}
    with pytest.raises(ValueError, match="Hangup-Cause"):
        _record(headers)


def test_nul_characters_are_dropped():
    # PostgreSQL text cannot hold NUL; an encoded %00 from the network must not make the CDR unwritable.
    record = _record(OUTBOUND_PLAIN[0], **{"Caller-Caller-ID-Name": "Mal\x00lory", "variable_note": "a\x00b"})
    assert record.caller_id_name == "Mallory"
    assert record.variables["note"] == "ab"


def test_records_refuse_naive_times():
    record = _record(OUTBOUND_PLAIN[0])
    with pytest.raises(ValueError, match="naive datetime"):
        dataclasses.replace(record, answered_at=datetime(2026, 11, 23, 22, 20, 8))
    with pytest.raises(ValueError, match="naive datetime"):
        EventRecord("freeswitch", record.call_uuid, 0, datetime(2026, 11, 23), "answered", {})
