"""voxgate and the simulated Asterisk, wired over real sockets (AMI, AudioSocket, chan_websocket)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from controller.agent.conversation import Engines
from controller.app import Controller
from controller.flows import FlowRegistry, builtin_flows
from controller.records.migrate import upgrade
from controller.simulator.asterisk.fake_asterisk import FakeAsterisk
from controller.simulator.asterisk.websocket_client import WebSocketTarget
from tests.e2e.conftest import make_settings, stored_call

AMI_SECRET = "ami-secret-for-the-e2e-tests"
WS_USER, WS_PASSWORD = "asterisk", "ws-password-for-the-e2e-tests"
MEDIA = ["audiosocket", "audiosocket-dial", "websocket"]


@dataclass
class AsteriskRig:
    controller: Controller
    pbx: FakeAsterisk
    database_url: str

    async def call(self, script, *, media: str, flow: str = "greeting", **kw):
        return await self.pbx.place_call(script, media=media, flow=flow, **kw)

    async def finished(self, channel, timeout: float = 60) -> dict:
        """The call's CDR once the PBX hung up and voxgate stored it."""
        return await stored_call(self.controller, self.database_url, channel, timeout)


async def start_asterisk_rig(tmp_path: Path, database_url: str, *, flows: FlowRegistry | None = None,
                             engines: Engines | None = None, **env: str) -> AsteriskRig:
    upgrade(database_url)
    pbx = FakeAsterisk("voxgate", AMI_SECRET, tmp_dir=tmp_path)
    await pbx.start()
    settings = make_settings(database_url, VOXGATE_ASTERISK="true", VOXGATE_AMI_PORT=str(pbx.ami_port),
                             VOXGATE_AMI_SECRET=AMI_SECRET, VOXGATE_AUDIOSOCKET_PORT="0", VOXGATE_MEDIA_WS_PORT="0",
                             VOXGATE_MEDIA_WS_USERNAME=WS_USER, VOXGATE_MEDIA_WS_PASSWORD=WS_PASSWORD, **env)
    controller = Controller(settings, flows or builtin_flows(), engines=engines)
    await controller.start()
    assert controller.asterisk is not None
    pbx.audiosocket = ("127.0.0.1", controller.asterisk.audiosocket.port)
    pbx.websocket = WebSocketTarget(f"ws://127.0.0.1:{controller.asterisk.websocket.port}/media", WS_USER,
                                    WS_PASSWORD)
    await pbx.wait_for_manager()
    return AsteriskRig(controller, pbx, database_url)


async def stop_asterisk_rig(rig: AsteriskRig) -> None:
    await rig.pbx.stop()
    await rig.controller.stop()
