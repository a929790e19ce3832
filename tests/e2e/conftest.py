"""voxgate and the simulated FreeSWITCH, wired over real sockets."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.agent.conversation import Engines
from controller.app import Controller
from controller.config import load_settings
from controller.flows import FlowRegistry, builtin_flows
from controller.records.migrate import upgrade
from controller.simulator.fake_freeswitch import FakeFreeSwitch

SIM_PASSWORD = "sim-password-for-tests"


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


@pytest.fixture(params=["streaming", "classic"])
async def rig(request, tmp_path, sqlite_url):
    rig = await start_rig(tmp_path, sqlite_url, mode=request.param)
    yield rig
    await stop_rig(rig)
