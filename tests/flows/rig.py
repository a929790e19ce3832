"""voxgate and the simulated FreeSWITCH for flow tests: calls placed with or without voxgate_flow.

The record writer is voxgate's own, subclassed only to count the CDRs it is handed, so a test
can tell a CDR written twice (an upsert would hide it in the table) from one written once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from controller.app import Controller
from controller.flows import FlowRegistry
from controller.records.cdr import CallRecord
from controller.records.migrate import upgrade
from controller.records.store import RecordWriter
from controller.simulator.caller import CallerScript, WaitFor
from controller.simulator.channel import SimChannel
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.e2e.conftest import SIM_PASSWORD, Rig, make_settings, stored_call

UNTIL_HANGUP = CallerScript([WaitFor("hangup", timeout=20)])


class CountingWriter(RecordWriter):
    """The real writer; `cdrs` counts the CDRs submitted per call."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cdrs: Counter[str] = Counter()

    def submit_call(self, record: CallRecord) -> None:
        self.cdrs[record.call_uuid] += 1
        super().submit_call(record)


async def start_flow_rig(tmp_path: Path, database_url: str, flows: FlowRegistry, **env: str) -> Rig:
    upgrade(database_url)
    settings = make_settings(database_url, **env)
    controller = Controller(settings, flows, writer=CountingWriter(database_url, journal_dir=settings.journal_dir))
    await controller.start()
    sim = FakeFreeSwitch(password=SIM_PASSWORD, tmp_dir=tmp_path)
    await sim.start()
    return Rig(controller, sim, database_url)


async def place(rig: Rig, script=UNTIL_HANGUP, *, flow: str | None = None, **kw) -> SimChannel:
    """A call whose dialplan sets voxgate_flow only when `flow` is given (else routes decide)."""
    variables = {"voxgate_flow": flow} if flow is not None else {}
    return await rig.sim.place_call(script, variables=variables,
                                    outbound_socket=("127.0.0.1", rig.controller.outbound.port), **kw)


async def cdr(rig: Rig, channel: SimChannel, timeout: float = 30) -> dict:
    """The call's CDR once voxgate let go of the call and stored it."""
    return await stored_call(rig.controller, rig.database_url, channel, timeout)
