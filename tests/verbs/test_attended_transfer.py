"""Attended transfer on the simulated FreeSWITCH: caller on hold, consult leg dialled over a gateway,
bridged at the PBX (uuid_bridge) when the consulted party presses 1, else the caller taken back."""

from __future__ import annotations

import asyncio

import pytest

from controller import prompts
from controller.app import Controller
from controller.flows import FlowRegistry
from controller.records.migrate import upgrade
from controller.records.store import list_rows
from controller.simulator.caller import CallerScript, Dtmf, Listen, Wait, WaitFor
from controller.simulator.callee import Answer, Busy, NoAnswer
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from controller.verbs.music import hold_music
from tests.audio_match import locate
from tests.e2e.conftest import SIM_PASSWORD, make_settings, stored_call
from tests.outbound.conftest import NUMBER, TRUNKS, OutboundRig

PROMPT = prompts.load("greeting")


def consulted(key: str) -> CallerScript:
    """The consulted party hears the announcement, presses `key`, stays until hung up or bridged away."""
    return CallerScript([Listen(0.5, timeout=15), Dtmf(key), WaitFor("hangup", timeout=20)])


def attended_flow(kept: dict) -> FlowRegistry:
    """The flow under test on every PBX: an attended transfer to NUMBER; the result is kept for the test."""
    flows = FlowRegistry()

    @flows.register("attended")
    async def attended(call) -> str:
        await call.answer()
        result = await call.transfer(NUMBER, attended=True, timeout_s=10, reason="test")
        kept["result"] = result
        if not result.accepted:
            await call.play_audio(*PROMPT)  # the flow goes on: the caller hears it
            return "returned"
        return "transferred"
    return flows


async def start(tmp_path, database_url, kept: dict) -> OutboundRig:
    flows = attended_flow(kept)
    upgrade(database_url)
    switch = FakeFreeSwitch(SIM_PASSWORD, tmp_dir=tmp_path, gateways=TRUNKS)
    await switch.start()
    settings = make_settings(database_url, VOXGATE_ESL_INBOUND="true", VOXGATE_ESL_PORT=str(switch.esl_port),
                             VOXGATE_ESL_PASSWORD=SIM_PASSWORD, VOXGATE_FREESWITCH_TRUNKS=TRUNKS[0],
                             VOXGATE_CALLER_ID_NUMBER="+12025550100", VOXGATE_DIAL_RETRIES="0")
    controller = Controller(settings, flows)
    await controller.start()
    await asyncio.wait_for(controller.inbound.connected.wait(), 5)
    return OutboundRig(controller, switch, database_url)


@pytest.fixture
async def rig_kept(tmp_path, sqlite_url):
    kept: dict = {}
    rig = await start(tmp_path, sqlite_url, kept)
    yield rig, kept
    await rig.pbx.stop()
    await rig.controller.stop()


async def place(rig: OutboundRig, steps):
    return await rig.pbx.place_call(steps, variables={"voxgate_flow": "attended"}, caller_id_number="+12025550111",
                                    outbound_socket=("127.0.0.1", rig.controller.outbound.port))


async def test_accepted_consult_bridges_the_caller_with_the_leg(rig_kept):
    rig, kept = rig_kept
    rig.pbx.callees.script(Answer(consulted("1")))
    caller = await place(rig, [WaitFor("answer"), WaitFor("hangup", timeout=30)])
    for _ in range(200):
        if "result" in kept:
            break
        await asyncio.sleep(0.05)
    result = kept["result"]
    assert (result.accepted, result.outcome) == (True, "bridged"), result
    leg_uuid = rig.pbx.bridged[caller.uuid]
    assert rig.pbx.bridged[leg_uuid] == caller.uuid
    leg = rig.pbx.channels.get(leg_uuid)
    _, score = locate(hold_music(8000).data[:8000], bytes(caller.heard))
    assert score > 0.9, f"the caller did not hear hold music ({score:.2f})"
    assert leg is None or len(leg.heard) > 8000
    cdr = await stored_call(rig.controller, rig.database_url, caller, timeout=30)
    assert cdr["outcome"] == "transferred"
    leg_cdr = await rig.cdr(leg_uuid)
    assert leg_cdr["outcome"] == "transferred" and leg_cdr["flow"] == "voxgate.leg"
    await rig.controller.writer.flush()
    rows = list_rows(rig.database_url, "transfers", caller.uuid)
    assert [(r["kind"], r["outcome"], r["destination"]) for r in rows] == [("attended", "accepted", NUMBER)]


@pytest.mark.parametrize("callee, outcome", [(Answer(consulted("2")), "declined"), (Busy(ring_s=0.2), "busy"),
                                             (NoAnswer(), "no_answer")])
async def test_a_transfer_not_taken_gives_the_caller_back(rig_kept, callee, outcome):
    rig, kept = rig_kept
    rig.pbx.callees.script(callee)
    caller = await place(rig, [WaitFor("answer"), WaitFor("hangup", timeout=30)])
    cdr = await stored_call(rig.controller, rig.database_url, caller, timeout=40)
    assert kept["result"].outcome == outcome and not kept["result"].accepted
    assert cdr["outcome"] == "returned" and not rig.pbx.bridged
    assert len(caller.heard) > 0
    await rig.controller.writer.flush()
    rows = list_rows(rig.database_url, "transfers", caller.uuid)
    assert [(r["kind"], r["outcome"], r["destination"]) for r in rows] == [("attended", outcome, NUMBER)]
    assert rows[0]["error"] == kept["result"].detail
    assert not [c for c in rig.pbx.channels.values() if c.uuid != caller.uuid and not c.hung_up]


async def test_the_caller_hanging_up_during_the_consult_hangs_up_the_leg(rig_kept):
    rig, kept = rig_kept
    rig.pbx.callees.script(Answer(CallerScript([WaitFor("hangup", timeout=30)])))
    caller = await place(rig, [WaitFor("answer"), Wait(2.5)])
    await stored_call(rig.controller, rig.database_url, caller, timeout=30)
    for _ in range(100):
        if not [c for c in rig.pbx.channels.values() if not c.hung_up]:
            break
        await asyncio.sleep(0.05)
    assert not [c for c in rig.pbx.channels.values() if not c.hung_up], "the consult leg is still up"
    assert [d.number for d in rig.pbx.callees.dialled] == [NUMBER]
