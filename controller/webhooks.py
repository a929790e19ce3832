"""Webhooks: call and conversation events POSTed to the operator's endpoints, signed, retried and logged.

The first half is sans-I/O: the event payloads (a public schema of their own, so that the internal
records can change without breaking receivers), the JSON body, the `Voxgate-Signature` header
(HMAC-SHA256 over `"<unix time>." + body`, the scheme Stripe uses), `verify()` for receivers,
the endpoint settings and the retry policy. The second half is `WebhookDispatcher`, the thin
asyncio/aiohttp layer that delivers them: `publish()` never waits and never raises, each endpoint
has its own bounded backlog and its own connection slots, and every attempt is one log line and
one `webhook_deliveries` row. docs/webhooks.md is the receiver's side of this module.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from controller.call import CallInfo
from controller.setting_tables import TableListError, parse_table_list
from controller.records.cdr import CallRecord, TransferRecord, TurnRecord, WebhookDeliveryRecord

if TYPE_CHECKING:
    from controller.config import Secret

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Voxgate-Signature"
EVENT_HEADER = "Voxgate-Event"
DELIVERY_HEADER = "Voxgate-Delivery"
USER_AGENT = "voxgate-webhooks/1"
SIGNATURE_TOLERANCE_S = 300
MIN_SECRET_CHARS = 16
ERROR_BODY_BYTES = 200  # of a refusal's body kept in the row: enough for "invalid signature", not a page
DROP_LOG_INTERVAL_S = 1.0


# ---------------------------------------------------------------- payloads


@dataclass(frozen=True, slots=True)
class CallStarted:
    """call.started: a call reached voxgate and its flow was chosen."""

    pbx: str
    call_uuid: str
    direction: str
    caller_id_name: str
    caller_id_number: str
    destination: str
    flow: str
    started_at: datetime
    session: int  # 0; 1 and up when another instance took the live call over (the flow starts again)


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """call.answered: the PBX answered the call."""

    pbx: str
    call_uuid: str
    flow: str
    answered_at: datetime


@dataclass(frozen=True, slots=True)
class CallEnded:
    """call.ended: the full CDR, as stored in the `calls` table."""

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
    state: dict[str, Any] | None
    instance: str | None


@dataclass(frozen=True, slots=True)
class TurnCompleted:
    """turn.completed: one conversation turn, with its text as stored (redacted unless store_raw_text)."""

    pbx: str
    call_uuid: str
    seq: int
    speaker: str
    text: str
    heard_text: str | None
    started_at: datetime
    ended_at: datetime
    confidence: float | None
    interrupted: bool
    stt_ms: float | None
    llm_first_token_ms: float | None
    tts_first_audio_ms: float | None
    voice_to_voice_ms: float | None
    barge_in_ms: float | None
    engines: dict[str, str]
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallTransferred:
    """call.transferred: voxgate asked the PBX for a transfer; `outcome` says whether the PBX took it."""

    pbx: str
    call_uuid: str
    seq: int
    at: datetime
    destination: str
    kind: str
    reason: str
    outcome: str
    error: str | None


Payload = CallStarted | CallAnswered | CallEnded | TurnCompleted | CallTransferred
EVENT_TYPES: dict[str, type[Payload]] = {
    "call.started": CallStarted,
    "call.answered": CallAnswered,
    "call.ended": CallEnded,
    "turn.completed": TurnCompleted,
    "call.transferred": CallTransferred,
}


def call_started(info: CallInfo, at: datetime | None = None) -> CallStarted:
    """From a call just adopted (its flow chosen); `at` when the PBX gave no start time."""
    return CallStarted(info.pbx, info.uuid, info.direction, info.caller_id_name, info.caller_id_number,
                       info.destination, info.flow, info.started_at or at or datetime.now(UTC), info.session)


def call_answered(info: CallInfo, at: datetime) -> CallAnswered:
    """From the call's `Answered` event (its `at`)."""
    return CallAnswered(info.pbx, info.uuid, info.flow, at)


def call_ended(record: CallRecord) -> CallEnded:
    return CallEnded(**_same_fields(CallEnded, record))


def turn_completed(turn: TurnRecord) -> TurnCompleted:
    """From the turn as it is stored (pass the redacted one)."""
    return TurnCompleted(**_same_fields(TurnCompleted, turn))


def call_transferred(record: TransferRecord) -> CallTransferred:
    return CallTransferred(**_same_fields(CallTransferred, record))


def _same_fields(payload: type[Payload], record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(payload)}


# ---------------------------------------------------------------- events and their bodies


@dataclass(frozen=True, slots=True)
class Event:
    """One thing to tell the endpoints about; `id` is what receivers de-duplicate on."""

    id: str
    type: str
    created_at: datetime
    data: Payload


def new_event(event_type: str, data: Payload, now: datetime | None = None) -> Event:
    """Raises ValueError for an unknown type, TypeError for data of the wrong payload class."""
    expected = EVENT_TYPES.get(event_type)
    if expected is None:
        raise ValueError(f"unknown webhook event type {event_type!r} (known: {', '.join(EVENT_TYPES)})")
    if type(data) is not expected:
        raise TypeError(f"{event_type} carries a {expected.__name__}, got {type(data).__name__}")
    return Event(_new_id("evt"), event_type, now or datetime.now(UTC), data)


def encode_event(event: Event) -> bytes:
    """The request body: {"id", "type", "created_at", "data"}, UTF-8 JSON, times ISO 8601 in UTC (microseconds).

    Raises ValueError when the data cannot be JSON (a flow's state with NaN, say).
    """
    envelope = {"id": event.id, "type": event.type, "created_at": event.created_at, "data": asdict(event.data)}
    try:
        text = json.dumps(envelope, default=_json_value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{event.type} {event.id} is not storable as JSON: {exc}") from None
    return text.encode()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")  # one fixed shape for parsers
    raise TypeError(f"{type(value).__name__} is not JSON")


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# ---------------------------------------------------------------- signatures


class SignatureError(ValueError):
    """A request does not carry a valid, recent voxgate signature; the message says which part failed."""


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>." + body` under `secret`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secrets: Sequence[str | bytes], timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex>[,v1=<hex>...]`: one v1 per secret, so receivers can rotate at their own pace."""
    return ",".join([f"t={timestamp}", *(f"v1={sign(secret, timestamp, body)}" for secret in secrets)])


def delivery_headers(event: Event, delivery_id: str, secrets: Sequence[str | bytes], body: bytes,
                     timestamp: int) -> dict[str, str]:
    """The headers of one attempt, signed at `timestamp` (each retry is signed afresh)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event.type,
        DELIVERY_HEADER: delivery_id,
        SIGNATURE_HEADER: signature_header(secrets, timestamp, body),
    }


def verify(secret: str | bytes, header: str, body: bytes | str, tolerance_s: float = SIGNATURE_TOLERANCE_S,
           *, now: float | None = None) -> int:
    """Check a `Voxgate-Signature` header against the raw body; returns its timestamp.

    Raises SignatureError when the header is malformed, its timestamp is more than `tolerance_s`
    from `now` (a replay, or a clock far off), or no v1 value matches (tampered body, wrong secret).
    Any one of several v1 values may match: voxgate signs with the old and the new secret while
    a secret is being rotated. Comparisons take constant time.
    """
    timestamp, signatures = _parse_signature(header)
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance_s:
        raise SignatureError(f"timestamp {timestamp} is {abs(age):.0f} s {'old' if age > 0 else 'ahead'}, "
                             f"more than the {tolerance_s:g} s allowed")
    data = body.encode() if isinstance(body, str) else body
    expected = sign(secret, timestamp, data).encode()
    if not any(hmac.compare_digest(expected, given.encode()) for given in signatures):
        raise SignatureError("no v1 signature matches the body under this secret")
    return timestamp


def _parse_signature(header: str) -> tuple[int, list[str]]:
    timestamps, signatures = [], []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not (timestamps[0].isascii() and timestamps[0].isdigit()):
        raise SignatureError(f"{SIGNATURE_HEADER} needs exactly one t=<unix seconds>")
    if not signatures:
        raise SignatureError(f"{SIGNATURE_HEADER} has no v1 signature")
    return int(timestamps[0]), signatures


# ---------------------------------------------------------------- endpoints (settings)

ENDPOINT_KEYS = ("url", "secret", "previous_secret", "events", "name")


class WebhookConfigError(TableListError):
    """The webhook endpoints are unusable; one problem per line, each naming its endpoint."""


@dataclass(frozen=True, slots=True, repr=False)
class WebhookEndpoint:
    """Where events go and how they are signed. `previous_secret`, while set, signs as well (rotation).

    Its repr shows the name and events only: URLs may carry tokens in their query or path.
    """

    url: str
    secret: Secret
    events: frozenset[str] = frozenset(EVENT_TYPES)
    previous_secret: Secret | None = None
    name: str = ""  # what logs and rows call it; "" = the URL's host[:port]

    def __post_init__(self) -> None:
        problems = _url_problems(self.url)
        for what, secret in (("secret", self.secret), ("previous_secret", self.previous_secret)):
            if secret is not None and len(secret.reveal()) < MIN_SECRET_CHARS:
                problems.append(f"{what} must be at least {MIN_SECRET_CHARS} characters; generate one with "
                                "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        unknown = sorted(set(self.events) - set(EVENT_TYPES))
        if unknown:
            problems.append(f"unknown event type(s) {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(EVENT_TYPES)})")
        if not self.events:
            problems.append("events is empty: leave it out to receive every event type")
        if problems:
            raise ValueError("\n".join(problems))

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
        return f"{host}:{parts.port}" if parts.port else host

    def wants(self, event_type: str) -> bool:
        return event_type in self.events

    def signing_secrets(self) -> tuple[str, ...]:
        """The secrets a delivery is signed with, current first."""
        return tuple(s.reveal() for s in (self.secret, self.previous_secret) if s is not None)

    def __repr__(self) -> str:
        events = "all" if self.events == frozenset(EVENT_TYPES) else ",".join(sorted(self.events))
        return f"WebhookEndpoint({self.label!r}, events={events})"


def parse_endpoints(value: Any) -> tuple[WebhookEndpoint, ...]:
    """Endpoints from TOML ([[voxgate.webhooks]] tables), JSON text (an array of objects) or endpoints.

    Raises WebhookConfigError listing every problem; secrets never appear in the messages.
    """
    return parse_table_list(value, item=WebhookEndpoint, name="webhook",
                            example='[{"url": "https://...", "secret": "...", "events": ["call.ended"]}]',
                            parse=_endpoint, error=WebhookConfigError)


def _endpoint(entry: Any) -> WebhookEndpoint:
    from controller.config import Secret  # config imports this module for its settings

    if not isinstance(entry, dict):
        why = f"must be a table with url, secret and optionally events, got {type(entry).__name__}"
        raise ValueError(why)  # noqa: TRY004 (parse_endpoints reports every ValueError as a problem)
    problems = [f"unknown key {key!r}{_did_you_mean(key)} (an endpoint has {', '.join(ENDPOINT_KEYS)})"
                for key in entry if key not in ENDPOINT_KEYS]
    shape = [f"needs a {key} (a string)" for key in ("url", "secret") if not isinstance(entry.get(key), str)]
    shape += [f"{key} must be a non-empty string" for key in ("previous_secret", "name")
              if key in entry and not (isinstance(entry[key], str) and entry[key].strip())]
    events = entry.get("events", list(EVENT_TYPES))
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        shape.append(f"events must be a list of event types, like [\"call.ended\"] (known: {', '.join(EVENT_TYPES)})")
    endpoint = None
    if not shape:  # the values' own checks too, so that one pass reports every problem
        previous = entry.get("previous_secret")
        try:
            endpoint = WebhookEndpoint(entry["url"].strip(), Secret(entry["secret"]), frozenset(events),
                                       Secret(previous) if previous is not None else None,
                                       entry.get("name", "").strip())
        except ValueError as exc:
            problems += str(exc).splitlines()
    if problems or endpoint is None:
        raise ValueError("\n".join(problems + shape))
    return endpoint


def _url_problems(url: str) -> list[str]:
    # Messages name scheme and host only: the path and query of a webhook URL often hold a token.
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return ["url is not a valid URL"]
    if parts.scheme not in ("https", "http") or not host:
        return ["url must be an https:// URL with a host"]
    problems = []
    if parts.username is not None or parts.password is not None:
        problems.append("url must not carry credentials (user:password@): the signature authenticates voxgate")
    if parts.fragment:
        problems.append("url must not have a #fragment")
    if parts.scheme == "http" and not _is_loopback(host):
        problems.append(f"url must be https:// (http:// only for a loopback host): events carry call data, "
                        f"got http://{host}")
    return problems


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _did_you_mean(key: object) -> str:
    close = difflib.get_close_matches(str(key), ENDPOINT_KEYS, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# ---------------------------------------------------------------- retries


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one POST went: an HTTP status, or an error when no answer came."""

    status: int | None
    error: str | None
    duration_ms: float
    retry_after_s: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Network errors, timeouts, 429 and 5xx: the endpoint may take it later. Other answers will not change."""
        return self.status is None or self.status == 429 or 500 <= self.status < 600


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter between attempts, Retry-After honoured up to a cap."""

    max_attempts: int = 6
    first_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_retry_after_s: float = 300.0
    timeout_s: float = 10.0  # per attempt, connection to last byte

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.first_delay_s < 0 or self.max_delay_s < self.first_delay_s:
            raise ValueError(f"unusable retry policy {self!r}")
        if self.timeout_s <= 0 or self.max_retry_after_s < 0:
            raise ValueError(f"unusable retry policy {self!r}")

    def delay(self, attempt: int, result: AttemptResult, rng: random.Random) -> float | None:
        """Seconds before attempt `attempt + 1`, or None when the delivery ends with `attempt`."""
        if result.delivered or not result.retryable or attempt >= self.max_attempts:
            return None
        backoff = min(self.max_delay_s, self.first_delay_s * 2 ** (attempt - 1))
        delay = rng.uniform(backoff / 2, backoff)  # so that retries after an outage do not all land at once
        if result.retry_after_s is not None:
            delay = max(delay, min(result.retry_after_s, self.max_retry_after_s))
        return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# ---------------------------------------------------------------- delivery


@dataclass
class WebhookStats:
    """Counters an operator reads: `published` and `refused` count events, the others deliveries (event x endpoint)."""

    published: int = 0   # events accepted by publish()
    refused: int = 0     # publish() calls refused (not running, bad data)
    attempts: int = 0
    delivered: int = 0   # deliveries that ended with a 2xx
    failed: int = 0      # ended refused (4xx, redirect) or after max_attempts
    dropped: int = 0     # oldest deliveries dropped from a full backlog
    abandoned: int = 0   # given up at stop()
    rows_refused: int = 0  # delivery rows the record writer would not take


@dataclass(eq=False, slots=True)
class _Delivery:
    """One event on its way to one endpoint, across attempts."""

    id: str
    event: Event
    body: bytes
    attempts: int = 0
    last: WebhookDeliveryRecord | None = None
    in_flight_since: float | None = None  # loop time the current POST began
    in_flight_at: datetime | None = None
    retry_at: float | None = None         # loop time of the next attempt, while waiting for it
    task: asyncio.Task[None] | None = None


@dataclass(eq=False, slots=True)
class _Lane:
    """One endpoint's backlog (publish order) and connection slots: a slow endpoint only slows itself."""

    endpoint: WebhookEndpoint
    slots: asyncio.Semaphore
    pending: dict[str, _Delivery] = field(default_factory=dict)
    drops_unlogged: int = 0
    drop_logged_at: float = float("-inf")


class WebhookDispatcher:
    """Delivers published events to every endpoint that wants them; see the module docstring.

    `start()` inside the running loop, `publish()` from it, `await stop(drain_s)` before the record
    writer closes (the delivery rows go through `submit`).
    """

    def __init__(self, endpoints: Sequence[WebhookEndpoint], submit: Callable[[WebhookDeliveryRecord], None],
                 *, policy: RetryPolicy = RetryPolicy(), backlog: int = 1000, concurrency: int = 4,
                 rng: random.Random | None = None) -> None:
        if concurrency < 1 or backlog <= concurrency:
            raise ValueError(f"backlog ({backlog}) must exceed concurrency ({concurrency}), which must be >= 1")
        self._lanes = [_Lane(endpoint, asyncio.Semaphore(concurrency)) for endpoint in endpoints]
        self._submit = submit
        self._policy = policy
        self._backlog = backlog
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._deadline: float | None = None  # loop time stop() gives up at
        self.stats = WebhookStats()

    @property
    def pending(self) -> int:
        """Deliveries not yet ended, over all endpoints."""
        return sum(len(lane.pending) for lane in self._lanes)

    def start(self) -> None:
        if self._session is not None:
            raise RuntimeError("WebhookDispatcher is already started")
        # No connection limit of the session's own: the per-endpoint slots bound it without coupling endpoints.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    def publish(self, event_type: str, data: Payload) -> Event | None:
        """Queue an event for every endpoint that wants it; never waits, never raises.

        Returns the event, or None when it was refused (logged and counted in stats.refused) or no
        endpoint wants it.
        """
        try:
            return self._publish(event_type, data)
        except Exception:  # the caller is a call's media or control path: nothing may reach it
            self.stats.refused += 1
            log.exception("webhook %s not published", event_type)
            return None

    def _publish(self, event_type: str, data: Payload) -> Event | None:
        try:
            event = new_event(event_type, data)
        except (TypeError, ValueError) as exc:
            self.stats.refused += 1
            log.error("webhook not published: %s", exc)
            return None
        lanes = [lane for lane in self._lanes if lane.endpoint.wants(event_type)]
        if not lanes:
            return None
        if self._session is None or self._deadline is not None:
            self.stats.refused += 1
            log.warning("webhook %s %s not published: the dispatcher is %s", event.type, event.id,
                        "stopping" if self._deadline is not None else "not started")
            return None
        try:
            body = encode_event(event)
        except ValueError as exc:
            self.stats.refused += 1
            log.error("webhook not published: %s", exc)
            return None
        self.stats.published += 1
        loop = asyncio.get_running_loop()
        for lane in lanes:
            if len(lane.pending) >= self._backlog:
                self._drop_oldest(lane, loop.time())
            delivery = _Delivery(_new_id("dlv"), event, body)
            delivery.task = loop.create_task(self._deliver(lane, delivery), name=f"webhook {delivery.id}")
            lane.pending[delivery.id] = delivery
        return event

    async def stop(self, drain_s: float = 5.0) -> None:
        """Deliver what can be delivered within `drain_s`, then give up the rest (final rows, logged)."""
        if self._session is None or self._deadline is not None:
            return
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + drain_s
        tasks = [d.task for lane in self._lanes for d in lane.pending.values() if d.task is not None]
        for lane in self._lanes:  # waiting for a retry that would come too late: over now
            for delivery in list(lane.pending.values()):
                if delivery.retry_at is not None and delivery.retry_at > self._deadline:
                    self._give_up(lane, delivery, "not retried: voxgate stopped")
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, self._deadline - loop.time()))
        for lane in self._lanes:
            for delivery in list(lane.pending.values()):
                self._give_up(lane, delivery, "voxgate stopped")
            if lane.drops_unlogged:
                log.warning("webhook backlog for %s: %d more deliveries were dropped since the last such line",
                            lane.endpoint.label, lane.drops_unlogged)
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._session.close()

    # ------------------------------------------------------------ one delivery

    async def _deliver(self, lane: _Lane, delivery: _Delivery) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                async with lane.slots:
                    result = await self._attempt(lane.endpoint, delivery)
                if result is None:  # stop()'s deadline passed while it waited for a slot
                    self._end(lane, delivery, "voxgate stopped")
                    return
                delay = self._policy.delay(delivery.attempts, result, self._rng)
                note = None
                if delay is not None and self._deadline is not None and loop.time() + delay > self._deadline:
                    delay, note = None, "not retried: voxgate stopped"
                self._record(lane, delivery, result, delay, note)
                if delay is None:
                    return
                delivery.retry_at = loop.time() + delay
                await asyncio.sleep(delay)
                delivery.retry_at = None
        finally:
            lane.pending.pop(delivery.id, None)

    async def _attempt(self, endpoint: WebhookEndpoint, delivery: _Delivery) -> AttemptResult | None:
        assert self._session is not None
        loop = asyncio.get_running_loop()
        timeout = self._policy.timeout_s
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - loop.time())
            if timeout <= 0:
                return None
        delivery.attempts += 1
        delivery.in_flight_since, delivery.in_flight_at = loop.time(), datetime.now(UTC)
        headers = delivery_headers(delivery.event, delivery.id, endpoint.signing_secrets(), delivery.body,
                                   int(time.time()))
        status, error, retry_after = None, None, None
        try:
            async with self._session.post(endpoint.url, data=delivery.body, headers=headers, allow_redirects=False,
                                          timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                status = response.status
                if not 200 <= status < 300:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    error = _refusal(status, await response.content.read(ERROR_BODY_BYTES))
        except TimeoutError:
            error = f"no answer within {timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            error = _scrub(f"{type(exc).__name__}: {exc}", endpoint.label)
        except Exception as exc:  # a client surprise is one failed attempt, not a delivery lost without a row
            log.exception("webhook delivery %s to %s: unexpected client error", delivery.id, endpoint.label)
            error = _scrub(f"{type(exc).__name__}: {exc}", endpoint.label)
        duration_ms = (loop.time() - delivery.in_flight_since) * 1000
        delivery.in_flight_since = None
        return AttemptResult(status, error, duration_ms, retry_after)

    def _record(self, lane: _Lane, delivery: _Delivery, result: AttemptResult, delay: float | None,
                note: str | None) -> None:
        """One attempt: its row, its log line, its counters."""
        assert delivery.in_flight_at is not None
        error = "; ".join(e for e in (result.error, note) if e) or None
        self._store(lane, delivery, WebhookDeliveryRecord(
            delivery.id, delivery.attempts, delivery.event.id, delivery.event.type, lane.endpoint.label,
            delivery.in_flight_at, result.status, error, round(result.duration_ms, 1), delay is None,
            *_call_of(delivery.event)))
        self.stats.attempts += 1
        if result.delivered:
            self.stats.delivered += 1
        elif delay is None and note is not None:
            self.stats.abandoned += 1
        elif delay is None:
            self.stats.failed += 1
        what = f"HTTP {result.status}" if result.delivered else error
        then = "" if result.delivered else f"; retry in {delay:.1f} s" if delay is not None else "; giving up"
        log.log(logging.INFO if result.delivered else logging.WARNING,
                "webhook %s %s to %s: delivery %s attempt %d: %s in %.0f ms%s", delivery.event.type,
                delivery.event.id, lane.endpoint.label, delivery.id, delivery.attempts, what, result.duration_ms, then)

    def _drop_oldest(self, lane: _Lane, now: float) -> None:
        """The backlog is full: the oldest delivery not in the middle of a POST makes room."""
        oldest = next(d for d in lane.pending.values() if d.in_flight_since is None)  # backlog > concurrency
        self._give_up(lane, oldest, "dropped: backlog full", quiet=True)
        self.stats.dropped += 1
        lane.drops_unlogged += 1
        if now - lane.drop_logged_at >= DROP_LOG_INTERVAL_S:  # a dead endpoint must not flood the log
            log.warning("webhook backlog for %s is full (%d deliveries): dropped the oldest, %d since the last "
                        "such line, %d in all (latest: %s %s)", lane.endpoint.label, self._backlog,
                        lane.drops_unlogged, self.stats.dropped, oldest.event.type, oldest.event.id)
            lane.drop_logged_at, lane.drops_unlogged = now, 0

    def _give_up(self, lane: _Lane, delivery: _Delivery, why: str, *, quiet: bool = False) -> None:
        """End a delivery from outside its task: its final row says why; then the task is cancelled."""
        self._end(lane, delivery, why, quiet=quiet)
        if delivery.task is not None:
            delivery.task.cancel()

    def _end(self, lane: _Lane, delivery: _Delivery, why: str, *, quiet: bool = False) -> None:
        """The final row of a delivery that ends without an answer to end it: in flight, retried, or never tried."""
        loop = asyncio.get_running_loop()
        lane.pending.pop(delivery.id, None)
        if delivery.in_flight_since is not None:
            assert delivery.in_flight_at is not None
            record = WebhookDeliveryRecord(
                delivery.id, delivery.attempts, delivery.event.id, delivery.event.type, lane.endpoint.label,
                delivery.in_flight_at, None, f"cancelled before an answer: {why}",
                round((loop.time() - delivery.in_flight_since) * 1000, 1), True, *_call_of(delivery.event))
        elif delivery.last is not None:
            record = replace(delivery.last, final=True, error=f"{delivery.last.error}; {why}")
        else:
            record = WebhookDeliveryRecord(
                delivery.id, 0, delivery.event.id, delivery.event.type, lane.endpoint.label, datetime.now(UTC),
                None, f"not delivered: {why}", 0.0, True, *_call_of(delivery.event))
        self._store(lane, delivery, record)
        if not quiet:
            self.stats.abandoned += 1
            log.warning("webhook %s %s to %s: delivery %s given up after %d attempt(s): %s", delivery.event.type,
                        delivery.event.id, lane.endpoint.label, delivery.id, delivery.attempts, why)

    def _store(self, lane: _Lane, delivery: _Delivery, record: WebhookDeliveryRecord) -> None:
        delivery.last = record
        try:
            self._submit(record)
        except Exception as exc:  # a full or closed record writer must not stop deliveries
            self.stats.rows_refused += 1
            log.error("webhook delivery %s to %s: row not stored: %s", delivery.id, lane.endpoint.label, exc)


def _call_of(event: Event) -> tuple[str | None, str | None]:
    return getattr(event.data, "pbx", None), getattr(event.data, "call_uuid", None)


def _refusal(status: int, body: bytes) -> str:
    """'HTTP 400: <the start of what the endpoint said>', printable characters only."""
    text = "".join(ch if ch.isprintable() else " " for ch in body.decode("utf-8", "replace")).strip()
    return f"HTTP {status}: {text}" if text else f"HTTP {status}"


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>)\]]*")


def _scrub(message: str, label: str) -> str:
    """A client error as it may be logged and stored: any URL in it (path and query hold tokens) is the label."""
    return _URL.sub(label, message)
