"""Retention: transcripts older than the policy are erased; the numbers managers report on stay.

A purged turn keeps its speaker, times, interruption flag and latencies (so reports over old
periods still work) and loses its words: text and heard text, tool-call arguments and results.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, or_, update
from sqlalchemy.pool import NullPool

from controller.records.models import TurnRow

_AGE = re.compile(r"^(\d+)([dh])$")
PURGED = {"purged": True}


def parse_age(text: str) -> timedelta:
    """'90d' or '12h'; ValueError says what is accepted."""
    match = _AGE.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"an age is a number of days or hours, like 90d or 12h, not {text!r}")
    amount = int(match.group(1))
    return timedelta(days=amount) if match.group(2) == "d" else timedelta(hours=amount)


def purge_transcripts(database_url: str, older_than: timedelta, now: datetime | None = None) -> int:
    """Erase the words of turns that started before now - older_than; returns how many were erased."""
    cutoff = (now or datetime.now(UTC)) - older_than
    table = TurnRow.__table__
    statement = (update(table)
                 .where(table.c.started_at < cutoff)
                 .where(or_(table.c.text != "", table.c.heard_text.is_not(None)))
                 .values(text="", heard_text=None, detail=PURGED))
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            return connection.execute(statement).rowcount
    finally:
        engine.dispose()
