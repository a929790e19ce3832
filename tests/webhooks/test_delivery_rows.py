"""Delivery rows through a real, journalled RecordWriter into SQLite and PostgreSQL."""

from __future__ import annotations

import random
from dataclasses import asdict

from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from controller.config import Secret
from controller.records.journal import decode, encode
from controller.records.models import WebhookDeliveryRow
from controller.records.store import RecordWriter
from controller.webhooks import RetryPolicy, WebhookDispatcher, WebhookEndpoint, call_ended

from .conftest import SECRET, cdr, until


def stored_rows(url: str) -> list[dict]:
    table = WebhookDeliveryRow.__table__
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            query = select(table).order_by(table.c.endpoint, table.c.attempt)
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


async def test_every_attempt_is_a_row_and_a_give_up_makes_the_last_one_final(database_url, tmp_path, make_receiver):
    flaky, busy = await make_receiver(), await make_receiver()
    flaky.replies.append((500, {}, "try again\x00later"))  # a NUL from the network must not make the row unstorable
    busy.replies.append((429, {"Retry-After": "120"}, "later"))
    writer = RecordWriter(database_url, journal_dir=tmp_path / "journal", batch_window_s=0.01)
    writer.start()
    policy = RetryPolicy(max_attempts=3, first_delay_s=0.01, max_delay_s=0.02, timeout_s=2.0)
    dispatcher = WebhookDispatcher([WebhookEndpoint(flaky.url, Secret(SECRET), name="flaky"),
                                    WebhookEndpoint(busy.url, Secret(SECRET), name="busy")],
                                   writer.submit, policy=policy, rng=random.Random(1))
    dispatcher.start()
    event = dispatcher.publish("call.ended", call_ended(cdr(call_uuid="call-77")))
    await until(lambda: len(flaky.requests) == 2 and len(busy.requests) == 1)
    await dispatcher.stop(drain_s=0.5)  # busy's retry is due in 120 s: given up, its attempt made final
    await writer.flush()

    rows = stored_rows(database_url)
    assert [(r["endpoint"], r["attempt"], r["status_code"], r["error"], r["final"]) for r in rows] == [
        ("busy", 1, 429, "HTTP 429: later; not retried: voxgate stopped", True),
        ("flaky", 1, 500, "HTTP 500: try again later", False),
        ("flaky", 2, 204, None, True),
    ]
    assert {(r["event_id"], r["event_type"], r["pbx"], r["call_uuid"]) for r in rows} == {
        (event.id, "call.ended", "freeswitch", "call-77")}
    assert rows[1]["delivery_id"] == rows[2]["delivery_id"] == flaky.requests[0].headers["Voxgate-Delivery"]
    assert rows[1]["at"] < rows[2]["at"] and rows[1]["at"].utcoffset() is not None
    assert all(r["duration_ms"] > 0 for r in rows)
    assert writer.written["webhook_deliveries"] == 4  # busy's row twice: the give-up replaced it
    await writer.close()


def test_delivery_records_survive_the_journal():
    from datetime import UTC, datetime

    from controller.records.cdr import WebhookDeliveryRecord

    record = WebhookDeliveryRecord("dlv_1", 2, "evt_1", "turn.completed", "crm.example.com",
                                   datetime(2026, 11, 25, 9, 30, 1, 250000, tzinfo=UTC), None,
                                   "no answer within 10 s", 10000.4, False, "asterisk", "c-9")
    again = decode(encode(record))
    assert again == record and asdict(again) == asdict(record)
