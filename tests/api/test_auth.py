"""The bearer token guards every route of the document, and unknown ones; it never reaches the logs."""

from __future__ import annotations

import logging
import re

import pytest

from controller.http_api import ApiServer, build_api
from controller.openapi import document, operations
from tests.api.conftest import TOKEN
from tests.e2e.conftest import make_settings

SAMPLES = {"call_uuid": "3f1c9a52-0000-4000-8000-000000000001", "request_id": "req-7"}
BODIES = {"post": {"destination": "1000", "number": "+12025550123", "flow": "greeting"}}
WRONG = "api-test-token-4f9c2b7d1e8b"  # one character off


def _routes() -> list[tuple[str, str]]:
    """Every operation of the document, its path parameters filled in."""
    return [(op.method.upper(), re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], op.path))
            for op in operations(document())]


async def test_every_documented_route_refuses_a_request_without_the_right_token(api_rig):
    routes = _routes()
    assert len(routes) == 10
    for method, path in routes:
        for headers, why in (({}, None), ({"Authorization": f"Bearer {WRONG}"}, "invalid_token"),
                             ({"Authorization": f"Basic {TOKEN}"}, None), ({"Authorization": "Bearer "}, None),
                             ({"Authorization": TOKEN}, None), ({"Authorization": f"Bearer {TOKEN}x"}, "invalid_token"),
                             ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "invalid_token")):
            status, body, response = await api_rig.request(method, path, headers=headers, json=BODIES.get(method))
            assert status == 401, (method, path, headers)
            assert body["error"]["code"] == "unauthorized"
            challenge = response.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm="voxgate"')
            assert ('error="invalid_token"' in challenge) == (why == "invalid_token"), (headers, challenge)
        for scheme in ("Bearer", "bearer", "BEARER"):
            status, _, _ = await api_rig.request(method, path, headers={"Authorization": f"{scheme} {TOKEN}"},
                                                 json=BODIES.get(method))
            assert status != 401, (method, path, scheme)


async def test_unknown_routes_and_methods_answer_401_until_authenticated(api_rig):
    for method, path in (("GET", "/nothing-here"), ("DELETE", "/calls"), ("GET", "/../../etc/passwd")):
        status, body, _ = await api_rig.request(method, path, headers={})
        assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body, _ = await api_rig.request("GET", "/nothing-here")
    assert status == 404 and body == {"error": {"code": "not_found", "message": "Not Found"}}
    status, body, response = await api_rig.request("DELETE", "/calls")
    assert status == 405 and body["error"]["code"] == "method_not_allowed" and response.headers["Allow"] == "GET"
    async with api_rig.http.get(f"http://127.0.0.1:{api_rig.server.port}/") as response:
        assert response.status == 401


async def test_the_token_never_reaches_the_logs(api_rig, caplog):
    caplog.set_level(logging.DEBUG)
    for method, path in _routes():
        for token in (TOKEN, WRONG):
            await api_rig.request(method, path, headers={"Authorization": f"Bearer {token}"}, json=BODIES.get(method))
    await api_rig.request("POST", "/live-calls/x/transfer", data=b"not json")
    assert caplog.records  # the requests were logged (access log, warnings), without the token
    assert TOKEN not in caplog.text and WRONG not in caplog.text
    assert TOKEN not in repr(api_rig.controller.settings) and TOKEN not in "\n".join(
        api_rig.controller.settings.describe())


async def test_a_weak_or_missing_token_is_refused(sqlite_url):
    from controller.app import Controller
    from controller.config import ConfigError
    from controller.flows import builtin_flows

    with pytest.raises(ConfigError, match="VOXGATE_API_TOKEN: must be at least 16 characters"):
        make_settings(sqlite_url, VOXGATE_API="true", VOXGATE_API_TOKEN="secret")
    with pytest.raises(ConfigError, match="api_token .*required when api is true"):
        make_settings(sqlite_url, VOXGATE_API="true")
    with pytest.raises(ConfigError, match="VOXGATE_API_PORT: is the same as another listening port"):
        make_settings(sqlite_url, VOXGATE_API="true", VOXGATE_API_TOKEN=TOKEN, VOXGATE_API_PORT="8090",
                      VOXGATE_WS_PORT="8090")
    settings = make_settings(sqlite_url)
    assert (settings.api, settings.api_port, settings.api_token) == (False, 8088, None)
    controller = Controller(settings, builtin_flows())
    with pytest.raises(ValueError, match="needs api_token"):
        ApiServer(controller, settings)
    with pytest.raises(ValueError, match="at least 16 characters"):
        build_api(controller, "short")
