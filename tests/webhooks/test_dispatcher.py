"""WebhookDispatcher against real aiohttp receivers on localhost: signing, retries, isolation, backlog, shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from dataclasses import replace

import pytest

from controller.config import Secret
from controller.records.cdr import WebhookDeliveryRecord
from controller.webhooks import (
    RetryPolicy, WebhookDispatcher, WebhookEndpoint, call_answered, call_ended, call_started, verify,
)

from .conftest import SECRET, URL_TOKEN, call_info, cdr, until

FAST = RetryPolicy(max_attempts=3, first_delay_s=0.01, max_delay_s=0.02, timeout_s=2.0)


@pytest.fixture(autouse=True)
def webhook_logs(caplog):
    caplog.set_level(logging.INFO, logger="controller.webhooks")
    yield caplog
    assert SECRET not in caplog.text and URL_TOKEN not in caplog.text


def endpoint(url: str, **changes) -> WebhookEndpoint:
    return replace(WebhookEndpoint(url, Secret(SECRET)), **changes)


def start(*endpoints: WebhookEndpoint, rows: list, policy: RetryPolicy = FAST, **options) -> WebhookDispatcher:
    dispatcher = WebhookDispatcher(endpoints, rows.append, policy=policy, rng=random.Random(7), **options)
    dispatcher.start()
    return dispatcher


def started(n: int = 0):
    return call_started(call_info(f"call-{n}"))


def refused_url() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook?token={URL_TOKEN}"


def finals(rows: list[WebhookDeliveryRecord]) -> dict[str, WebhookDeliveryRecord]:
    """The row that ended each delivery (a later submission of the same attempt replaces the earlier)."""
    last = {(r.delivery_id, r.attempt): r for r in rows}
    ended = [r for r in last.values() if r.final]
    assert len(ended) == len({r.delivery_id for r in ended}), "a delivery ended twice"
    return {r.delivery_id: r for r in ended}


async def test_a_delivery_is_signed_and_checks_out_with_the_docs_helper(make_receiver, docs_verify, webhook_logs):
    receiver = await make_receiver()
    rows: list[WebhookDeliveryRecord] = []
    dispatcher = start(endpoint(receiver.url), rows=rows)
    event = dispatcher.publish("call.started", started(1))
    await until(lambda: rows)
    (request,) = receiver.requests
    headers = request.headers
    assert headers["Content-Type"] == "application/json" and headers["User-Agent"] == "voxgate-webhooks/1"
    assert headers["Voxgate-Event"] == "call.started" and headers["Voxgate-Delivery"].startswith("dlv_")
    assert docs_verify(SECRET, headers["Voxgate-Signature"], request.body)
    assert verify(SECRET, headers["Voxgate-Signature"], request.body)
    assert not docs_verify("whsec-another-one-0000", headers["Voxgate-Signature"], request.body)
    body = json.loads(request.body)
    assert body["id"] == event.id and body["type"] == "call.started" and body["data"]["call_uuid"] == "call-1"

    (row,) = rows
    port = receiver.url.split(":")[2].split("/")[0]
    assert (row.delivery_id, row.attempt, row.event_id, row.event_type) == (
        headers["Voxgate-Delivery"], 1, event.id, "call.started")
    assert (row.endpoint, row.status_code, row.error, row.final) == (f"127.0.0.1:{port}", 204, None, True)
    assert (row.pbx, row.call_uuid) == ("freeswitch", "call-1") and row.duration_ms > 0
    assert row.at.utcoffset() is not None
    line = next(r.getMessage() for r in webhook_logs.records if event.id in r.getMessage())
    assert f"to 127.0.0.1:{port}: delivery {row.delivery_id} attempt 1: HTTP 204 in " in line
    assert dispatcher.stats.delivered == 1 and dispatcher.stats.attempts == 1
    await dispatcher.stop()


async def test_each_endpoint_gets_the_types_it_wants_and_the_same_event(make_receiver):
    every, ends_only = await make_receiver(), await make_receiver()
    rows: list[WebhookDeliveryRecord] = []
    dispatcher = start(endpoint(every.url), endpoint(ends_only.url, events=frozenset({"call.answered"})), rows=rows)
    first = dispatcher.publish("call.started", started(1))
    info = call_info("call-1")
    second = dispatcher.publish("call.answered", call_answered(info, info.started_at))
    await until(lambda: len(rows) == 3)
    assert {json.loads(r.body)["id"] for r in every.requests} == {first.id, second.id}  # in no promised order
    (only,) = ends_only.requests
    assert json.loads(only.body)["id"] == second.id  # the same event id on every endpoint...
    deliveries = {r.headers["Voxgate-Delivery"] for r in every.requests + ends_only.requests}
    assert len(deliveries) == 3  # ...each its own delivery
    assert dispatcher.stats.published == 2
    await dispatcher.stop()


async def test_server_errors_are_retried_with_the_same_delivery_until_delivered(make_receiver, webhook_logs):
    receiver = await make_receiver()
    receiver.replies.extend([(500, {}, "database down"), (502, {}, "")])
    rows: list[WebhookDeliveryRecord] = []
    dispatcher = start(endpoint(receiver.url), rows=rows)
    dispatcher.publish("call.started", started())
    await until(lambda: any(r.final for r in rows))
    assert [(r.attempt, r.status_code, r.error, r.final) for r in rows] == [
        (1, 500, "HTTP 500: database down", False), (2, 502, "HTTP 502", False), (3, 204, None, True)]
    assert len({r.headers["Voxgate-Delivery"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    for request in receiver.requests:  # each attempt signed afresh
        assert verify(SECRET, request.headers["Voxgate-Signature"], request.body)
    assert "attempt 1: HTTP 500: database down in " in webhook_logs.text and "; retry in 0.0 s" in webhook_logs.text
    assert dispatcher.stats.delivered == 1 and dispatcher.stats.attempts == 3 and dispatcher.stats.failed == 0
    await dispatcher.stop()


async def test_429_waits_as_long_as_retry_after_says(make_receiver):
    receiver = await make_receiver()
    receiver.replies.append((429, {"Retry-After": "1"}, "slow down"))
    rows: list[WebhookDeliveryRecord] = []
    dispatcher = start(endpoint(receiver.url), rows=rows)
    dispatcher.publish("call.started", started())
    await until(lambda: len(receiver.requests) == 2)
    first, second = receiver.requests
    assert second.at - first.at >= 0.95  # the policy alone would have waited 10-20 ms
    assert [(r.status_code, r.final) for r in rows] == [(429, False), (204, True)]
    await dispatcher.stop()


@pytest.mark.parametrize("status, text", [(400, "invalid signature"), (401, ""), (404, "no such hook"),
                                          (307, "")])
async def test_other_client_errors_and_redirects_are_not_retried(make_receiver, status, text):
    receiver, elsewhere = await make_receiver(), await make_receiver()
    receiver.replies.append((status, {"Location": elsewhere.url}, text))
    rows: list[WebhookDeliveryRecord] = []
    dispatcher = start(endpoint(receiver.url), rows=rows)
    dispatcher.publish("call.started", started())
    await until(lambda: rows)
    await asyncio.sleep(0.2)  # a retry would have come by now
    assert len(receiver.requests) == 1 and elsewhere.requests == []
    (row,) = rows
    assert (row.status_code, row.final) == (status, True)
    assert row.error == (f"HTTP {status}: {text}" if text else f"HTTP {status}")
    assert dispatcher.stats.failed == 1 and dispatcher.stats.delivered == 0
    await dispatcher.stop()


async def test_retries_stop_at_max_attempts(make_receiver, webhook_logs):
    receiver = await make_receiver()
    receiver.default = (503, {}, "maintenance")
    rows: list[WebhookDeliveryRecord] = []
    dispatcher = start(endpoint(receiver.url), rows=rows)
    dispatcher.publish("call.started", started())
    await until(lambda: any(r.final for r in rows))
    await asyncio.sleep(0.2)
    assert len(receiver.requests) == FAST.max_attempts == 3
    assert [(r.attempt, r.final) for r in rows] == [(1, False), (2, False), (3, True)]
    assert "attempt 3: HTTP 503: maintenance in " in webhook_logs.text and "; giving up" in webhook_logs.text
    assert dispatcher.stats.failed == 1
    await dispatcher.stop()


async def test_refused_connections_and_timeouts_are_retried_and_named(make_receiver):
    silent = await make_receiver(held=True)
    rows: list[WebhookDeliveryRecord] = []
    policy = replace(FAST, max_attempts=2, timeout_s=0.3)
    dispatcher = start(endpoint(refused_url(), name="refused"), endpoint(silent.url, name="silent"), rows=rows,
                       policy=policy)
    dispatcher.publish("call.started", started())
    await until(lambda: len(finals(rows)) == 2)
    by_endpoint = {name: [r for r in rows if r.endpoint == name] for name in ("refused", "silent")}
    for name, tries in by_endpoint.items():
        assert [(r.attempt, r.status_code, r.final) for r in tries] == [(1, None, False), (2, None, True)], name
    assert all(r.error.startswith("ClientConnectorError: Cannot connect to host 127.0.0.1:")
               for r in by_endpoint["refused"])
    assert all(r.error == "no answer within 0.3 s" for r in by_endpoint["silent"])
    assert all(290 <= r.duration_ms < 2000 for r in by_endpoint["silent"])
    assert not any(URL_TOKEN in (r.error or "") for r in rows)
    await dispatcher.stop()


async def test_a_dead_endpoint_does_not_delay_a_live_one(make_receiver):
    stuck, live = await make_receiver(held=True), await make_receiver()
    rows: list[WebhookDeliveryRecord] = []
    policy = replace(FAST, timeout_s=30.0)
    dispatcher = start(endpoint(stuck.url, name="stuck"), endpoint(refused_url(), name="refused"),
                       endpoint(live.url, name="live"), rows=rows, policy=policy)
    loop = asyncio.get_running_loop()
    began = loop.time()
    for n in range(20):
        dispatcher.publish("call.started", started(n))
    await until(lambda: len(live.requests) == 20)
    assert loop.time() - began < 3.0  # 20 local requests; the stuck endpoint would hold them for 30 s
    await until(lambda: stuck.arrived == 4)  # its own 4 connection slots, all waiting for an answer
    assert stuck.requests == []

    began = loop.time()
    await dispatcher.stop(drain_s=0.3)
    assert loop.time() - began < 2.0
    ended = finals(rows)
    assert len(ended) == 60  # every delivery to every endpoint ended with exactly one final row
    stuck_rows = [r for r in ended.values() if r.endpoint == "stuck"]
    assert sorted(r.error for r in stuck_rows) == (
        ["cancelled before an answer: voxgate stopped"] * 4 + ["not delivered: voxgate stopped"] * 16)
    assert sorted(r.attempt for r in stuck_rows) == [0] * 16 + [1] * 4
    assert all(r.status_code == 204 for r in ended.values() if r.endpoint == "live")
    assert dispatcher.stats.abandoned == 20 and dispatcher.stats.delivered == 20 and dispatcher.stats.failed == 20
    assert dispatcher.pending == 0


async def test_a_full_backlog_drops_the_oldest_waiting_delivery_and_counts_it(make_receiver, webhook_logs):
    slow = await make_receiver(held=True)
    rows: list[WebhookDeliveryRecord] = []
    dispatcher = start(endpoint(slow.url), rows=rows, backlog=3, concurrency=1)
    events = [dispatcher.publish("call.started", started(n)) for n in range(10)]
    assert dispatcher.stats.dropped == 7 and dispatcher.pending == 3
    dropped = [r for r in rows if r.attempt == 0]
    assert [r.event_id for r in dropped] == [e.id for e in events[:7]]
    assert all(r.error == "not delivered: dropped: backlog full" and r.final for r in dropped)
    drop_lines = [r.getMessage() for r in webhook_logs.records if "is full" in r.getMessage()]
    assert len(drop_lines) == 1  # the first drop; the rest are counted, not each logged
    assert "is full (3 deliveries): dropped the oldest, 1 since the last such line, 1 in all" in drop_lines[0]

    await until(lambda: slow.arrived == 1)  # event 7 is now in flight: it is never the one dropped
    events.append(dispatcher.publish("call.started", started(10)))
    assert dispatcher.stats.dropped == 8
    assert rows[-1].event_id == events[8].id and rows[-1].attempt == 0
    slow.hold.set()
    await until(lambda: len(slow.requests) == 3)
    assert sorted(json.loads(r.body)["id"] for r in slow.requests) == sorted(e.id for e in (events[7], events[9],
                                                                                             events[10]))
    await dispatcher.stop()
    assert "7 more deliveries were dropped since the last such line" in webhook_logs.text


async def test_stop_delivers_what_it_can_and_gives_up_retries_due_after_the_deadline(make_receiver):
    live, busy = await make_receiver(), await make_receiver()
    busy.replies.append((429, {"Retry-After": "60"}, "later"))
    rows: list[WebhookDeliveryRecord] = []
    dispatcher = start(endpoint(live.url, name="live"), endpoint(busy.url, name="busy"), rows=rows)
    dispatcher.publish("call.started", started(1))
    await until(lambda: any(r.endpoint == "busy" for r in rows))  # busy now waits 60 s for its retry
    for n in range(2, 7):
        dispatcher.publish("call.started", started(n))

    loop = asyncio.get_running_loop()
    began = loop.time()
    await dispatcher.stop(drain_s=3.0)
    assert loop.time() - began < 2.0  # nothing left worth waiting for once live has answered
    assert len(live.requests) == 6
    ended = finals(rows)
    busy_rows = [r for r in ended.values() if r.endpoint == "busy"]
    retried = next(r for r in busy_rows if r.attempt == 1)
    assert (retried.status_code, retried.error) == (429, "HTTP 429: later; not retried: voxgate stopped")
    assert dispatcher.stats.delivered == 6 + 5 and dispatcher.stats.abandoned == 1

    assert dispatcher.publish("call.started", started(9)) is None  # after stop: refused, never raised
    assert dispatcher.stats.refused == 1


async def test_publish_never_raises(make_receiver, webhook_logs):
    receiver = await make_receiver()
    rows: list[WebhookDeliveryRecord] = []
    dispatcher = WebhookDispatcher([endpoint(receiver.url)], rows.append, policy=FAST)
    assert dispatcher.publish("call.started", started()) is None  # not started
    assert "not published: the dispatcher is not started" in webhook_logs.text
    dispatcher.start()
    assert dispatcher.publish("call.exploded", started()) is None
    assert dispatcher.publish("call.ended", started()) is None
    assert dispatcher.publish("call.ended", call_ended(cdr(state={"x": float("inf")}))) is None
    assert dispatcher.stats.refused == 4 and rows == [] and receiver.requests == []
    assert "not storable as JSON" in webhook_logs.text
    await dispatcher.stop()


async def test_a_record_writer_that_refuses_rows_does_not_stop_deliveries(make_receiver, webhook_logs):
    receiver = await make_receiver()

    def full(record: WebhookDeliveryRecord) -> None:
        raise RuntimeError("RecordWriter is closed")

    dispatcher = WebhookDispatcher([endpoint(receiver.url)], full, policy=FAST)
    dispatcher.start()
    receiver.replies.append((500, {}, ""))
    dispatcher.publish("call.started", started())
    await until(lambda: len(receiver.requests) == 2)
    await dispatcher.stop()
    assert dispatcher.stats.rows_refused == 2 and dispatcher.stats.delivered == 1
    assert "row not stored: RecordWriter is closed" in webhook_logs.text


def test_backlog_must_exceed_concurrency():
    with pytest.raises(ValueError, match="backlog"):
        WebhookDispatcher([], print, backlog=4, concurrency=4)
