"""Live calls through the API: listed while up, hung up or transferred on the simulated FreeSWITCH."""

from __future__ import annotations

import asyncio

from controller.openapi import MAX_BODY_BYTES
from controller.records.store import list_rows
from tests.api.conftest import AUTH


async def test_a_live_call_is_listed_then_hung_up_with_the_cause_given(api_rig):
    channel = await api_rig.place(caller_id_number="15551230042", destination="7000")
    await api_rig.live(channel.uuid)
    status, body = await api_rig.get("/live-calls")
    assert status == 200
    [live] = body["calls"]
    assert (live["call_uuid"], live["flow"], live["pbx"], live["caller_id_number"], live["destination"]) == \
        (channel.uuid, "hold", "freeswitch", "15551230042", "7000")
    assert live["answered_at"] is not None

    status, body = await api_rig.post(f"/live-calls/{channel.uuid}/hangup", json={"cause": "CALL_REJECTED"})
    assert status == 202 and body == {"call_uuid": channel.uuid, "action": "hangup", "cause": "CALL_REJECTED"}
    await asyncio.wait_for(channel.ended.wait(), 10)
    cdr = await api_rig.stored(channel.uuid)
    assert cdr["hangup_cause"] == "CALL_REJECTED" and channel.hangup_cause == "CALL_REJECTED"
    status, body = await api_rig.get("/live-calls")
    assert body["calls"] == []

    status, body = await api_rig.post(f"/live-calls/{channel.uuid}/hangup")
    assert status == 409 and body["error"]["code"] == "conflict" and "ended" in body["error"]["message"]
    status, body = await api_rig.get(f"/calls/{channel.uuid}")
    assert status == 200 and body["call"]["hangup_cause"] == "CALL_REJECTED"


async def test_hangup_without_a_body_clears_normally_and_other_calls_go_on(api_rig):
    one, two = await api_rig.place(), await api_rig.place()
    await asyncio.gather(api_rig.live(one.uuid), api_rig.live(two.uuid))
    status, body = await api_rig.get("/live-calls")
    assert {call["call_uuid"] for call in body["calls"]} == {one.uuid, two.uuid}
    status, body = await api_rig.post(f"/live-calls/{one.uuid}/hangup")
    assert status == 202 and body["cause"] == "NORMAL_CLEARING"
    await asyncio.wait_for(one.ended.wait(), 10)
    await asyncio.sleep(0.2)
    assert not two.ended.is_set() and two.uuid in api_rig.controller.calls
    status, body = await api_rig.get("/live-calls")
    assert [call["call_uuid"] for call in body["calls"]] == [two.uuid]


async def test_a_live_call_is_transferred_and_leaves_voxgate(api_rig):
    channel = await api_rig.place()
    await api_rig.live(channel.uuid)
    status, body = await api_rig.post(f"/live-calls/{channel.uuid}/transfer",
                                      json={"destination": "1000", "reason": "wants sales"})
    assert status == 202 and body == {"call_uuid": channel.uuid, "action": "transfer", "destination": "1000"}
    assert channel.transferred_to == "1000"
    status, body = await api_rig.post(f"/live-calls/{channel.uuid}/transfer", json={"destination": "2000"})
    assert status == 409 and "transferred to 1000" in body["error"]["message"]
    # The CDR's outcome is not checked: FreeSwitchCall.transfer marks the call transferred only once the PBX's
    # reply is in, which can come after the hangup the transfer causes here (then the outcome is the flow's own).
    await api_rig.stored(channel.uuid)
    [transfer] = list_rows(api_rig.database_url, "transfers", channel.uuid)
    assert (transfer["destination"], transfer["reason"], transfer["outcome"]) == ("1000", "wants sales", "accepted")
    status, body = await api_rig.post(f"/live-calls/{channel.uuid}/hangup")
    assert status == 409


async def test_a_transfer_without_a_reason_is_recorded_as_asked_through_the_api(api_rig):
    channel = await api_rig.place()
    await api_rig.live(channel.uuid)
    status, _ = await api_rig.post(f"/live-calls/{channel.uuid}/transfer", json={"destination": "*97"})
    assert status == 202
    await api_rig.stored(channel.uuid)
    [transfer] = list_rows(api_rig.database_url, "transfers", channel.uuid)
    assert (transfer["destination"], transfer["reason"]) == ("*97", "api")


async def test_unknown_calls_are_404(api_rig):
    for action, body in (("hangup", None), ("transfer", {"destination": "1000"})):
        status, answer = await api_rig.post(f"/live-calls/0b7c-unknown/{action}", json=body)
        assert status == 404 and answer["error"]["field"] == "call_uuid"


async def test_bad_bodies_are_refused_and_the_call_stays_up(api_rig):
    channel = await api_rig.place()
    await api_rig.live(channel.uuid)
    path = f"/live-calls/{channel.uuid}/transfer"
    for body, field in (({"destination": "10 00"}, "destination"), ({"destination": "1000,2000"}, "destination"),
                        ({}, "destination"), ({"destination": 1000}, "destination"),
                        ({"destination": "1000", "extra": 1}, "extra"), ({"destination": "1", "reason": "x" * 201},
                                                                          "reason")):
        status, answer = await api_rig.post(path, json=body)
        assert status == 422 and answer["error"]["field"] == field, (body, answer)
    status, answer = await api_rig.post(path, json=["1000"])
    assert status == 422 and "must be an object" in answer["error"]["message"]
    status, answer = await api_rig.post(f"/live-calls/{channel.uuid}/hangup", json={"cause": "WHATEVER"})
    assert status == 422 and answer["error"]["field"] == "cause"
    status, answer = await api_rig.post(path, data=b"{destination: 1000}", headers={**AUTH, "Content-Type":
                                                                                      "application/json"})
    assert status == 400 and answer["error"]["code"] == "bad_request"
    status, answer = await api_rig.post(path, data=b'{"destination": NaN}', headers=AUTH)
    assert status == 400
    status, answer = await api_rig.post(path, data=b"[" * 5000 + b"]" * 5000, headers=AUTH)
    assert status == 400
    status, answer = await api_rig.post(path, json={"destination": "1000", "reason": "x" * MAX_BODY_BYTES})
    assert status == 413 and answer["error"]["code"] == "too_large"
    status, answer = await api_rig.post(path, data=_chunks(MAX_BODY_BYTES + 10), headers=AUTH)
    assert status == 413  # no Content-Length: refused while reading
    assert not channel.ended.is_set() and channel.transferred_to is None


async def _chunks(size: int):
    for _ in range(size // 1024 + 1):
        yield b" " * 1024
