"""Who gets into the dashboard: the login form for everyone, everything else for a signed session only."""

from __future__ import annotations

import logging
import time

import aiohttp

from controller.dashboard import COOKIE, SESSION_TTL_S, Sessions
from tests.api.conftest import AUTH, TOKEN
from tests.dashboard.conftest import expired_cookie

DATA = ("live", "calls", "calls/3f1c9a52-0000-4000-8000-000000000001", "daily")
WRONG = "api-test-token-4f9c2b7d1e8b"  # one character off


async def _get(board, path: str, cookie: str | None = None, **headers: str) -> tuple[int, str, aiohttp.ClientResponse]:
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        async with session.get(board.root + path, headers=headers, allow_redirects=False) as response:
            return response.status, await response.text(), response


def _assert_hardened(response: aiohttp.ClientResponse) -> None:
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_without_a_session_there_is_only_the_login_form(board):
    status, page, response = await _get(board, "")
    assert status == 200 and response.content_type == "text/html"
    assert '<form method="post" action="/dashboard/login">' in page and 'name="token"' in page
    assert "dashboard.js" not in page and "Live calls" not in page and "<script" not in page
    _assert_hardened(response)
    status, _, response = await _get(board, "/static/dashboard.css")  # the form's look is all that is public
    assert status == 200 and response.content_type == "text/css"
    for path in ("/static/dashboard.js", "/static/login.html", "/static/nothing", "/nothing", "/data/unknown"):
        status, body, _ = await _get(board, path)
        assert status == 401 and "unauthorized" in body, path
    for path in DATA:
        for headers in ({}, AUTH):  # the API's bearer token is no session: data wants the cookie only
            status, body, response = await _get(board, f"/data/{path}", **headers)
            assert status == 401 and '"code": "unauthorized"' in body, (path, headers)
            _assert_hardened(response)


async def test_a_wrong_token_gets_401_and_the_form_again(board, caplog):
    caplog.set_level(logging.DEBUG)
    for form in ({"token": WRONG}, {"token": TOKEN[:-1]}, {"token": ""}, {"other": TOKEN}, {}):
        async with board.http.post(board.root + "/login", data=form, allow_redirects=False) as response:
            page = await response.text()
            assert response.status == 401, form
            assert COOKIE not in response.cookies
            assert "That is not the API token." in page and 'name="token"' in page
            _assert_hardened(response)
    async with board.http.post(board.root + "/login", json={"token": TOKEN}, allow_redirects=False) as response:
        assert response.status == 401  # a form, not JSON
    assert "sign-in with a wrong token" in caplog.text
    assert TOKEN not in caplog.text and WRONG not in caplog.text


async def test_signing_in_sets_a_strict_http_only_session_cookie_and_signing_out_clears_it(board):
    async with board.http.post(board.root + "/login", data={"token": TOKEN}, allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == "/dashboard"
        [header] = response.headers.getall("Set-Cookie")
    flags = [part.strip().lower() for part in header.split(";")]
    name, _, value = header.split(";")[0].partition("=")
    assert name == COOKIE and TOKEN not in header
    assert "httponly" in flags and "samesite=strict" in flags and "path=/dashboard" in flags
    assert f"max-age={SESSION_TTL_S}" in flags and "secure" not in flags  # plain HTTP here: Secure only over HTTPS
    assert Sessions.for_token(TOKEN).valid(value, time.time())

    status, page, response = await _get(board, "", value)
    assert status == 200 and '<script src="/dashboard/static/dashboard.js" defer></script>' in page
    assert 'name="token"' not in page
    _assert_hardened(response)
    status, script, response = await _get(board, "/static/dashboard.js", value)
    assert status == 200 and response.content_type == "text/javascript" and "/dashboard/data" in script

    async with board.http.post(board.root + "/logout", allow_redirects=False,
                               headers={"Cookie": f"{COOKIE}={value}"}) as response:
        assert response.status == 303 and response.headers["Location"] == "/dashboard"
        [cleared] = response.headers.getall("Set-Cookie")
    assert cleared.startswith(f'{COOKIE}=""')
    assert "max-age=0" in cleared.lower() and "path=/dashboard" in cleared.lower()
    status, page, _ = await _get(board, "", None)
    assert 'name="token"' in page
    status, page, _ = await _get(board, "", value)  # a copy of the signed-out cookie opens nothing
    assert status == 200 and 'name="token"' in page
    for path in DATA:
        status, _, _ = await _get(board, f"/data/{path}", value)
        assert status == 401, path


async def test_behind_a_tls_proxy_the_cookie_is_secure(board):
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        async with session.post(board.root + "/login", data={"token": TOKEN}, allow_redirects=False,
                                headers={"X-Forwarded-Proto": "https"}) as response:
            assert response.status == 303
            [header] = response.headers.getall("Set-Cookie")
    assert "secure" in [part.strip().lower() for part in header.split(";")]


async def test_forged_expired_and_foreign_cookies_are_refused(board):
    good = await board.sign_in()
    status, _ = await board.data("live", good)
    assert status == 200
    expiry, nonce, signature = good.split(".")
    other = Sessions.for_token(WRONG)
    forged = [
        expired_cookie(),
        f"{int(expiry) + 3600}.{nonce}.{signature}",  # a longer life under the old signature
        f"{expiry}.{nonce}x.{signature}",
        f"{expiry}.{nonce}.{signature[:-2]}",
        other.issue(time.time()),  # signed for another token
        Sessions(Sessions.for_token(TOKEN).key, ttl_s=10 * SESSION_TTL_S).issue(time.time()),  # beyond one session
        TOKEN, "", "...", f"{expiry}..{signature}", f"-{expiry}.{nonce}.{signature}",
    ]
    for cookie in forged:
        for path in DATA:
            status, body = await board.data(path, cookie)
            assert status == 401 and body["error"]["code"] == "unauthorized", (cookie, path)
        status, page, _ = await _get(board, "", cookie)
        assert 'name="token"' in page and "dashboard.js" not in page, cookie


async def test_a_cross_site_form_cannot_sign_in_or_out(board):
    own = f"http://127.0.0.1:{board.server.port}"
    for path in ("/login", "/logout"):
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
                        {"Origin": own, "Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "cross-site"}):
            async with board.http.post(board.root + path, data={"token": TOKEN}, headers=headers,
                                       allow_redirects=False) as response:
                assert response.status == 403 and COOKIE not in response.cookies, (path, headers)
    # what browsers send for the dashboard's own form (Origin "null" under its no-referrer policy)
    for headers in ({"Origin": own}, {"Origin": "null", "Sec-Fetch-Site": "same-origin"}, {}):
        async with board.http.post(board.root + "/login", data={"token": TOKEN}, headers=headers,
                                   allow_redirects=False) as response:
            assert response.status == 303 and COOKIE in response.cookies, headers


async def test_the_api_still_wants_its_bearer_token_and_a_session_does_not_open_it(board):
    cookie = await board.sign_in()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        for path in ("/api/v1/calls", "/metrics", "/", "/dashboardx", "/api/v1/../../dashboard/../api/v1/calls"):
            async with session.get(f"http://127.0.0.1:{board.server.port}{path}",
                                   headers={"Cookie": f"{COOKIE}={cookie}"}) as response:
                assert response.status == 401, path
    status, body = await board.get("/calls")
    assert status == 200 and body["calls"] == []


def test_sessions_are_signed_expiring_and_tied_to_the_token():
    sessions = Sessions.for_token(TOKEN, ttl_s=60)
    now = 1_800_000_000.0
    cookie = sessions.issue(now)
    assert sessions.valid(cookie, now) and sessions.valid(cookie, now + 59)
    assert not sessions.valid(cookie, now + 60) and not sessions.valid(cookie, now + 3600)
    assert not Sessions.for_token(TOKEN + "x", ttl_s=60).valid(cookie, now)
    assert cookie != sessions.issue(now)  # a nonce of its own each time
    assert sessions.key != TOKEN.encode() and len(sessions.key) == 32
    assert not sessions.valid(None, now) and not sessions.valid("1.2", now)
