"""`voxgate demo`: a caller talks to the AI agent over a simulated FreeSWITCH, in one process.

Everything runs on embedded defaults: Whisper tiny.en, hibari TTS, Silero VAD, the grounded
model, SQLite; no keys, no PBX, no network. The caller's lines are synthesised, turned into
8 kHz telephone audio and spoken into the call; the first one talks over the greeting.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from pathlib import Path

from controller.agent.factory import build_engines, warm_up
from controller.app import Controller
from controller.audio import Pcm, resample
from controller.config import Settings
from controller.flows import builtin_flows
from controller.records.cdr import TurnRecord
from controller.records.migrate import upgrade
from controller.records.store import list_calls, list_turns
from controller.simulator.caller import CallerScript, Listen, Say, Wait, WaitFor
from controller.simulator.fake_freeswitch import FakeFreeSwitch

SIM_PASSWORD = "demo-only-password"
CALLER_LINES = (
    "I'd like to check the status of my order.",  # spoken over the greeting: a barge-in
    "My order number is four five seven two one.",
    "What time does your store close today?",
    "Can I get a refund for my last purchase?",
    "Do you sell gift cards?",  # nothing in the flow covers it: the grounded model says so
    "Thank you very much for your help.",
)
BARGE_IN_AFTER_S = 3.0


async def caller_script(engines_tts, lines: tuple[str, ...] = CALLER_LINES) -> CallerScript:
    """The caller's part: lines synthesised by the embedded TTS, as 8 kHz telephone audio."""
    voices = []
    for line in lines:
        pcm = bytearray()
        async for chunk in engines_tts.synthesize(line):
            pcm.extend(chunk.pcm)
        voices.append(resample(Pcm(bytes(pcm), engines_tts.sample_rate), 8000))
    steps: CallerScript = [WaitFor("answer", timeout=15), Wait(BARGE_IN_AFTER_S), Say(voices[0])]
    for voice in voices[1:]:
        steps += [Listen(silence=0.7, timeout=20), Wait(0.3), Say(voice)]
    steps.append(WaitFor("hangup", timeout=30))
    return steps


def print_turn(turn: TurnRecord) -> None:
    if turn.speaker == "caller":
        print(f"  caller: {turn.text}", flush=True)
        return
    line = f"  agent:  {turn.text}"
    if turn.interrupted:
        line += f"\n          [barged in after: \"{turn.heard_text}\"; stopped in {turn.barge_in_ms:.0f} ms]"
    if turn.voice_to_voice_ms is not None:
        line += (f"\n          voice-to-voice {turn.voice_to_voice_ms:.0f} ms (transcript {turn.stt_ms:.0f}, "
                 f"first token {turn.llm_first_token_ms:.0f}, first audio {turn.tts_first_audio_ms:.0f})")
    print(line, flush=True)


async def run_demo(settings: Settings, *, heard_path: str) -> int:
    database_url = settings.database_url.reveal()
    await asyncio.to_thread(upgrade, database_url)
    print("voxgate demo: an AI agent answers a simulated phone call (embedded engines, no keys, no network)")
    engines = build_engines(settings)
    await warm_up(engines, progress=lambda text: print(text, flush=True))
    controller = Controller(settings, builtin_flows(), engines=engines)
    controller.on_turn = print_turn
    await controller.start()
    with tempfile.TemporaryDirectory(prefix="voxgate-sim-") as tmp:
        sim = FakeFreeSwitch(password=SIM_PASSWORD, tmp_dir=Path(tmp),
                             generation="classic" if settings.audio_fork_mode == "classic" else "jambonz")
        await sim.start()
        try:
            script = await caller_script(engines.tts)
            print(f"\ncalling flow 'assistant' (audio fork: {settings.audio_fork_mode})\n", flush=True)
            channel = await sim.place_call(script, destination="5000", variables={"voxgate_flow": "assistant"},
                                           outbound_socket=(settings.bind_host, controller.outbound.port))
            await asyncio.wait_for(channel.ended.wait(), 120)
            Path(heard_path).parent.mkdir(parents=True, exist_ok=True)
            channel.save_heard(heard_path)
        finally:
            await sim.stop()
            await controller.stop()
    call = next(r for r in list_calls(database_url) if r["call_uuid"] == channel.uuid)
    turns = list_turns(database_url, channel.uuid)
    print_summary(turns)
    print(f"\ncall {call['call_uuid']}: outcome {call['outcome']}, {call['hangup_cause']}, "
          f"{call['duration_s']} s; {len(turns)} turns stored in {settings.database_url_redacted}")
    print(f"what the caller heard: {heard_path} ({channel.heard_pcm().duration:.1f} s)")
    if channel.script_error:
        print(f"caller script: {channel.script_error}")
    return 0 if call["outcome"] == "end_call" and not channel.script_error else 1


def print_summary(turns: list[dict]) -> None:
    agent = [t for t in turns if t["speaker"] == "agent" and t["voice_to_voice_ms"] is not None]
    print("\n  turn  voice-to-voice  transcript  first token  first audio  barge-in")
    for t in turns:
        if t["speaker"] != "agent":
            continue
        cells = [t["voice_to_voice_ms"], t["stt_ms"], t["llm_first_token_ms"], t["tts_first_audio_ms"],
                 t["barge_in_ms"]]
        shown = [f"{c:.0f} ms" if c is not None else "-" for c in cells]
        print(f"  {t['seq']:>4}  {shown[0]:>14}  {shown[1]:>10}  {shown[2]:>11}  {shown[3]:>11}  {shown[4]:>8}")
    if agent:
        v2v = [t["voice_to_voice_ms"] for t in agent]
        print(f"  voice-to-voice median {statistics.median(v2v):.0f} ms, worst {max(v2v):.0f} ms "
              f"over {len(v2v)} replies")
