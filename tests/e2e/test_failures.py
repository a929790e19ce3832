"""Bad things during calls: a failing flow, an unknown flow, the ESL socket cut; one call never hurts another."""

from __future__ import annotations

import asyncio

from controller.flows import FlowRegistry, builtin_flows
from controller.records.store import list_calls
from controller.simulator.caller import CallerScript, Wait, WaitFor
from tests.e2e.conftest import start_rig, stop_rig
from tests.e2e.test_call import _finished, _typing


def _flows_with_a_broken_one() -> FlowRegistry:
    flows = builtin_flows()

    @flows.register("broken")
    async def broken(call):
        await call.answer()
        raise RuntimeError("the flow's own bug")

    return flows


async def test_a_failing_flow_ends_only_its_own_call(tmp_path, sqlite_url):
    rig = await start_rig(tmp_path, sqlite_url, flows=_flows_with_a_broken_one())
    try:
        good = asyncio.create_task(rig.call(_typing("12#")))
        bad = await rig.call(CallerScript([WaitFor("hangup", timeout=20)]), flow="broken")
        bad_cdr = await _finished(rig, bad)
        good_cdr = await _finished(rig, await good)
    finally:
        await stop_rig(rig)
    assert bad_cdr["outcome"] == "error" and "the flow's own bug" in bad_cdr["error"]
    assert bad_cdr["hangup_cause"] == "NORMAL_TEMPORARY_FAILURE"
    assert good_cdr["outcome"] == "completed" and good_cdr["variables"]["entered_digits"] == "12"
    assert rig.controller.stats.failed == 1


async def test_unknown_flow_is_an_error_record(tmp_path, sqlite_url):
    rig = await start_rig(tmp_path, sqlite_url)
    try:
        channel = await rig.call(CallerScript([WaitFor("hangup", timeout=20)]), flow="nope")
        cdr = await _finished(rig, channel)
    finally:
        await stop_rig(rig)
    assert cdr["outcome"] == "error" and "unknown flow 'nope'" in cdr["error"]


async def test_esl_socket_cut_mid_call_still_leaves_a_record(tmp_path, sqlite_url):
    rig = await start_rig(tmp_path, sqlite_url)
    try:
        other = asyncio.create_task(rig.call(_typing("9#")))
        script = CallerScript([WaitFor("answer", timeout=10), Wait(1.0), WaitFor("hangup", timeout=30)])
        victim = await rig.call(script)
        await asyncio.sleep(1.0)
        victim.drop_outbound_socket()  # the TCP connection dies without a goodbye
        for _ in range(100):
            rows = [r for r in list_calls(rig.database_url) if r["call_uuid"] == victim.uuid]
            if rows:
                break
            await rig.controller.writer.flush()
            await asyncio.sleep(0.1)
        other_cdr = await _finished(rig, await other)
    finally:
        await stop_rig(rig)
    assert rows, "no record for the call whose ESL socket was cut"
    assert rows[0]["hangup_cause"] == "ESL_CONNECTION_LOST"
    assert "CHANNEL_HANGUP_COMPLETE not received" in rows[0]["error"]
    assert other_cdr["outcome"] == "completed"


async def test_many_concurrent_calls_each_get_their_own_digits(tmp_path, sqlite_url):
    rig = await start_rig(tmp_path, sqlite_url)
    try:
        numbers = [f"{n}{n}#" for n in range(1, 9)]
        channels = await asyncio.gather(*(rig.call(_typing(d)) for d in numbers))
        cdrs = [await _finished(rig, c, timeout=60) for c in channels]
    finally:
        await stop_rig(rig)
    assert [c["variables"]["entered_digits"] for c in cdrs] == [d[:-1] for d in numbers]
    assert all(c["outcome"] == "completed" for c in cdrs)
