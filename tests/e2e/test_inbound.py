"""Inbound ESL mode against the simulator: parked calls, bgapi jobs, a cut connection mid-call."""

from __future__ import annotations

import asyncio

import pytest

from controller.app import Controller
from controller.flows import builtin_flows
from controller.records.migrate import upgrade
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.e2e.conftest import SIM_PASSWORD, Rig, make_settings
from tests.e2e.test_call import _finished, _typing


@pytest.fixture
async def parked_rig(tmp_path, sqlite_url):
    upgrade(sqlite_url)
    sim = FakeFreeSwitch(password=SIM_PASSWORD, tmp_dir=tmp_path)
    await sim.start()
    settings = make_settings(sqlite_url, VOXGATE_ESL_INBOUND="true", VOXGATE_ESL_PORT=str(sim.esl_port),
                             VOXGATE_ESL_PASSWORD=SIM_PASSWORD)
    controller = Controller(settings, builtin_flows())
    await controller.start()
    await asyncio.wait_for(controller.inbound.connected.wait(), 5)
    yield Rig(controller, sim, sqlite_url)
    await sim.stop()
    await controller.stop()


async def test_parked_call_is_picked_up_and_answered(parked_rig):
    channel = await parked_rig.sim.place_call(_typing("55#"), variables={"voxgate_flow": "greeting"})
    cdr = await _finished(parked_rig, channel)
    assert cdr["outcome"] == "completed" and cdr["variables"]["entered_digits"] == "55"
    assert cdr["answered_at"] is not None


async def test_parked_call_without_voxgate_flow_is_left_alone(parked_rig):
    channel = await parked_rig.sim.place_call([], variables={"other": "x"})
    await asyncio.sleep(0.5)
    assert channel.uuid not in parked_rig.controller.calls and channel.answered_at is None


async def test_bgapi_job_is_matched_by_job_uuid(parked_rig):
    inbound = parked_rig.controller.inbound
    status, version = await asyncio.gather(inbound.bgapi("status"), inbound.bgapi("version"))
    assert "is ready" in status and version.startswith("FreeSWITCH Version")


async def test_call_survives_an_esl_reconnect(parked_rig):
    channel = await parked_rig.sim.place_call(_typing("31#"), variables={"voxgate_flow": "greeting"})
    for _ in range(50):
        if channel.uuid in parked_rig.controller.calls and channel.answered_at:
            break
        await asyncio.sleep(0.1)
    for session in list(parked_rig.sim._server.sessions):
        session.abort()  # FreeSWITCH's side of the event socket dies mid-greeting
    for _ in range(50):
        if parked_rig.controller.inbound.reconnects == 1 and parked_rig.controller.inbound.connected.is_set():
            break
        await asyncio.sleep(0.1)
    assert channel.uuid in parked_rig.controller.calls  # resync kept the call
    cdr = await _finished(parked_rig, channel)
    assert parked_rig.controller.inbound.reconnects == 1
    assert cdr["outcome"] == "completed" and cdr["variables"]["entered_digits"] == "31"
