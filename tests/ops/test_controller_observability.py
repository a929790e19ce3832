"""A real call through a controller with the HTTP API and a webhook endpoint: signed events arrive in
order, and /metrics counts the call behind the API token."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from controller.simulator.caller import CallerScript, Dtmf, Wait, WaitFor
from controller.webhooks import verify
from tests.e2e.conftest import start_rig, stop_rig
from tests.e2e.test_call import GREETING_S
from tests.webhooks.conftest import SECRET, make_receiver  # noqa: F401 (fixture)

TOKEN = "api-token-for-the-observability-test"


async def test_webhooks_and_metrics_follow_a_call(tmp_path, sqlite_url, make_receiver):  # noqa: F811
    receiver = await make_receiver()
    hooks = json.dumps([{"url": receiver.url, "secret": SECRET}])
    rig = await start_rig(tmp_path, sqlite_url, VOXGATE_API="true", VOXGATE_API_PORT="0", VOXGATE_API_TOKEN=TOKEN,
                          VOXGATE_WEBHOOKS=hooks)
    try:
        channel = await rig.call(CallerScript([WaitFor("answer", timeout=10), Wait(GREETING_S + 0.5), Dtmf("5#"),
                                               WaitFor("hangup", timeout=30)]))
        await asyncio.wait_for(channel.ended.wait(), 30)
        async with asyncio.timeout(10):
            while not any(json.loads(r.body)["type"] == "call.ended" for r in receiver.requests):
                await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{rig.controller.api.port}/metrics"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as anonymous:
                refused = anonymous.status
            async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                text = await response.text()
    finally:
        await stop_rig(rig)

    events = [json.loads(r.body) for r in receiver.requests]
    assert [e["type"] for e in events] == ["call.started", "call.answered", "call.ended"], events
    assert all(verify(SECRET, r.headers["Voxgate-Signature"], r.body) for r in receiver.requests)
    ended = events[-1]["data"]
    assert ended["call_uuid"] == channel.uuid and ended["outcome"] == "completed"
    assert ended["variables"]["entered_digits"] == "5"
    assert refused == 401
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    key = ("voxgate_calls_total", (("flow", "greeting"), ("outcome", "completed"), ("pbx", "freeswitch")))
    assert samples[key] == 1
