"""The record tables: one row per call (the CDR), per call event, per conversation turn, per DTMF digit,
per tool call, per transfer and per recording, and one per try of an outbound call or of a webhook delivery.

The same models serve SQLite (a single box) and PostgreSQL (a fleet). Rows are keyed by
the natural key (pbx, call_uuid) so that writes are idempotent upserts and events can
arrive before their call's CDR; there is deliberately no foreign key between the tables.
Strings carry no length limit: a long caller name from the network must never make a
batch unwritable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Fixed constraint names, so that migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (indexable, compact); plain JSON text on SQLite.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
RowId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; SQLite keeps no zone, so values are stored as UTC and read back aware.

    Naive datetimes are refused: a CDR time without a zone is a bug waiting to happen.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: records need timezone-aware times")
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CallRow(Base):
    """One finished call, as the PBX reported it at hangup plus what the flow made of it."""

    __tablename__ = "calls"
    __table_args__ = (
        UniqueConstraint("pbx", "call_uuid"),
        Index(None, "started_at"),
        Index(None, "flow", "started_at"),
        Index(None, "hangup_cause"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    pbx: Mapped[str] = mapped_column(String())
    call_uuid: Mapped[str] = mapped_column(String())
    direction: Mapped[str] = mapped_column(String())
    caller_id_name: Mapped[str] = mapped_column(String())
    caller_id_number: Mapped[str] = mapped_column(String())
    destination: Mapped[str] = mapped_column(String())
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime())
    duration_s: Mapped[int] = mapped_column(Integer)
    billsec: Mapped[int] = mapped_column(Integer)
    hangup_cause: Mapped[str] = mapped_column(String())
    flow: Mapped[str] = mapped_column(String())
    outcome: Mapped[str] = mapped_column(String())
    error: Mapped[str | None] = mapped_column(Text)
    variables: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    state: Mapped[dict[str, Any] | None] = mapped_column(JsonDocument)  # what the flow kept (call.state)
    instance: Mapped[str | None] = mapped_column(String())  # the voxgate instance that handled it (instance_id)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), server_default=func.now())


class CallEventRow(Base):
    """One thing that happened during a call, in the order the call saw it (seq)."""

    __tablename__ = "call_events"
    # The unique index also serves look-ups of one call's events: no separate (pbx, call_uuid) index.
    __table_args__ = (UniqueConstraint("pbx", "call_uuid", "seq"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    pbx: Mapped[str] = mapped_column(String())
    call_uuid: Mapped[str] = mapped_column(String())
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    type: Mapped[str] = mapped_column(String())
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDocument)


class TurnRow(Base):
    """One turn of a voice-agent conversation: what was said, what the caller heard, and how fast."""

    __tablename__ = "turns"
    # The unique index serves (pbx, call_uuid) look-ups; the CLI and reports only know the call's uuid.
    __table_args__ = (
        UniqueConstraint("pbx", "call_uuid", "seq"),
        Index(None, "call_uuid"),
        Index(None, "started_at"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    pbx: Mapped[str] = mapped_column(String())
    call_uuid: Mapped[str] = mapped_column(String())
    seq: Mapped[int] = mapped_column(Integer)
    speaker: Mapped[str] = mapped_column(String())
    text: Mapped[str] = mapped_column(Text)
    heard_text: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime())
    confidence: Mapped[float | None] = mapped_column(Float)
    interrupted: Mapped[bool] = mapped_column(Boolean)
    stt_ms: Mapped[float | None] = mapped_column(Float)
    llm_first_token_ms: Mapped[float | None] = mapped_column(Float)
    tts_first_audio_ms: Mapped[float | None] = mapped_column(Float)
    voice_to_voice_ms: Mapped[float | None] = mapped_column(Float)
    barge_in_ms: Mapped[float | None] = mapped_column(Float)
    engines: Mapped[dict[str, str]] = mapped_column(JsonDocument)
    detail: Mapped[dict[str, Any]] = mapped_column(JsonDocument)


class DtmfRow(Base):
    """One DTMF digit, pressed by the caller or sent by voxgate; runs long enough to be private are masked."""

    __tablename__ = "dtmf"
    __table_args__ = (UniqueConstraint("pbx", "call_uuid", "seq"), Index(None, "call_uuid"))

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    pbx: Mapped[str] = mapped_column(String())
    call_uuid: Mapped[str] = mapped_column(String())
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    digit: Mapped[str] = mapped_column(String())
    direction: Mapped[str] = mapped_column(String())
    duration_ms: Mapped[int] = mapped_column(Integer)


class ToolCallRow(Base):
    """One tool call the agent made, within the agent turn (turn_seq) that made it."""

    __tablename__ = "tool_calls"
    __table_args__ = (
        UniqueConstraint("pbx", "call_uuid", "turn_seq", "position"),
        Index(None, "call_uuid"),
        Index(None, "name", "at"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    pbx: Mapped[str] = mapped_column(String())
    call_uuid: Mapped[str] = mapped_column(String())
    turn_seq: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    name: Mapped[str] = mapped_column(String())
    arguments: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)


class TransferRow(Base):
    """One transfer voxgate asked the PBX for."""

    __tablename__ = "transfers"
    __table_args__ = (UniqueConstraint("pbx", "call_uuid", "seq"), Index(None, "call_uuid"), Index(None, "at"))

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    pbx: Mapped[str] = mapped_column(String())
    call_uuid: Mapped[str] = mapped_column(String())
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    destination: Mapped[str] = mapped_column(String())
    kind: Mapped[str] = mapped_column(String())
    reason: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String())
    error: Mapped[str | None] = mapped_column(Text)


class RecordingRow(Base):
    """One encrypted call recording: where the file is and what it takes to read it (the key id)."""

    __tablename__ = "recordings"
    __table_args__ = (UniqueConstraint("pbx", "call_uuid", "seq"), Index(None, "call_uuid"),
                      Index(None, "started_at"))

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    pbx: Mapped[str] = mapped_column(String())
    call_uuid: Mapped[str] = mapped_column(String())
    seq: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    duration_s: Mapped[float] = mapped_column(Float)
    channels: Mapped[int] = mapped_column(Integer)
    sample_rate: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String())
    key_id: Mapped[str] = mapped_column(String())
    complete: Mapped[bool] = mapped_column(Boolean)


class CallAttemptRow(Base):
    """One try of an outbound call: which trunk, when, and what the network said (busy, no answer...)."""

    __tablename__ = "call_attempts"
    __table_args__ = (UniqueConstraint("request_id", "attempt"), Index(None, "started_at"), Index(None, "call_uuid"))

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    request_id: Mapped[str] = mapped_column(String())
    attempt: Mapped[int] = mapped_column(Integer)
    pbx: Mapped[str] = mapped_column(String())
    number: Mapped[str] = mapped_column(String())
    trunk: Mapped[str] = mapped_column(String())
    flow: Mapped[str] = mapped_column(String())
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime] = mapped_column(UtcDateTime())
    outcome: Mapped[str] = mapped_column(String())
    cause: Mapped[str] = mapped_column(String())
    call_uuid: Mapped[str | None] = mapped_column(String())  # the answered attempt's call


class WebhookDeliveryRow(Base):
    """One try to deliver a webhook event to one endpoint; the row with `final` set says how it ended."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt"), Index(None, "at"), Index(None, "event_id"),
                      Index(None, "call_uuid"))

    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String())
    attempt: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String())
    event_type: Mapped[str] = mapped_column(String())
    endpoint: Mapped[str] = mapped_column(String())
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)
    final: Mapped[bool] = mapped_column(Boolean)
    pbx: Mapped[str | None] = mapped_column(String())
    call_uuid: Mapped[str | None] = mapped_column(String())
