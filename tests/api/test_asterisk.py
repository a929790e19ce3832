"""The same live-call API on the simulated Asterisk: the calls are PBX-neutral to it."""

from __future__ import annotations

import asyncio

import aiohttp

from controller.http_api import ApiServer
from controller.records.store import list_rows
from controller.simulator.caller import CallerScript, WaitFor
from tests.api.conftest import AUTH, TOKEN, api_flows
from tests.e2e.asterisk_rig import start_asterisk_rig, stop_asterisk_rig
from tests.e2e.conftest import stored_call


async def _live(controller, call_uuid: str) -> None:
    for _ in range(200):
        if call_uuid in controller.calls:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {call_uuid} never reached voxgate")


async def test_asterisk_calls_are_listed_hung_up_and_transferred(tmp_path, sqlite_url):
    rig = await start_asterisk_rig(tmp_path, sqlite_url, flows=api_flows(), VOXGATE_API="true",
                                   VOXGATE_API_PORT="0", VOXGATE_API_TOKEN=TOKEN)
    server = ApiServer(rig.controller)
    await server.start()
    base = f"http://127.0.0.1:{server.port}/api/v1"
    script = CallerScript([WaitFor("answer", timeout=10), WaitFor("hangup", timeout=30)])
    try:
        async with aiohttp.ClientSession(headers=AUTH) as http:
            ended = await rig.call(script, media="audiosocket", flow="hold")
            moved = await rig.call(script, media="websocket", flow="hold", destination="5000")
            await asyncio.gather(_live(rig.controller, ended.uniqueid), _live(rig.controller, moved.uniqueid))
            async with http.get(f"{base}/live-calls") as response:
                live = (await response.json())["calls"]
            assert {(c["call_uuid"], c["pbx"]) for c in live} == {(ended.uniqueid, "asterisk"),
                                                                  (moved.uniqueid, "asterisk")}

            async with http.post(f"{base}/live-calls/{ended.uniqueid}/hangup", json={"cause": "USER_BUSY"}) as r:
                assert r.status == 202
            async with http.post(f"{base}/live-calls/{moved.uniqueid}/transfer", json={"destination": "1000"}) as r:
                assert r.status == 202
            cdr = await stored_call(rig.controller, sqlite_url, ended, 20)
            assert cdr["hangup_cause"] == "USER_BUSY"
            assert moved.redirects == [("voxgate-transfer", "1000", 1)]
            async with http.post(f"{base}/live-calls/{moved.uniqueid}/hangup") as r:
                assert r.status == 409
        await rig.controller.writer.flush()
        [transfer] = list_rows(sqlite_url, "transfers", moved.uniqueid)
        assert (transfer["destination"], transfer["reason"], transfer["outcome"]) == ("1000", "api", "accepted")
    finally:
        await server.stop()
        await stop_asterisk_rig(rig)
