"""voxgate dialling out through the simulated FreeSWITCH and Asterisk, over real sockets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from controller.app import Controller
from controller.flows import load_flows
from controller.records.migrate import upgrade
from controller.records.store import list_attempts, list_calls
from controller.simulator.caller import CallerScript, Dtmf, Listen, WaitFor
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.e2e.conftest import SIM_PASSWORD, make_settings

TRUNKS = ("carrier_a", "carrier_b")
NUMBER = "+12025550123"  # a valid US number (libphonenumber), in E.164
FLOWS = "tests.outbound.flows"


def confirming() -> CallerScript:
    """The called party listens to the reminder, presses 1, and stays until voxgate hangs up."""
    return CallerScript([Listen(0.3, timeout=10), Dtmf("1"), WaitFor("hangup", timeout=20)])


@dataclass
class OutboundRig:
    controller: Controller
    pbx: object  # FakeFreeSwitch or FakeAsterisk
    database_url: str

    async def attempts(self, request_id: str) -> list[dict]:
        await self.controller.writer.flush()
        return list_attempts(self.database_url, request_id)

    async def cdr(self, call_uuid: str) -> dict:
        """The call's CDR once voxgate let go of it and stored it."""
        for _ in range(100):
            await self.controller.writer.flush()
            rows = [r for r in list_calls(self.database_url) if r["call_uuid"] == call_uuid]
            if rows:
                return rows[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no CDR for {call_uuid}")


async def start_freeswitch(tmp_path: Path, database_url: str, *, speed: float = 1.0, **env: str) -> OutboundRig:
    upgrade(database_url)
    switch = FakeFreeSwitch(SIM_PASSWORD, tmp_dir=tmp_path, gateways=TRUNKS, speed=speed)
    await switch.start()
    settings = make_settings(database_url, VOXGATE_ESL_INBOUND="true", VOXGATE_ESL_PORT=str(switch.esl_port),
                             VOXGATE_ESL_PASSWORD=SIM_PASSWORD, VOXGATE_FREESWITCH_TRUNKS=",".join(TRUNKS),
                             VOXGATE_CALLER_ID_NUMBER="+12025550100", VOXGATE_DIAL_RETRIES="0", **env)
    controller = Controller(settings, load_flows(FLOWS))
    await controller.start()
    assert controller.inbound is not None
    await asyncio.wait_for(controller.inbound.connected.wait(), 5)
    return OutboundRig(controller, switch, database_url)


async def stop(rig: OutboundRig) -> None:
    await rig.pbx.stop()
    await rig.controller.stop()
