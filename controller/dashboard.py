"""The dashboard: live calls, recent calls with their transcripts and per-turn latencies, daily charts.

Served under /dashboard by the HTTP API's server, for managers and operators with a browser. A page
load cannot carry the API's bearer header, so the dashboard has a door of its own: the login form takes
the API token once and answers with a session cookie (HttpOnly, SameSite=Strict, Path=/dashboard) that
holds an expiry signed with a key derived from the token. Nothing is kept on the server: a restart keeps
sessions, a new token ends them all. Every dashboard route checks the cookie itself (the bearer check
lets the routes named here through): without a session a page is only the login form and data answers
401. Pages are static files that fetch JSON from /dashboard/data/...; their Content-Security-Policy
allows this origin only, no inline script, no CDN. The figures are those of `voxgate report`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from yarl import URL

from controller.http_api import CallFilter, Records, live_row, plain
from controller.records.report import build_report, percentile

if TYPE_CHECKING:
    from controller.app import Controller

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
ROUTE_NAME = "dashboard"  # every route here is named dashboard-...: the API's bearer check lets those through
COOKIE = "voxgate_session"
SESSION_TTL_S = 8 * 3600
DEFAULT_DAYS, MAX_DAYS = 14, 90
DEFAULT_RECENT, MAX_RECENT = 50, 200
ASSETS = Path(__file__).with_name("dashboard_assets")
_PUBLIC = {"dashboard.css": "text/css"}  # the login form's look; everything else needs a session
_PRIVATE = {"dashboard.js": "text/javascript"}
_KEY_LABEL = b"voxgate dashboard session v1"
_WRONG_TOKEN = '<p class="error" role="alert">That is not the API token.</p>'
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_CALL_FIELDS = ("pbx", "call_uuid", "direction", "caller_id_name", "caller_id_number", "destination", "started_at",
                "answered_at", "ended_at", "duration_s", "billsec", "hangup_cause", "flow", "outcome")
_TURN_FIELDS = ("seq", "speaker", "text", "heard_text", "started_at", "ended_at", "confidence", "interrupted",
                "stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "voice_to_voice_ms", "barge_in_ms", "engines")
_TRANSFER_FIELDS = ("seq", "at", "destination", "kind", "reason", "outcome", "error")
_TOOL_FIELDS = ("turn_seq", "position", "at", "name", "result", "error", "duration_ms")


# ---------------------------------------------------------------- sessions (sans-I/O)


@dataclass(frozen=True, slots=True)
class Sessions:
    """Session cookies `<expiry>.<nonce>.<signature>`: HMAC-SHA256 under a key derived from the API token."""

    key: bytes
    ttl_s: int = SESSION_TTL_S

    @classmethod
    def for_token(cls, token: str, ttl_s: int = SESSION_TTL_S) -> Sessions:
        """A key of its own, so that a cookie is never a MAC made with the token itself."""
        return cls(hmac.new(token.encode(), _KEY_LABEL, hashlib.sha256).digest(), ttl_s)

    def issue(self, now: float) -> str:
        payload = f"{int(now) + self.ttl_s}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._sign(payload)}"

    def valid(self, cookie: str | None, now: float) -> bool:
        """A cookie this key signed, not yet expired, and not claiming more than one session's life."""
        payload, _, signature = (cookie or "").rpartition(".")
        expiry = payload.partition(".")[0]
        signed = hmac.compare_digest(signature.encode("utf-8", "replace"), self._sign(payload).encode())
        if not (signed and expiry.isascii() and expiry.isdigit()):
            return False
        return now < int(expiry) <= now + self.ttl_s

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# ---------------------------------------------------------------- figures (blocking: worker threads only)


def recent_calls(records: Records, limit: int) -> list[dict[str, Any]]:
    rows, _ = records.page(CallFilter(limit=limit))
    return [_pick(row, _CALL_FIELDS) for row in rows]


def call_detail(records: Records, call_uuid: str) -> dict[str, Any] | None:
    """A call's CDR, transcript with latencies, transfers and tool calls (not its recordings' paths)."""
    found = records.call(call_uuid)
    if found is None:
        return None
    return {"call": _pick(found["call"], _CALL_FIELDS),
            "turns": [_pick(row, _TURN_FIELDS) for row in found["turns"]],
            "transfers": [_pick(row, _TRANSFER_FIELDS) for row in found["transfers"]],
            "tool_calls": [_pick(row, _TOOL_FIELDS) for row in found["tool_calls"]]}


def daily_figures(database_url: str, days: int, flow: str | None, today: date,
                  flows: Sequence[str] = ()) -> dict[str, Any]:
    """The last `days` days to `today` (UTC), every day listed: volume, outcomes, voice-to-voice p50/p95.

    Volume and outcomes are `voxgate report`'s (the call_daily view) summed over flows; the percentiles
    come from the same agent replies, pooled per day across flows, since percentiles do not add up.
    """
    since = today - timedelta(days=days - 1)
    report = build_report(database_url, since, today, flow)
    calls: dict[str, list[Any]] = defaultdict(list)
    for row in report.days:
        calls[row.day].append(row)
    latencies: dict[str, list[Any]] = defaultdict(list)
    for reply in report.replies:
        latencies[reply.started_at.date().isoformat()].append(reply)
    series = [_day(day.isoformat(), calls[day.isoformat()], latencies[day.isoformat()])
              for day in (since + timedelta(days=n) for n in range(days))]
    return {"since": since.isoformat(), "until": today.isoformat(), "flow": flow,
            "flows": sorted({*flows, *(row.flow for row in report.days)}), "days": series,
            "causes": [{"cause": cause, "calls": n} for cause, n in report.causes]}


def _day(day: str, flows: list[Any], replies: list[Any]) -> dict[str, Any]:
    answered = sum(f.answered for f in flows)
    handled = sum(f.avg_handle_s * f.answered for f in flows if f.avg_handle_s is not None)
    contained, transferred, calls = (sum(f.contained for f in flows), sum(f.transferred for f in flows),
                                     sum(f.calls for f in flows))
    v2v = sorted(r.voice_to_voice_ms for r in replies if r.voice_to_voice_ms is not None)
    return {"day": day, "calls": calls, "answered": answered, "contained": contained, "transferred": transferred,
            "unanswered": max(0, calls - contained - transferred),
            "containment": contained / answered if answered else None,
            "avg_handle_s": handled / answered if answered else None,
            "replies": len(replies), "barged_in": sum(1 for r in replies if r.interrupted),
            "p50_ms": percentile(v2v, 50), "p95_ms": percentile(v2v, 95)}


def _pick(row: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {key: plain(row[key]) for key in fields}


# ---------------------------------------------------------------- the routes


class _Dashboard:
    def __init__(self, controller: Controller, token: str, records: Records) -> None:
        self.controller, self.records = controller, records
        self.sessions = Sessions.for_token(token)
        self._signed_out: dict[str, float] = {}  # cookie -> when it can no longer be valid anyway
        self._token = token.encode()
        self._assets = {name: (ASSETS / name).read_bytes() for name in
                        ("login.html", "dashboard.html", *_PUBLIC, *_PRIVATE)}

    def signed_in(self, request: web.Request) -> bool:
        cookie = request.cookies.get(COOKIE)
        return self.sessions.valid(cookie, time.time()) and cookie not in self._signed_out

    async def index(self, request: web.Request) -> web.Response:
        if self.signed_in(request):
            return _html(self._assets["dashboard.html"])
        return self._login_form()

    async def login(self, request: web.Request) -> web.Response:
        if not _same_origin(request):
            return web.Response(status=403, text="cross-site sign-in refused")
        given = (await request.post()).get("token")
        if not isinstance(given, str) or not hmac.compare_digest(given.strip().encode("utf-8", "replace"),
                                                                  self._token):
            log.warning("dashboard: sign-in with a wrong token from %s", request.remote)
            return self._login_form(401, _WRONG_TOKEN)
        response = web.Response(status=303, headers={"Location": PREFIX})
        response.set_cookie(COOKIE, self.sessions.issue(time.time()), max_age=self.sessions.ttl_s, path=PREFIX,
                            httponly=True, samesite="Strict", secure=_secure(request))
        log.info("dashboard: signed in from %s", request.remote)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        if not _same_origin(request):
            return web.Response(status=403, text="cross-site sign-out refused")
        now = time.time()
        self._signed_out = {cookie: until for cookie, until in self._signed_out.items() if until > now}
        if self.signed_in(request):  # a copy of the cookie must not outlive the sign-out
            self._signed_out[request.cookies[COOKIE]] = now + self.sessions.ttl_s  # no valid cookie lasts longer
        response = web.Response(status=303, headers={"Location": PREFIX})
        response.del_cookie(COOKIE, path=PREFIX, httponly=True, samesite="Strict", secure=_secure(request))
        return response

    async def asset(self, request: web.Request) -> web.Response:
        name, signed_in = request.match_info["name"], self.signed_in(request)
        kind = _PUBLIC.get(name) or (_PRIVATE.get(name) if signed_in else None)
        if kind is None:
            return _json_error(404, "not_found", "no such file") if signed_in else _unauthorized()
        return web.Response(body=self._assets[name], content_type=kind, charset="utf-8")

    async def elsewhere(self, request: web.Request) -> web.Response:
        """Any other path under /dashboard: 401 before a session, so that no path says it exists."""
        return _unauthorized() if not self.signed_in(request) else _json_error(404, "not_found", "no such page")

    # ------------------------------------------------------------ data: a session and nothing else

    async def live(self, request: web.Request) -> web.Response:
        live = self.controller.calls.in_progress()
        return web.json_response({"now": plain(datetime.now(UTC)),
                                  "calls": [plain(live_row(call)) for call in live]})

    async def recent(self, request: web.Request) -> web.Response:
        limit = _number(request, "limit", DEFAULT_RECENT, MAX_RECENT)
        return web.json_response({"calls": await asyncio.to_thread(recent_calls, self.records, limit)})

    async def call(self, request: web.Request) -> web.Response:
        call_uuid = request.match_info["call_uuid"]
        found = await asyncio.to_thread(call_detail, self.records, call_uuid)
        if found is None:
            return _json_error(404, "not_found", f"no record of call {call_uuid}")
        return web.json_response(found)

    async def daily(self, request: web.Request) -> web.Response:
        days = _number(request, "days", DEFAULT_DAYS, MAX_DAYS)
        flow = request.query.get("flow") or None
        figures = await asyncio.to_thread(daily_figures, self.controller.settings.database_url.reveal(), days, flow,
                                          datetime.now(UTC).date(), self.controller.flows.names)
        return web.json_response(figures)

    def _login_form(self, status: int = 200, message: str = "") -> web.Response:
        page = self._assets["login.html"].replace(b"<!-- message -->", message.encode())
        return _html(page, status)


class _BadQuery(ValueError):
    """A query parameter out of range: a 422 naming it."""


def _number(request: web.Request, name: str, default: int, most: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= most:
        raise _BadQuery(f"{name} must be a whole number from 1 to {most}")
    return int(raw)


def _secure(request: web.Request) -> bool:
    """HTTPS here, or at the TLS-terminating proxy in front (X-Forwarded-Proto). The header needs no
    trust: it can only add the Secure flag, which narrows where the browser sends the cookie."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def _same_origin(request: web.Request) -> bool:
    """A form posted from this server's own page, as browsers tell: Sec-Fetch-Site, and Origin when it names one
    (under the no-referrer policy a browser sends the dashboard's own form with Origin "null")."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin in (None, "null") or URL(origin).authority == request.host


def _html(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="text/html", charset="utf-8")


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _unauthorized() -> web.Response:
    return _json_error(401, "unauthorized", "sign in at /dashboard first")


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _guarded(handler: Handler, session: Callable[[web.Request], bool] | None) -> Handler:
    """With `session`, 401 unless it says the request has one; a bad query parameter is a 422."""
    async def guarded(request: web.Request) -> web.Response:
        if session is not None and not session(request):
            return _unauthorized()
        try:
            return await handler(request)
        except _BadQuery as exc:
            return _json_error(422, "invalid", str(exc))
    return guarded


async def _harden(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """The security headers on every dashboard answer, errors the API's middleware makes included."""
    if isinstance(request, web.Request) and is_dashboard(request):
        response.headers.update(HEADERS)


def mount_dashboard(app: web.Application, controller: Controller, token: str, records: Records) -> None:
    """The dashboard's routes on the API's Application, reading records through the API's pool."""
    board = _Dashboard(controller, token, records)
    routes: list[tuple[str, str, str, Handler, bool]] = [
        ("GET", "", "index", board.index, False),
        ("POST", "/login", "login", board.login, False),
        ("POST", "/logout", "logout", board.logout, False),
        ("GET", "/static/{name}", "static", board.asset, False),
        ("GET", "/data/live", "live", board.live, True),
        ("GET", "/data/calls", "calls", board.recent, True),
        ("GET", "/data/calls/{call_uuid}", "call", board.call, True),
        ("GET", "/data/daily", "daily", board.daily, True),
    ]
    for method, path, name, handler, data in routes:
        app.router.add_route(method, PREFIX + path, _guarded(handler, board.signed_in if data else None),
                             name=f"{ROUTE_NAME}-{name}")
    app.router.add_route("*", PREFIX + "/{tail:.*}", _guarded(board.elsewhere, None), name=f"{ROUTE_NAME}-other")
    app.on_response_prepare.append(_harden)


def is_dashboard(request: web.Request) -> bool:
    """Whether the request goes to a dashboard route (which checks the session cookie itself)."""
    name = request.match_info.route.name
    return name is not None and name.startswith(ROUTE_NAME + "-")
