"""Event payloads: converters from the records, the body's schema, and the docs' table of keys."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from controller.call import Answered
from controller.records.cdr import CallRecord, TransferRecord, TurnRecord
from controller.webhooks import (
    EVENT_TYPES, CallEnded, CallTransferred, TurnCompleted, call_answered, call_ended, call_started, call_transferred,
    encode_event, new_event, turn_completed,
)

from .conftest import DOCS, call_info, cdr

T0 = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


def turn() -> TurnRecord:
    return TurnRecord("freeswitch", "c-1", 3, "agent", "Your order ships [phone] today.", "Your order ships",
                      T0, T0 + timedelta(seconds=2), None, True, 310.0, 420.5, 510.0, 640.0, 180.0,
                      {"stt": "whisper", "llm": "grounded", "tts": "hibari"}, {"redactions": {"phone": 1}})


def body_of(event_type: str, data) -> dict:
    return json.loads(encode_event(new_event(event_type, data)))


def test_call_ended_carries_the_full_cdr():
    assert [f.name for f in fields(CallEnded)] == [f.name for f in fields(CallRecord)]
    record = cdr()
    body = body_of("call.ended", call_ended(record))
    assert set(body) == {"id", "type", "created_at", "data"}
    assert body["type"] == "call.ended" and body["id"].startswith("evt_")
    expected = {k: v.isoformat(timespec="microseconds") if isinstance(v, datetime) else v
                for k, v in asdict(record).items()}
    assert body["data"] == expected
    assert body["data"]["ended_at"] == "2026-11-25T09:31:35.000005+00:00"
    assert body["data"]["started_at"] == "2026-11-25T09:30:00.000000+00:00"  # one shape, even on the second


def test_turn_completed_carries_the_turn_as_stored_and_transfers_their_record():
    assert [f.name for f in fields(TurnCompleted)] == [f.name for f in fields(TurnRecord)]
    body = body_of("turn.completed", turn_completed(turn()))
    assert body["data"]["text"] == "Your order ships [phone] today."
    assert body["data"]["heard_text"] == "Your order ships" and body["data"]["interrupted"] is True
    assert body["data"]["voice_to_voice_ms"] == 640.0 and body["data"]["confidence"] is None
    assert body["data"]["detail"] == {"redactions": {"phone": 1}}

    assert [f.name for f in fields(CallTransferred)] == [f.name for f in fields(TransferRecord)]
    transfer = TransferRecord("asterisk", "c-2", 1, T0, "sales@voxgate-transfer", "blind", "agent", "failed",
                              "No such extension")
    data = body_of("call.transferred", call_transferred(transfer))["data"]
    assert data == {"pbx": "asterisk", "call_uuid": "c-2", "seq": 1, "at": "2026-11-25T09:30:00.000000+00:00",
                    "destination": "sales@voxgate-transfer", "kind": "blind", "reason": "agent",
                    "outcome": "failed", "error": "No such extension"}


def test_call_started_and_answered_come_from_the_call_info():
    info = call_info()
    data = body_of("call.started", call_started(info))["data"]
    assert data == {"pbx": "freeswitch", "call_uuid": info.uuid, "direction": "inbound",
                    "caller_id_name": "Ada Lovelace", "caller_id_number": "+442071234567", "destination": "5000",
                    "flow": "assistant", "started_at": "2026-11-25T09:30:00.000000+00:00", "session": 0}
    info.started_at = None  # a PBX that gave no start time: the moment of adoption
    assert call_started(info, at=T0 + timedelta(hours=1)).started_at == T0 + timedelta(hours=1)
    answered = Answered(T0 + timedelta(seconds=2))
    assert body_of("call.answered", call_answered(info, answered.at))["data"] == {
        "pbx": "freeswitch", "call_uuid": info.uuid, "flow": "assistant",
        "answered_at": "2026-11-25T09:30:02.000000+00:00"}


def test_times_in_other_zones_are_sent_in_utc_and_text_as_utf8():
    paris = datetime(2026, 11, 25, 10, 30, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    event = new_event("call.ended", call_ended(cdr(started_at=paris, caller_id_name="Zoë")), now=paris)
    raw = encode_event(event)
    assert "Zoë".encode() in raw
    body = json.loads(raw)
    assert body["created_at"] == body["data"]["started_at"] == "2026-11-25T10:30:00.000000+00:00"


def test_unknown_types_wrong_payloads_and_non_json_data_are_refused():
    with pytest.raises(ValueError, match="unknown webhook event type 'call.exploded'"):
        new_event("call.exploded", call_ended(cdr()))
    with pytest.raises(TypeError, match="call.started carries a CallStarted, got CallEnded"):
        new_event("call.started", call_ended(cdr()))
    with pytest.raises(TypeError, match="got CallRecord"):
        new_event("call.ended", cdr())  # the internal record is not the public schema: convert it
    with pytest.raises(ValueError, match="not storable as JSON"):
        encode_event(new_event("call.ended", call_ended(cdr(state={"ratio": float("nan")}))))
    with pytest.raises(ValueError, match="not storable as JSON"):
        encode_event(new_event("call.ended", call_ended(cdr(state={"seen": {1, 2}}))))


def test_the_docs_list_exactly_the_keys_of_every_event_type():
    rows = re.findall(r"^\| `([a-z.]+)` \| .*? \| (`.*`) \|$", DOCS.read_text(), re.MULTILINE)
    documented = {name: re.findall(r"`(\w+)`", keys) for name, keys in rows if name in EVENT_TYPES}
    assert documented == {name: [f.name for f in fields(cls)] for name, cls in EVENT_TYPES.items()}


def test_the_docs_example_body_has_the_shape_voxgate_sends():
    example = json.loads(re.search(r"```json\n(.*?)```", DOCS.read_text(), re.DOTALL).group(1))
    sent = body_of("call.ended", call_ended(cdr()))
    assert list(example) == list(sent)
    assert list(example["data"]) == list(sent["data"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", example["data"]["started_at"])
