"""voxgate and the simulated PBXs, wired over real sockets.

The FreeSWITCH rig lives here, the Asterisk one in asterisk_rig.py, and pbx_rig.py puts either
behind one face. Fixtures: `rig` is FreeSWITCH in both fork modes; `any_pbx` is every setup of
PBX_SETUPS, and `pbx_setup` its name, for tests that start a rig of their own (custom flows, engines).
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.agent.conversation import Engines
from controller.app import Controller
from controller.config import load_settings
from controller.flows import FlowRegistry, builtin_flows
from controller.records.migrate import upgrade
from controller.records.store import list_calls
from controller.simulator.asterisk.channel import CallerChannel
from controller.simulator.channel import SimChannel
from controller.simulator.fake_freeswitch import FakeFreeSwitch

SIM_PASSWORD = "sim-password-for-tests"
PBX_SETUPS = ("fs-streaming", "fs-classic", "ast-audiosocket", "ast-audiosocket-dial", "ast-websocket")


@dataclass
class Rig:
    controller: Controller
    sim: FakeFreeSwitch
    database_url: str

    async def call(self, script, *, flow: str = "greeting", **kw):
        variables = {"voxgate_flow": flow, **kw.pop("variables", {})}
        return await self.sim.place_call(script, variables=variables,
                                         outbound_socket=("127.0.0.1", self.controller.outbound.port), **kw)


def make_settings(database_url: str, **env: str):
    base = {"VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0", "VOXGATE_DATABASE_URL": database_url,
            "VOXGATE_TOKEN_SECRET": "e2e-token-secret-0123456789", "VOXGATE_INSTANCE_ID": "e2e",
            "VOXGATE_PRELOAD_ENGINES": "false", "VOXGATE_JOURNAL_DIR": tempfile.mkdtemp(prefix="voxgate-journal-")}
    return load_settings({**base, **env})


async def start_rig(tmp_path: Path, database_url: str, *, mode: str = "streaming", flows: FlowRegistry | None = None,
                    speed: float = 1.0, engines: Engines | None = None, **env: str) -> Rig:
    upgrade(database_url)
    settings = make_settings(database_url, VOXGATE_AUDIO_FORK_MODE=mode, **env)
    controller = Controller(settings, flows or builtin_flows(), engines=engines)
    await controller.start()
    sim = FakeFreeSwitch(password=SIM_PASSWORD, tmp_dir=tmp_path,
                         generation="jambonz" if mode == "streaming" else "classic", speed=speed)
    await sim.start()
    return Rig(controller, sim, database_url)


async def stop_rig(rig: Rig) -> None:
    await rig.sim.stop()
    await rig.controller.stop()


async def stored_call(controller: Controller, database_url: str, channel: SimChannel | CallerChannel,
                      timeout: float = 60) -> dict:
    """A call's CDR once the PBX hung up and voxgate stored it (channel: either PBX's caller channel)."""
    await asyncio.wait_for(channel.ended.wait(), timeout)
    for _ in range(200):
        await controller.writer.flush()
        rows = [r for r in list_calls(database_url) if r["call_uuid"] == channel.uuid]
        if rows:
            return rows[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no CDR written for call {channel.uuid}")


@pytest.fixture(params=["streaming", "classic"])
async def rig(request, tmp_path, sqlite_url):
    rig = await start_rig(tmp_path, sqlite_url, mode=request.param)
    yield rig
    await stop_rig(rig)


@pytest.fixture(params=PBX_SETUPS)
def pbx_setup(request) -> str:
    return request.param


@pytest.fixture
async def any_pbx(pbx_setup, tmp_path, sqlite_url):
    from tests.e2e.pbx_rig import start_pbx_rig, stop_pbx_rig  # pbx_rig builds on this module: imported late

    rig = await start_pbx_rig(pbx_setup, tmp_path, sqlite_url)
    yield rig
    await stop_pbx_rig(rig)
