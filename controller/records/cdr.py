"""Call records as plain values (call, event, turn, DTMF, tool call, transfer, recording), and the CDR built from a FreeSWITCH hangup event.

Pure functions only: the writer (store.py) persists these; nothing here touches a database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECRET_WORDS = ("password", "secret", "token")
_VARIABLE_PREFIX = "variable_"
SPEAKERS = ("caller", "agent")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call: a row of the `calls` table. Times must be timezone-aware (read back as UTC)."""

    pbx: str
    call_uuid: str
    direction: str
    caller_id_name: str
    caller_id_number: str
    destination: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime
    duration_s: int
    billsec: int
    hangup_cause: str
    flow: str
    outcome: str
    error: str | None
    variables: dict[str, str]
    state: dict[str, Any] | None = None  # the flow's call.state, JSON-able
    instance: str | None = None  # the voxgate instance that handled the call

    def __post_init__(self) -> None:
        _require_aware(self.started_at, self.answered_at, self.ended_at)


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event of a call, ordered by `seq` within (pbx, call_uuid); `payload` must be JSON-serialisable."""

    pbx: str
    call_uuid: str
    seq: int
    at: datetime
    type: str
    payload: dict[str, Any]

    def __post_init__(self) -> None:
        _require_aware(self.at)


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One turn of the conversation, ordered by `seq` within (pbx, call_uuid). Latencies in ms, None when not applicable."""

    pbx: str
    call_uuid: str
    seq: int
    speaker: str                  # "caller" | "agent"
    text: str                     # caller: final transcript; agent: the full reply voxgate meant to say
    heard_text: str | None        # agent turns: what the caller actually heard (differs when interrupted)
    started_at: datetime
    ended_at: datetime
    confidence: float | None = None   # caller turns: STT confidence 0..1
    interrupted: bool = False
    stt_ms: float | None = None              # agent turns: end of caller speech -> final transcript
    llm_first_token_ms: float | None = None  # end of caller speech -> first LLM token
    tts_first_audio_ms: float | None = None  # end of caller speech -> first TTS audio
    voice_to_voice_ms: float | None = None   # end of caller speech -> first agent audio frame sent to the PBX
    barge_in_ms: float | None = None         # caller speech onset -> playback stopped (interrupted agent turns)
    engines: dict[str, str] = field(default_factory=dict)  # e.g. {"stt":"whisper","llm":"grounded","tts":"hibari"}
    detail: dict[str, Any] = field(default_factory=dict)   # JSON-serialisable extras (tool calls made, fallback reason, ...)

    def __post_init__(self) -> None:
        _require_aware(self.started_at, self.ended_at)
        if self.speaker not in SPEAKERS:
            raise ValueError(f"speaker is {self.speaker!r}, expected one of {SPEAKERS}")
        _require_json(self.detail)


@dataclass(frozen=True, slots=True)
class DtmfRecord:
    """One DTMF digit: pressed by the caller ("in") or sent by voxgate ("out"), ordered by `seq` within the call."""

    pbx: str
    call_uuid: str
    seq: int
    at: datetime
    digit: str
    direction: str = "in"
    duration_ms: int = 0

    def __post_init__(self) -> None:
        _require_aware(self.at)
        if self.direction not in ("in", "out"):
            raise ValueError(f"DTMF direction is {self.direction!r}, expected 'in' or 'out'")


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool the agent called, at `position` within the agent turn `turn_seq`."""

    pbx: str
    call_uuid: str
    turn_seq: int
    position: int
    at: datetime
    name: str
    arguments: dict[str, Any]
    result: str | None
    error: str | None
    duration_ms: float

    def __post_init__(self) -> None:
        _require_aware(self.at)
        _require_json(self.arguments)


@dataclass(frozen=True, slots=True)
class CallAttemptRecord:
    """One try of an outbound call (request_id ties the tries together); call_uuid when it was answered."""

    request_id: str
    attempt: int
    pbx: str
    number: str
    trunk: str
    flow: str
    started_at: datetime
    ended_at: datetime
    outcome: str        # answered | busy | no_answer | rejected | failed
    cause: str          # the PBX's own words (hangup cause or Originate reason)
    call_uuid: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self.started_at, self.ended_at)


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """One transfer voxgate asked the PBX for: where to, why, and whether the PBX took it."""

    pbx: str
    call_uuid: str
    seq: int
    at: datetime
    destination: str
    kind: str = "blind"
    reason: str = ""
    outcome: str = "accepted"     # accepted | failed; attended not taken: declined | busy | no_answer
    error: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self.at)


@dataclass(frozen=True, slots=True)
class RecordingRecord:
    """One encrypted call recording on disk; `sha256` is of the encrypted file, checkable without the key."""

    pbx: str
    call_uuid: str
    seq: int
    path: str
    started_at: datetime
    duration_s: float
    channels: int
    sample_rate: int
    size_bytes: int
    sha256: str
    key_id: str
    complete: bool = True         # False: the file was closed without its final segment (crash, disk error)

    def __post_init__(self) -> None:
        _require_aware(self.started_at)


@dataclass(frozen=True, slots=True)
class WebhookDeliveryRecord:
    """One try to deliver a webhook event to one endpoint, keyed by (delivery_id, attempt).

    Attempt 0 is a delivery dropped before its first try; `final` marks the row that ends a delivery
    (a later submission of the same attempt replaces it, to mark it final when retries are given up).
    """

    delivery_id: str
    attempt: int
    event_id: str
    event_type: str
    endpoint: str                 # the endpoint's name (its host by default), never the URL with its query
    at: datetime
    status_code: int | None       # None: no HTTP answer (network error, timeout, dropped)
    error: str | None
    duration_ms: float
    final: bool
    pbx: str | None = None        # the call the event is about, when it is about one
    call_uuid: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self.at)


Record = (CallRecord | EventRecord | TurnRecord | DtmfRecord | ToolCallRecord | TransferRecord | RecordingRecord
          | CallAttemptRecord | WebhookDeliveryRecord)


def tool_call_records(turn: TurnRecord) -> list[ToolCallRecord]:
    """The tool calls an agent turn made (kept in its detail) as rows of their own."""
    return [
        ToolCallRecord(turn.pbx, turn.call_uuid, turn.seq, position, turn.started_at, call.get("name", ""),
                       call.get("arguments") or {}, call.get("result"), call.get("error"),
                       float(call.get("duration_ms") or 0.0))
        for position, call in enumerate(turn.detail.get("tool_calls", []))
    ]


def call_record_from_hangup(
    headers: dict[str, str],
    *,
    pbx: str = "freeswitch",
    flow: str,
    outcome: str,
    error: str | None = None,
) -> CallRecord:
    """The CDR of a CHANNEL_HANGUP_COMPLETE event, from its url-decoded headers (plain or json format).

    Raises ValueError naming the header when a required one is missing or malformed; a
    missing, zero or malformed answer time means the call was never answered.
    """
    direction = _required(headers, "Call-Direction")
    if direction not in ("inbound", "outbound"):
        raise ValueError(f"header Call-Direction is {direction!r}, expected 'inbound' or 'outbound'")
    hangup_cause = headers.get("Hangup-Cause") or headers.get("variable_hangup_cause")
    if not hangup_cause:
        raise ValueError("missing header Hangup-Cause (and variable_hangup_cause)")
    return CallRecord(
        pbx=pbx,
        call_uuid=_required(headers, "Unique-ID"),
        direction=direction,
        caller_id_name=_clean(headers.get("Caller-Caller-ID-Name", "")),
        caller_id_number=_clean(headers.get("Caller-Caller-ID-Number", "")),
        destination=_clean(headers.get("Caller-Destination-Number", "")),
        started_at=_required_time(headers, "variable_start_uepoch"),
        answered_at=_optional_time(headers, "variable_answer_uepoch"),
        ended_at=_required_time(headers, "variable_end_uepoch"),
        duration_s=_count(headers, "variable_duration"),
        billsec=_count(headers, "variable_billsec"),
        hangup_cause=_clean(hangup_cause),
        flow=flow,
        outcome=outcome,
        error=error,
        variables=channel_variables(headers),
    )


def channel_variables(headers: dict[str, str]) -> dict[str, str]:
    """The `variable_*` headers with the prefix stripped, minus any that look like credentials."""
    variables: dict[str, str] = {}
    for key, value in headers.items():
        if not key.startswith(_VARIABLE_PREFIX):
            continue
        name = key[len(_VARIABLE_PREFIX):]
        if not any(word in name.lower() for word in _SECRET_WORDS):
            variables[name] = _clean(value)
    return variables


def _require_aware(*times: datetime | None) -> None:
    # Checked here, where the caller can fix it, not in the writer, where it would stall the queue.
    for time in times:
        if time is not None and time.utcoffset() is None:
            raise ValueError(f"naive datetime {time!r}: records need timezone-aware times")


def _require_json(document: dict[str, Any]) -> None:
    # Same reason: the writer retries a failed batch forever, so an unstorable document must fail here.
    # NaN and Infinity are refused too: json.dumps writes them, but PostgreSQL's JSONB rejects them.
    try:
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"detail is not storable as JSON: {exc}") from None


def _clean(value: str) -> str:
    # PostgreSQL text and JSONB cannot hold NUL, and a %00 in a header must not make a CDR unwritable.
    return value.replace("\x00", "")


def _required(headers: dict[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise ValueError(f"missing header {name}")
    return _clean(value)


def _integer(headers: dict[str, str], name: str) -> int:
    raw = _required(headers, name)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"header {name} is not an integer: {raw[:40]!r}") from None


def _count(headers: dict[str, str], name: str) -> int:
    value = _integer(headers, name)
    if value < 0:
        raise ValueError(f"header {name} is negative: {value}")
    return value


def _required_time(headers: dict[str, str], name: str) -> datetime:
    micros = _integer(headers, name)
    if micros <= 0:
        raise ValueError(f"header {name} is not a time: {micros}")
    return _EPOCH + timedelta(microseconds=micros)


def _optional_time(headers: dict[str, str], name: str) -> datetime | None:
    try:
        micros = int(headers.get(name, ""))
    except ValueError:
        return None
    return _EPOCH + timedelta(microseconds=micros) if micros > 0 else None
