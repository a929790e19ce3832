"""POST /outbound-calls through the dialer, over the simulated FreeSWITCH's gateway carrier_a."""

from __future__ import annotations

import asyncio

from controller.http_api import ApiServer
from controller.simulator.callee import Answer, Busy
from tests.api.conftest import UNTIL_HANGUP


async def _until_done(rig, request_id: str, timeout: float = 20) -> dict:
    for _ in range(int(timeout / 0.05)):
        status, body = await rig.get(f"/outbound-calls/{request_id}")
        assert status == 200, body
        if body["status"] != "dialing":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"outbound request {request_id} still dialling")


async def test_an_outbound_call_is_answered_runs_its_flow_and_is_hung_up_through_the_api(dial_rig):
    dial_rig.sim.callees.script(Answer(UNTIL_HANGUP), trunk="carrier_a")
    status, body, response = await dial_rig.request("POST", "/outbound-calls", json={
        "number": "+12025550123", "flow": "hold", "variables": {"ticket": "T-42"}, "caller_id_number": "+15551230000",
        "request_id": "req-1"})
    assert status == 202, body
    assert response.headers["Location"] == "/api/v1/outbound-calls/req-1"
    assert (body["request_id"], body["status"], body["number"], body["flow"], body["pbx"]) == \
        ("req-1", "dialing", "+12025550123", "hold", "freeswitch")
    done = await _until_done(dial_rig, "req-1")
    assert done["status"] == "answered" and done["call_uuid"] and done["error"] is None
    call_uuid = done["call_uuid"]

    await dial_rig.live(call_uuid, answered=False)  # dialled calls reach voxgate answered
    status, live = await dial_rig.get("/live-calls")
    [call] = live["calls"]
    assert (call["call_uuid"], call["direction"], call["flow"]) == (call_uuid, "outbound", "hold")
    status, _ = await dial_rig.post(f"/live-calls/{call_uuid}/hangup")
    assert status == 202
    cdr = await dial_rig.stored(call_uuid)
    assert cdr["variables"]["voxgate_request_id"] == "req-1" and cdr["variables"]["ticket"] == "T-42"
    [dialled] = dial_rig.sim.callees.dialled
    assert (dialled.trunk, dialled.number) == ("carrier_a", "+12025550123")

    await dial_rig.controller.writer.flush()
    status, after = await dial_rig.get("/outbound-calls/req-1")
    [attempt] = after["attempts"]
    assert (attempt["trunk"], attempt["outcome"], attempt["call_uuid"]) == ("carrier_a", "answered", call_uuid)


async def test_a_busy_number_ends_the_request_busy_with_every_try_listed(dial_rig):
    dial_rig.sim.callees.script(Busy(), trunk="carrier_a")
    status, body = await dial_rig.post("/outbound-calls", json={"number": "+12025550199", "flow": "greeting",
                                                                "retries": 1})
    assert status == 202
    done = await _until_done(dial_rig, body["request_id"])
    assert done["status"] == "busy" and done["call_uuid"] is None
    await dial_rig.controller.writer.flush()
    status, done = await dial_rig.get(f"/outbound-calls/{body['request_id']}")
    assert [(a["attempt"], a["outcome"], a["cause"]) for a in done["attempts"]] == \
        [(1, "busy", "USER_BUSY"), (2, "busy", "USER_BUSY")]


async def test_a_request_this_process_forgot_is_read_back_from_its_tries(dial_rig):
    dial_rig.sim.callees.script(Busy(), trunk="carrier_a")
    status, body = await dial_rig.post("/outbound-calls", json={"number": "+12025550199", "flow": "greeting",
                                                                "retries": 0, "request_id": "old-1"})
    await _until_done(dial_rig, "old-1")
    await dial_rig.controller.writer.flush()
    await dial_rig.server.stop()  # a new server remembers no request, as after a restart
    dial_rig.server = ApiServer(dial_rig.controller)
    await dial_rig.server.start()
    status, first = await dial_rig.get("/outbound-calls/old-1")
    assert first["status"] == "busy" and first["number"] == "+12025550199" and first["flow"] == "greeting"
    status, again = await dial_rig.post("/outbound-calls", json={"number": "+12025550199", "flow": "greeting",
                                                                 "request_id": "old-1"})
    assert status == 409 and again["error"]["field"] == "request_id"


async def test_invalid_requests_are_422_naming_the_field_and_nothing_is_dialled(dial_rig):
    cases = [
        ({"number": "+1 555", "flow": "greeting"}, "number"),
        ({"number": "+12025550123", "flow": "nosuchflow"}, "flow"),
        ({"flow": "greeting"}, "number"),
        ({"number": "+12025550123"}, "flow"),
        ({"number": "+12025550123", "flow": "greeting", "variables": {"voxgate_flow": "x"}}, "variables.voxgate_flow"),
        ({"number": "+12025550123", "flow": "greeting", "variables": {"ok": "a,b"}}, "variables.ok"),
        ({"number": "+12025550123", "flow": "greeting", "trunks": ["carrier a"]}, "trunks[0]"),
        ({"number": "+12025550123", "flow": "greeting", "retries": 21}, "retries"),
        ({"number": "+12025550123", "flow": "greeting", "retries": True}, "retries"),
        ({"number": "+12025550123", "flow": "greeting", "pbx": "asterisk"}, "pbx"),  # Asterisk is not set up here
        ({"number": "+12025550123", "flow": "greeting", "caller_id_number": "abc"}, "caller_id_number"),
        ({"number": "+12025550123", "flow": "greeting", "callerid": "x"}, "callerid"),
    ]
    for body, field in cases:
        status, answer = await dial_rig.post("/outbound-calls", json=body)
        assert status == 422 and answer["error"]["field"] == field, (body, answer)
    assert dial_rig.sim.callees.dialled == []


async def test_the_document_lists_the_flows_and_pbxs_outbound_calls_can_use(dial_rig):
    status, doc = await dial_rig.get("/openapi.json")
    body = doc["paths"]["/outbound-calls"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]["flow"]["enum"]) == set(dial_rig.controller.flows.names) >= {"hold", "greeting"}
    assert body["properties"]["pbx"]["enum"] == ["freeswitch"]


async def test_without_a_pbx_to_dial_through_outbound_calls_are_503(api_rig):
    status, body = await api_rig.post("/outbound-calls", json={"number": "+12025550123", "flow": "greeting"})
    assert status == 503 and body["error"]["code"] == "unavailable"
    assert "outbound calling is not configured" in body["error"]["message"]
    status, body = await api_rig.get("/outbound-calls/never-made")
    assert status == 404 and body["error"]["field"] == "request_id"


async def test_a_draining_instance_dials_nothing_more(dial_rig):
    dial_rig.sim.callees.script(Answer(UNTIL_HANGUP))
    dial_rig.controller.state = "draining"  # as stop() sets it first: an answered leg could not come back
    status, body = await dial_rig.post("/outbound-calls", json={"number": "+12025550123", "flow": "hold",
                                                                "request_id": "drain-1"})
    assert status == 503 and "draining" in body["error"]["message"], body
    assert dial_rig.sim.callees.dialled == []
    status, _ = await dial_rig.get("/health/ready")
    assert status == 503
    dial_rig.controller.state = "ready"
