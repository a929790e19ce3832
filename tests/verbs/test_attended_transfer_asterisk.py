"""Attended transfer on the simulated Asterisk: the caller hears hold music while the consult leg is dialled
with AMI Originate; on 1 the two are joined with AMI Bridge, on 2 the caller is taken back."""

from __future__ import annotations

import asyncio

import pytest

from controller.records.store import list_rows
from controller.simulator.caller import WaitFor
from controller.simulator.callee import Answer
from controller.verbs.music import hold_music
from tests.audio_match import locate
from tests.e2e.asterisk_rig import start_asterisk_rig, stop_asterisk_rig
from tests.outbound.conftest import NUMBER, TRUNKS
from tests.verbs.test_attended_transfer import attended_flow, consulted


@pytest.fixture(params=["audiosocket", "websocket"])
async def rig_kept(request, tmp_path, sqlite_url):
    kept: dict = {"media": request.param}
    rig = await start_asterisk_rig(
        tmp_path, sqlite_url, flows=attended_flow(kept), VOXGATE_ASTERISK_TRUNKS=TRUNKS[0],
        VOXGATE_ASTERISK_OUTBOUND_CONTEXT="voxgate", VOXGATE_CALLER_ID_NUMBER="+12025550100",
        VOXGATE_DIAL_RETRIES="0")
    yield rig, kept
    await stop_asterisk_rig(rig)


async def _place(rig, kept: dict):
    return await rig.call([WaitFor("answer"), WaitFor("hangup", timeout=30)], media=kept["media"], flow="attended",
                          caller_id_number="+12025550111")


async def _result(kept: dict):
    for _ in range(400):
        if "result" in kept:
            return kept["result"]
        await asyncio.sleep(0.05)
    raise AssertionError("the flow never finished its transfer")


async def test_accepted_consult_bridges_the_caller_with_the_leg_over_ami(rig_kept):
    rig, kept = rig_kept
    rig.pbx.callees.script(Answer(consulted("1")))
    caller = await _place(rig, kept)
    result = await _result(kept)
    assert (result.accepted, result.outcome) == (True, "bridged"), result
    leg = next(c for c in rig.pbx.calls if c.uniqueid == caller.bridged_to)
    assert leg.bridged_to == caller.uniqueid and leg.name.startswith(f"PJSIP/{NUMBER}@{TRUNKS[0]}")
    _, score = locate(hold_music(8000).data[8000:16000], bytes(caller.heard))
    assert score > 0.9, f"the caller did not hear hold music ({score:.2f})"
    cdr = await rig.finished(caller, timeout=30)
    assert cdr["outcome"] == "transferred"
    await rig.controller.writer.flush()
    rows = list_rows(rig.database_url, "transfers", caller.uniqueid)
    assert [(r["kind"], r["outcome"], r["destination"]) for r in rows] == [("attended", "accepted", NUMBER)]


async def test_a_declined_consult_takes_the_caller_back_off_hold(rig_kept):
    rig, kept = rig_kept
    rig.pbx.callees.script(Answer(consulted("2")))
    caller = await _place(rig, kept)
    result = await _result(kept)
    assert (result.accepted, result.outcome) == (False, "declined"), result
    cdr = await rig.finished(caller, timeout=30)
    assert cdr["outcome"] == "returned" and caller.bridged_to is None
    _, score = locate(hold_music(8000).data[8000:16000], bytes(caller.heard))
    assert score > 0.9, f"the caller did not hear hold music ({score:.2f})"
    assert not [c for c in rig.pbx.calls if c is not caller and not c.ended.is_set()], "the consult leg is still up"
    await rig.controller.writer.flush()
    rows = list_rows(rig.database_url, "transfers", caller.uniqueid)
    assert [(r["kind"], r["outcome"]) for r in rows] == [("attended", "declined")]
