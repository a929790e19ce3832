"""`voxgate try MODULE --flow NAME --caller SCENARIO`: one flow of your own, one scripted caller, no PBX.

An in-process controller (embedded engines, SQLite) and a simulated FreeSWITCH place one call from
the scenario file to the flow. Afterwards it prints what the caller did, what they heard (the
heard audio cut at its pauses and transcribed by the embedded recogniser), and the call record:
outcome, cause, call.state, keys and transfers.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.agent.engines import SpeechToText
from controller.agent.factory import build_engines, warm_up
from controller.app import Controller
from controller.config import Settings
from controller.flows import FlowRegistry
from controller.records.migrate import upgrade
from controller.records.store import list_calls, list_rows
from controller.simulator.caller import Scenario, Step
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from controller.verbs.listen import transcribe

SIM_PASSWORD = "try-only-password"
HEARD_RATE = 8000
LOUD_RMS = 150.0  # a 20 ms window of heard audio louder than this is the flow talking
PAUSE_S = 0.6     # quieter than that for this long separates two things heard


@dataclass(frozen=True, slots=True)
class Heard:
    at_s: float
    text: str


async def run_try(settings: Settings, flows: FlowRegistry, flow: str, scenario: Scenario, *, heard_path: str,
                  timeout_s: float = 300) -> int:
    """Place the call, print what happened; 0 when the caller's script ran to its end."""
    if flow not in flows:
        print(f"voxgate try: no flow {flow!r}; registered: {', '.join(flows.names)}")
        return 2
    database_url = settings.database_url.reveal()
    await asyncio.to_thread(upgrade, database_url)
    engines = build_engines(settings)
    await warm_up(engines, progress=lambda text: print(text, flush=True))
    controller = Controller(settings, flows, engines=engines)
    await controller.start()
    try:
        with tempfile.TemporaryDirectory(prefix="voxgate-try-") as tmp:
            sim = FakeFreeSwitch(password=SIM_PASSWORD, tmp_dir=Path(tmp))
            await sim.start()
            try:
                print(f"\ncalling flow {flow!r} from {scenario.caller_id_number} to {scenario.destination}", flush=True)
                channel = await sim.place_call(
                    scenario.steps, destination=scenario.destination, caller_id_number=scenario.caller_id_number,
                    caller_id_name=scenario.caller_id_name, variables={**scenario.variables, "voxgate_flow": flow},
                    outbound_socket=(settings.bind_host, controller.outbound.port))
                await asyncio.wait_for(channel.ended.wait(), timeout_s)
            finally:
                await sim.stop()
    finally:
        await controller.stop()
    Path(heard_path).parent.mkdir(parents=True, exist_ok=True)
    channel.save_heard(heard_path)
    print("\nthe caller did:")
    for step in scenario.steps:
        print(f"  {describe(step)}")
    print("\nthe caller heard:")
    for heard in await heard_texts(engines.stt, bytes(channel.heard)):
        print(f"  {heard.at_s:6.1f} s  {heard.text}")
    print_record(database_url, channel.uuid, settings.database_url_redacted)
    print(f"\nwhat the caller heard: {heard_path}")
    if channel.script_error:
        print(f"caller script: {channel.script_error}")
    return 1 if channel.script_error else 0


def describe(step: Step) -> str:
    """One step of the caller's script, in words."""
    name = type(step).__name__.lower()
    fields = {k: getattr(step, k) for k in step.__slots__}
    if name == "say":
        return "said a recorded line"
    return f"{name} " + ", ".join(f"{k}={v}" for k, v in fields.items()) if fields else name


def loud_spans(pcm: bytes, rate: int = HEARD_RATE) -> list[tuple[int, int]]:
    """(start, end) sample indices of what was heard, split at pauses of PAUSE_S."""
    step = rate // 50
    x = np.frombuffer(pcm[: len(pcm) // (2 * step) * 2 * step], "<i2").astype(np.float64).reshape(-1, step)
    loud = np.flatnonzero(np.sqrt((x * x).mean(axis=1)) > LOUD_RMS)
    spans: list[list[int]] = []
    for index in loud:
        start = int(index) * step
        if spans and start - spans[-1][1] < PAUSE_S * rate:
            spans[-1][1] = start + step
        else:
            spans.append([start, start + step])
    return [(a, b) for a, b in spans]


async def heard_texts(stt: SpeechToText, pcm: bytes) -> list[Heard]:
    """Each stretch of heard audio with its transcript (tones and beeps have none)."""
    found = []
    for start, end in loud_spans(pcm):
        text = (await transcribe(stt, pcm[start * 2:end * 2], HEARD_RATE)).text.strip()
        found.append(Heard(start / HEARD_RATE, text or f"(a sound, {(end - start) / HEARD_RATE:.1f} s)"))
    return found


def print_record(database_url: str, call_uuid: str, where: str) -> None:
    rows = [r for r in list_calls(database_url) if r["call_uuid"] == call_uuid]
    if not rows:
        print(f"\nno call record for {call_uuid}")
        return
    call = rows[0]
    print(f"\ncall {call_uuid}: flow {call['flow']}, outcome {call['outcome']}, {call['hangup_cause']}, "
          f"{call['duration_s']} s")
    if call.get("error"):
        print(f"  error: {call['error']}")
    if call.get("state"):
        print(f"  call.state: {json.dumps(call['state'])}")
    keys = "".join(r["digit"] for r in list_rows(database_url, "dtmf", call_uuid))
    if keys:
        print(f"  keys: {keys}")
    for transfer in list_rows(database_url, "transfers", call_uuid):
        print(f"  transfer to {transfer['destination']} ({transfer['kind']}, {transfer['reason']}): "
              f"{transfer['outcome']}")
    print(f"  stored in {where}")
