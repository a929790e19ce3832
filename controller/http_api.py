"""The HTTP API (aiohttp): finished calls and their records, live calls, outbound calls.

`build_api(controller, token)` makes the Application; `ApiServer` runs it on bind_host:api_port for
the Controller. Routes, input checks and response fields all come from the OpenAPI document
(controller/openapi.py), served at /api/v1/openapi.json. Every route needs the bearer token, the
document included: the API has no anonymous surface at all, and anyone who may operate voxgate has
the token. The token is compared in constant time and never logged. The dashboard (controller/dashboard.py)
shares the server under /dashboard, behind a session cookie its login form gives for the same token. Errors are JSON,
{"error": {"code", "message", "field"?}}. Records are read as stored (redacted text stays redacted),
in worker threads, because database access blocks.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import Table, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from controller.call import CallGone, CommandFailed
from controller.config import MIN_TOKEN_SECRET_CHARS, Settings
from controller.dialer import DialError, DialResult, OutboundCall
from controller.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from controller.openapi import (
    API_PREFIX, MAX_BODY_BYTES, InputError, Operation, check_enforceable, document, operations, read_body,
    read_parameters, schema,
)
from controller.phone_numbers import InvalidNumber
from controller.records.models import (
    CallAttemptRow, CallEventRow, CallRow, DtmfRow, RecordingRow, ToolCallRow, TransferRow, TurnRow,
)

if TYPE_CHECKING:
    from controller.adapter import AdapterCall
    from controller.app import Controller

log = logging.getLogger(__name__)

SHUTDOWN_S = 5.0  # in-flight requests get this long when the server stops
MAX_DIALING = 100  # outbound requests dialling at once through the API
REMEMBERED_DIALS = 1000  # finished requests kept in memory; older ones are read back from call_attempts
PG_CONNECT_TIMEOUT_S = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
          413: "too_large", 422: "invalid", 429: "too_many", 502: "pbx_refused", 503: "unavailable"}
Handler = Callable[[web.Request, dict[str, Any], dict[str, Any] | None], Awaitable[web.Response]]


class ApiError(Exception):
    """An error response: status, a stable code, a message, maybe the field at fault and headers."""

    def __init__(self, status: int, message: str, *, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.field, self.headers = status, field, dict(headers or {})

    def response(self) -> web.Response:
        return _error(self.status, str(self), self.field, self.headers)


def _error(status: int, message: str, field: str | None = None,
           headers: Mapping[str, str] | None = None) -> web.Response:
    error = {"code": _CODES.get(status, "internal" if status >= 500 else "error"), "message": message}
    if field:
        error["field"] = field
    return web.json_response({"error": error}, status=status, headers=headers)


# ---------------------------------------------------------------- middlewares


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Every failure as the JSON error shape; nothing internal leaks into a response."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except InputError as exc:
        return _error(400 if exc.malformed else 422, str(exc), exc.field)
    except web.HTTPException as exc:  # aiohttp's own: no route, wrong method, body too large
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _error(exc.status, exc.reason, headers=allow)
    except SQLAlchemyError as exc:  # the driver's first line only: SQLAlchemy's would add the statement
        reason = (str(getattr(exc, "orig", None) or exc).splitlines() or [type(exc).__name__])[0]
        log.error("HTTP API %s %s: records database error: %s", request.method, request.path, reason)
        return _error(503, "the records database is unavailable")
    except Exception:
        log.exception("HTTP API %s %s failed", request.method, request.path)
        return _error(500, "internal error; voxgate's log has the details")


def _authenticate(token: str, exempt: Callable[[web.Request], bool]) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = token.encode()

    @web.middleware
    async def authenticate(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        """Before routing answers anything, so an anonymous client learns nothing, not even which paths exist."""
        if exempt(request):  # the dashboard's routes: they check its session cookie themselves
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "a bearer token is required: Authorization: Bearer <api_token>",
                           headers={"WWW-Authenticate": 'Bearer realm="voxgate"'})
        if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected):
            raise ApiError(401, "the bearer token is wrong",
                           headers={"WWW-Authenticate": 'Bearer realm="voxgate", error="invalid_token"'})
        return await handler(request)
    return authenticate


# ---------------------------------------------------------------- records (blocking: worker threads only)


@dataclass(frozen=True, slots=True)
class CallFilter:
    """GET /calls's query: started in [since, until), the listed columns equal, a page after `after`."""

    since: datetime | None = None
    until: datetime | None = None
    equal: tuple[tuple[str, str], ...] = ()  # (column, value)
    limit: int = 50
    after: tuple[datetime, int] | None = None  # (started_at, id) of the previous page's last call


_CHILDREN: tuple[tuple[str, Table, tuple[str, ...]], ...] = (
    ("turns", TurnRow.__table__, ("seq",)), ("events", CallEventRow.__table__, ("seq",)),
    ("dtmf", DtmfRow.__table__, ("seq",)), ("transfers", TransferRow.__table__, ("seq",)),
    ("tool_calls", ToolCallRow.__table__, ("turn_seq", "position")),
    ("recordings", RecordingRow.__table__, ("seq",)),
)


class Records:
    """Reads the record tables through one pooled engine; every method blocks."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_S} if url.get_backend_name() == "postgresql" else {}
        self._engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args)

    def page(self, query: CallFilter) -> tuple[list[dict[str, Any]], bool]:
        """One page of calls, newest first, and whether more follow."""
        calls = CallRow.__table__
        statement = select(calls).order_by(calls.c.started_at.desc(), calls.c.id.desc()).limit(query.limit + 1)
        if query.since is not None:
            statement = statement.where(calls.c.started_at >= query.since)
        if query.until is not None:
            statement = statement.where(calls.c.started_at < query.until)
        for column, value in query.equal:
            statement = statement.where(calls.c[column] == value)
        if query.after is not None:
            started, row_id = query.after
            statement = statement.where((calls.c.started_at < started)
                                        | ((calls.c.started_at == started) & (calls.c.id < row_id)))
        with self._engine.connect() as connection:
            rows = [dict(row._mapping) for row in connection.execute(statement)]
        return rows[:query.limit], len(rows) > query.limit

    def call(self, call_uuid: str) -> dict[str, Any] | None:
        """A call's CDR ("call") and its rows of every per-call table, or None when there is no CDR."""
        calls = CallRow.__table__
        with self._engine.connect() as connection:
            row = connection.execute(select(calls).where(calls.c.call_uuid == call_uuid)
                                     .order_by(calls.c.pbx).limit(1)).first()
            if row is None:
                return None
            found: dict[str, Any] = {"call": dict(row._mapping)}
            for key, table, order in _CHILDREN:
                statement = (select(table).where(table.c.pbx == row.pbx, table.c.call_uuid == call_uuid)
                             .order_by(*(table.c[name] for name in order)))
                found[key] = [dict(child._mapping) for child in connection.execute(statement)]
        return found

    def has_call(self, call_uuid: str) -> bool:
        calls = CallRow.__table__
        with self._engine.connect() as connection:
            return connection.execute(select(calls.c.id).where(calls.c.call_uuid == call_uuid).limit(1)).first() \
                is not None

    def attempts(self, request_id: str) -> list[dict[str, Any]]:
        attempts = CallAttemptRow.__table__
        with self._engine.connect() as connection:
            statement = select(attempts).where(attempts.c.request_id == request_id).order_by(attempts.c.attempt)
            return [dict(row._mapping) for row in connection.execute(statement)]

    def close(self) -> None:
        self._engine.dispose()


def _cursor(row: Mapping[str, Any]) -> str:
    """Where the next page starts: after this call (started_at in microseconds since 1970, row id)."""
    return f"{(row['started_at'] - _EPOCH) // timedelta(microseconds=1)}.{row['id']}"


def _after(cursor: str | None) -> tuple[datetime, int] | None:
    if cursor is None:
        return None
    micros, row_id = cursor.split(".")  # the document's pattern guarantees two runs of digits
    try:
        started = _EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        started = datetime.max.replace(tzinfo=UTC)
    return started, int(row_id)


# ---------------------------------------------------------------- outbound requests


@dataclass(slots=True)
class _Dial:
    """An outbound request placed through the API: dialling in `task`, then its result (or the error that ended it)."""

    request_id: str
    pbx: str
    number: str
    flow: str
    task: asyncio.Task[DialResult] | None = None
    result: DialResult | None = None
    error: str | None = None


class _Dials:
    """The requests this process dials, by id: every one dialling, and the latest finished ones."""

    def __init__(self) -> None:
        self._dials: OrderedDict[str, _Dial] = OrderedDict()

    def get(self, request_id: str) -> _Dial | None:
        return self._dials.get(request_id)

    def start(self, dial: _Dial, dialling: Callable[[], Awaitable[DialResult]]) -> None:
        """Dial in the background; 409 for a request id taken meanwhile, 429 when too many are dialling."""
        if dial.request_id in self._dials:
            raise ApiError(409, f"outbound request {dial.request_id} exists already", field="request_id")
        if sum(1 for d in self._dials.values() if d.task is not None and not d.task.done()) >= MAX_DIALING:
            raise ApiError(429, f"{MAX_DIALING} outbound requests are dialling already; try again later")
        dial.task = asyncio.ensure_future(dialling())
        dial.task.add_done_callback(lambda task: self._finished(dial, task))
        self._dials[dial.request_id] = dial

    def _finished(self, dial: _Dial, task: asyncio.Task[DialResult]) -> None:
        if task.cancelled():
            dial.error = "cancelled: voxgate stopped while dialling"
        elif task.exception() is not None:
            exc = task.exception()
            dial.error = f"{type(exc).__name__}: {exc}"
            log.error("outbound request %s failed", dial.request_id, exc_info=exc)
        else:
            dial.result = task.result()
        finished = [key for key, d in self._dials.items() if d.task is not None and d.task.done()]
        for key in finished[:max(0, len(finished) - REMEMBERED_DIALS)]:
            del self._dials[key]

    async def close(self) -> None:
        """Stop dialling (a try still ringing is hung up); answered calls go on under the controller."""
        tasks = [d.task for d in self._dials.values() if d.task is not None and not d.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _status(request_id: str, dial: _Dial | None, attempts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """An outbound request as the API shows it: what this process knows of it, else what its call_attempts rows
    (`attempts`, in order) say."""
    answered = next((a["call_uuid"] for a in attempts if a["call_uuid"]), None)
    if dial is not None:
        status = ("error" if dial.error else dial.result.outcome if dial.result else "dialing")
        head = {"pbx": dial.pbx, "number": dial.number, "flow": dial.flow,
                "call_uuid": dial.result.call_uuid if dial.result else answered, "error": dial.error}
    else:  # dialled by an earlier run, or forgotten: its tries say how far it got
        last = attempts[-1]
        status = last["outcome"]
        head = {"pbx": last["pbx"], "number": last["number"], "flow": last["flow"], "call_uuid": answered,
                "error": None}
    return _shape("OutboundCall", {"request_id": request_id, "status": status, **head,
                                   "attempts": [_shape("Attempt", row) for row in attempts]})


# ---------------------------------------------------------------- the operations


class _Api:
    """One method per operation of the document, named by its operationId."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.records = Records(controller.settings.database_url.reveal())
        self.dials = _Dials()
        self._acting: set[str] = set()  # calls with a hangup or transfer under way
        self._started = time.monotonic()

    def document(self) -> dict[str, Any]:
        return document(self.controller.flows.names, dial_pbxs(self.controller))

    def operation(self, op: Operation) -> Operation:
        """The operation as the current document has it (its flows may have changed since the routes were built)."""
        return Operation(op.method, op.path, self.document()["paths"][op.path][op.method])

    async def close(self) -> None:
        await self.dials.close()
        await asyncio.to_thread(self.records.close)

    # ------------------------------------------------------------ finished calls

    async def list_calls(self, request: web.Request, params: dict[str, Any], body: None) -> web.Response:
        equal = tuple((column, params[name]) for name, column in (
            ("flow", "flow"), ("outcome", "outcome"), ("pbx", "pbx"), ("direction", "direction"),
            ("caller_number", "caller_id_number")) if params[name] is not None)
        query = CallFilter(params["since"], params["until"], equal, params["limit"], _after(params["cursor"]))
        rows, more = await asyncio.to_thread(self.records.page, query)
        return _json({"calls": [_shape("CallSummary", row) for row in rows],
                      "next_cursor": _cursor(rows[-1]) if more else None})

    async def get_call(self, request: web.Request, params: dict[str, Any], body: None) -> web.Response:
        call_uuid = params["call_uuid"]
        found = await asyncio.to_thread(self.records.call, call_uuid)
        if found is None:
            live = " (it is live: its record is written when it ends)" if call_uuid in self.controller.calls else ""
            raise ApiError(404, f"no record of call {call_uuid}{live}", field="call_uuid")
        detail = {"call": _shape("Call", found["call"])}
        for key, array in schema(document(), "CallDetail")["properties"].items():
            if key != "call":
                detail[key] = [_shape(_item_schema(array), row) for row in found[key]]
        return _json(detail)

    # ------------------------------------------------------------ live calls

    async def list_live_calls(self, request: web.Request, params: dict[str, Any], body: None) -> web.Response:
        live = self.controller.calls.in_progress()
        return _json({"calls": [_shape("LiveCall", live_row(call)) for call in live]})

    async def hang_up(self, request: web.Request, params: dict[str, Any], body: dict[str, Any]) -> web.Response:
        call_uuid, cause = params["call_uuid"], body["cause"]
        with self._acting_on(call_uuid):
            call = await self._live(call_uuid)
            await _command(call.hangup(cause), "hangup", call_uuid, "cause")
        log.info("call %s: hung up through the HTTP API (%s)", call_uuid, cause)
        return _json({"call_uuid": call_uuid, "action": "hangup", "cause": cause}, status=202)

    async def transfer(self, request: web.Request, params: dict[str, Any], body: dict[str, Any]) -> web.Response:
        call_uuid, destination = params["call_uuid"], body["destination"]
        with self._acting_on(call_uuid):
            call = await self._live(call_uuid)
            await _command(call.transfer(destination, body.get("reason") or "api"), "transfer", call_uuid,
                           "destination")
        log.info("call %s: transferred to %s through the HTTP API", call_uuid, destination)
        return _json({"call_uuid": call_uuid, "action": "transfer", "destination": destination}, status=202)

    @contextmanager
    def _acting_on(self, call_uuid: str):
        if call_uuid in self._acting:
            raise ApiError(409, f"a hangup or transfer of call {call_uuid} is already under way", field="call_uuid")
        self._acting.add(call_uuid)
        try:
            yield
        finally:
            self._acting.discard(call_uuid)

    async def _live(self, call_uuid: str) -> AdapterCall:
        """The live call, or 409 for one that ended or left voxgate, or 404."""
        call = self.controller.calls.get(call_uuid)
        if call is not None and call.transferred_to is not None:
            raise ApiError(409, f"call {call_uuid} was transferred to {call.transferred_to}", field="call_uuid")
        if call is not None and not call.ended.is_set():
            return call
        if call is not None or await asyncio.to_thread(self.records.has_call, call_uuid):
            raise ApiError(409, f"call {call_uuid} has ended", field="call_uuid")
        raise ApiError(404, f"no live call {call_uuid}", field="call_uuid")

    # ------------------------------------------------------------ outbound calls

    async def start_outbound_call(self, request: web.Request, params: dict[str, Any],
                                  body: dict[str, Any]) -> web.Response:
        dialer = getattr(self.controller, "dialer", None)
        if dialer is None or not dial_pbxs(self.controller):
            raise ApiError(503, "outbound calling is not configured: it needs FreeSWITCH's event socket "
                                "(esl_inbound) or Asterisk (asterisk), and trunks")
        request_id = body.get("request_id") or uuidlib.uuid4().hex
        if self.dials.get(request_id) is not None or await asyncio.to_thread(self.records.attempts, request_id):
            raise ApiError(409, f"outbound request {request_id} exists already", field="request_id")
        outbound = OutboundCall(
            body["number"], body["flow"], caller_id_number=body.get("caller_id_number"),
            caller_id_name=body.get("caller_id_name"), variables=body.get("variables", {}),
            trunks=tuple(body.get("trunks", ())), pbx=body.get("pbx", ""), retries=body.get("retries"),
            ring_timeout_s=body.get("ring_timeout_s"), request_id=request_id)
        try:
            plan = dialer.plan(outbound)  # everything checked before anything is dialled
        except DialError as exc:
            raise ApiError(503, str(exc)) from None
        except ValueError as exc:
            raise ApiError(422, str(exc), field="number" if isinstance(exc, InvalidNumber) else None) from None
        dial = _Dial(request_id, plan.pbx, plan.number, plan.flow)
        self.dials.start(dial, lambda: dialer.dial(outbound))
        log.info("outbound request %s: dialling %s for flow %s through the HTTP API", request_id, plan.number,
                 plan.flow)
        return _json(_status(request_id, dial, []), status=202,
                     headers={"Location": f"{API_PREFIX}/outbound-calls/{request_id}"})

    async def get_outbound_call(self, request: web.Request, params: dict[str, Any], body: None) -> web.Response:
        request_id = params["request_id"]
        dial = self.dials.get(request_id)
        attempts = await asyncio.to_thread(self.records.attempts, request_id)
        if dial is None and not attempts:
            raise ApiError(404, f"no outbound request {request_id}", field="request_id")
        return _json(_status(request_id, dial, attempts))

    async def get_liveness(self, request: web.Request, params: dict[str, Any], body: None) -> web.Response:
        return _json(_shape("Health", self._health("live")))

    async def get_readiness(self, request: web.Request, params: dict[str, Any], body: None) -> web.Response:
        state = self.controller.state
        return _json(_shape("Health", self._health(state)), status=200 if state == "ready" else 503)

    def _health(self, status: str) -> dict[str, Any]:
        return {"status": status, "instance": self.controller.settings.instance_id,
                "live_calls": len(self.controller.calls), "uptime_s": round(time.monotonic() - self._started, 3)}

    async def get_document(self, request: web.Request, params: dict[str, Any], body: None) -> web.Response:
        return _json(self.document())


def dial_pbxs(controller: Controller) -> tuple[str, ...]:
    """The PBXs outbound calls can go through: FreeSWITCH over its event socket, Asterisk over AMI."""
    settings = controller.settings
    return (*(("freeswitch",) if settings.esl_inbound else ()), *(("asterisk",) if settings.asterisk else ()))


async def _command(command: Awaitable[None], action: str, call_uuid: str, field: str) -> None:
    try:
        await command
    except CallGone:
        raise ApiError(409, f"call {call_uuid} ended before the {action}", field="call_uuid") from None
    except CommandFailed as exc:
        raise ApiError(502, f"the PBX refused the {action}: {exc}") from None
    except ValueError as exc:  # the adapter's own check of a value the document let through
        raise ApiError(422, str(exc), field=field) from None


def _shape(name: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A response object: the properties the document gives schema `name` (the same on every server), from `row`."""
    return {key: plain(row[key]) for key in schema(document(), name)["properties"]}


def _item_schema(array: Mapping[str, Any]) -> str:
    """The component name of an array property's items ({"items": {"$ref": "#/components/schemas/Turn"}})."""
    return array["items"]["$ref"].rsplit("/", 1)[1]


def live_row(call: AdapterCall) -> dict[str, Any]:
    info = call.info
    return {"pbx": info.pbx, "call_uuid": info.uuid, "direction": info.direction,
            "caller_id_name": info.caller_id_name, "caller_id_number": info.caller_id_number,
            "destination": info.destination, "flow": info.flow, "started_at": info.started_at,
            "answered_at": info.answered_at}


def plain(value: Any) -> Any:
    """A stored value as JSON: times in RFC 3339 UTC, no NaN or infinity (JSON has none)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _json(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


# ---------------------------------------------------------------- the application


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body, None when empty; 413 beyond MAX_BODY_BYTES, before reading it when declared."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    raw = await request.read()  # the application's client_max_size stops an undeclared one
    if not raw.strip():
        return None
    try:
        return json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        raise InputError(None, f"the body is not JSON: {exc}", malformed=True) from None


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _endpoint(api: _Api, op: Operation, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def endpoint(request: web.Request) -> web.Response:
        current = api.operation(op)
        query = {name: request.query.getall(name) for name in request.query}
        params = read_parameters(current, query, request.match_info)
        body = read_body(current, await _json_body(request)) if "requestBody" in current.spec else None
        return await handler(request, params, body)
    return endpoint


def _metrics(controller: Controller) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=controller.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})
    return metrics


def build_api(controller: Controller, token: str) -> web.Application:
    """The API's Application: one route per operation of the document, all behind the bearer token."""
    if len(token) < MIN_TOKEN_SECRET_CHARS:
        raise ValueError(f"the API token must be at least {MIN_TOKEN_SECRET_CHARS} characters")
    from controller.dashboard import is_dashboard, mount_dashboard  # the dashboard builds on this module

    api = _Api(controller)
    app = web.Application(middlewares=[_errors, _authenticate(token, is_dashboard)], client_max_size=MAX_BODY_BYTES)
    doc = api.document()
    check_enforceable(doc)
    for op in operations(doc):
        handler = getattr(api, op.id, None)
        if handler is None:
            raise ValueError(f"operation {op.id} ({op.method.upper()} {op.path}) has no handler")
        app.router.add_route(op.method.upper(), API_PREFIX + op.path, _endpoint(api, op, handler))
    app.router.add_get("/metrics", _metrics(controller))  # Prometheus text, behind the same token
    mount_dashboard(app, controller, token, api.records)  # /dashboard: a session cookie instead of the bearer

    async def close(_: web.Application) -> None:
        await api.close()
    app.on_cleanup.append(close)
    app[_API] = api
    return app


_API = web.AppKey("api", _Api)


class ApiServer:
    """The HTTP API on settings.bind_host:settings.api_port (0: a free port, see `port` once started).

    The Controller owns one when settings.api is true: start it after the controller, stop it once the calls
    are done but before the PBX connections (stopping cancels the requests still dialling, which need them).
    """

    def __init__(self, controller: Controller, settings: Settings | None = None) -> None:
        settings = settings or controller.settings
        if settings.api_token is None:
            raise ValueError("the HTTP API needs api_token (VOXGATE_API_TOKEN)")
        self._app = build_api(controller, settings.api_token.reveal())
        self._host, self._wanted_port = settings.bind_host, settings.api_port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self._app, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._wanted_port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("HTTP API on http://%s:%s%s", self._host, self.port, API_PREFIX)

    async def stop_dialling(self) -> None:
        """Draining: hang up the requests still ringing; an answer could no longer reach this instance."""
        await self._app[_API].dials.close()

    async def stop(self) -> None:
        """Finish in-flight requests (up to SHUTDOWN_S), stop dialling, close the database pool."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
