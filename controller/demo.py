"""`voxgate demo`: voxgate and a simulated FreeSWITCH in one process, one scripted call.

Everything runs on embedded defaults: SQLite, the shipped prompts, no keys, no PBX.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from controller.app import Controller
from controller.config import Settings
from controller.flows import builtin_flows
from controller.records.migrate import upgrade
from controller.records.store import list_calls, list_events
from controller import prompts
from controller.simulator.caller import CallerScript, Dtmf, Wait, WaitFor
from controller.simulator.fake_freeswitch import FakeFreeSwitch

SIM_PASSWORD = "demo-only-password"


async def run_demo(settings: Settings, *, digits: str, heard_path: str) -> int:
    database_url = settings.database_url.reveal()
    await asyncio.to_thread(upgrade, database_url)
    controller = Controller(settings, builtin_flows())
    await controller.start()
    with tempfile.TemporaryDirectory(prefix="voxgate-sim-") as tmp:
        sim = FakeFreeSwitch(password=SIM_PASSWORD, tmp_dir=Path(tmp),
                             generation="classic" if settings.audio_fork_mode == "classic" else "jambonz")
        await sim.start()
        try:
            greeting_s = len(prompts.load("greeting")[0]) / 16000
            script = CallerScript([WaitFor("answer", timeout=10), Wait(greeting_s + 0.5), Dtmf(f"{digits}#"),
                                   WaitFor("hangup", timeout=30)])
            print(f"voxgate: outbound ESL on {settings.bind_host}:{controller.outbound.port}, "
                  f"audio fork on {controller.fork_base_url}")
            print(f"simulated caller dials 5000 (flow {settings.default_flow!r}) and will type {digits}#")
            channel = await sim.place_call(script, destination="5000", variables={"voxgate_flow": settings.default_flow},
                                           outbound_socket=(settings.bind_host, controller.outbound.port))
            await asyncio.wait_for(channel.ended.wait(), 60)
            Path(heard_path).parent.mkdir(parents=True, exist_ok=True)
            channel.save_heard(heard_path)
        finally:
            await sim.stop()
            await controller.stop()
    call = next(r for r in list_calls(database_url) if r["call_uuid"] == channel.uuid)
    events = list_events(database_url, channel.uuid)
    print(f"call {call['call_uuid']}: {call['hangup_cause']}, outcome {call['outcome']}, "
          f"duration {call['duration_s']} s, billsec {call['billsec']} s")
    print(f"digits heard by voxgate: {call['variables'].get('entered_digits', '')!r}")
    print(f"{len(events)} call events recorded; what the caller heard: {heard_path} "
          f"({channel.heard_pcm().duration:.1f} s)")
    return 0 if call["outcome"] == "completed" else 1
