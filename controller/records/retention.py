"""Retention: transcripts and recordings older than the policy are erased; the numbers managers report on stay.

A purged turn keeps its speaker, times, interruption flag and latencies (so reports over old
periods still work) and loses its words: text and heard text, tool-call arguments and results.
DTMF rows keep their time and direction and lose the digit. Recordings lose their file and row.
A call keeps its CDR and loses `state`, what its flow kept about it: that may be personal data too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import JSON, Connection, create_engine, delete, null, or_, select, update
from sqlalchemy.pool import NullPool

from controller.records.dtmf_log import MASKED
from controller.records.models import CallRow, DtmfRow, RecordingRow, ToolCallRow, TurnRow

log = logging.getLogger(__name__)

_AGE = re.compile(r"^(\d+)([dh])$")
PURGED = {"purged": True}


def parse_age(text: str) -> timedelta:
    """'90d' or '12h'; ValueError says what is accepted."""
    match = _AGE.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"an age is a number of days or hours, like 90d or 12h, not {text!r}")
    amount = int(match.group(1))
    return timedelta(days=amount) if match.group(2) == "d" else timedelta(hours=amount)


@dataclass(frozen=True, slots=True)
class Purged:
    """How many rows of each kind lost their content."""

    turns: int
    tool_calls: int
    dtmf: int
    recordings: int
    states: int  # calls whose flow state was erased


def purge(database_url: str, older_than: timedelta, now: datetime | None = None) -> Purged:
    """Erase the words, digits, recordings and flow states of everything before now - older_than."""
    cutoff = (now or datetime.now(UTC)) - older_than
    turns, tools, dtmf, calls = TurnRow.__table__, ToolCallRow.__table__, DtmfRow.__table__, CallRow.__table__
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            return Purged(
                turns=connection.execute(
                    update(turns).where(turns.c.started_at < cutoff)
                    .where(or_(turns.c.text != "", turns.c.heard_text.is_not(None)))
                    .values(text="", heard_text=None, detail=PURGED)).rowcount,
                tool_calls=connection.execute(
                    update(tools).where(tools.c.at < cutoff).where(tools.c.arguments != PURGED)
                    .values(arguments=PURGED, result=None)).rowcount,
                dtmf=connection.execute(
                    update(dtmf).where(dtmf.c.at < cutoff).where(dtmf.c.digit != MASKED)
                    .values(digit=MASKED)).rowcount,
                recordings=_purge_recordings(connection, cutoff),
                states=connection.execute(  # "no state" is stored as the JSON document null: skip those
                    update(calls).where(calls.c.started_at < cutoff).where(calls.c.state.is_not(None))
                    .where(calls.c.state != JSON.NULL).values(state=null())).rowcount,
            )
    finally:
        engine.dispose()


def _purge_recordings(connection: Connection, cutoff: datetime) -> int:
    """Files first, then their rows: a row never points at nothing because of us, a file never outlives the policy."""
    table = RecordingRow.__table__
    old = connection.execute(select(table.c.id, table.c.path).where(table.c.started_at < cutoff)).all()
    for _, path in old:
        try:
            Path(path).unlink(missing_ok=True)
        except OSError as exc:  # kept in the table, so the next purge tries again
            log.error("could not remove recording %s: %s", path, exc)
            old = [row for row in old if row.path != path]
    if old:
        connection.execute(delete(table).where(table.c.id.in_([row.id for row in old])))
    return len(old)
