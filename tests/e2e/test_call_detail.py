"""One agent call leaves its whole trail: tool calls, DTMF (masked), the transfer, an encrypted recording."""

from __future__ import annotations

import asyncio
import hashlib
import wave

import numpy as np

from controller.agent.conversation import Engines
from controller.agent.fixed import FixedLlm, FixedStt, FixedTts
from controller.agent.silero import SileroVad
from controller.cli import main
from controller.flows import builtin_flows
from controller.records.recording import new_key_text
from controller.records.store import list_calls, list_rows
from controller.simulator.caller import CallerScript, Dtmf, Hangup, Listen, Say, Wait, WaitFor
from tests.audio_match import locate
from tests.e2e.conftest import start_rig, stop_rig
from tests.e2e.test_agent import utterance

LINES = ["where is my order 45721", "can I talk to a person please"]


async def test_an_agent_call_leaves_tool_calls_dtmf_transfer_and_recording(tmp_path, sqlite_url, monkeypatch):
    key = new_key_text("k1")
    env = {"VOXGATE_RECORD_CALLS": "true", "VOXGATE_RECORDING_KEYS": key,
           "VOXGATE_RECORDINGS_DIR": str(tmp_path / "recordings")}
    engines = Engines(stt=FixedStt(lambda index: LINES[min(index, len(LINES) - 1)]), llm=FixedLlm("unused"),
                      tts=FixedTts(), vad=SileroVad())
    rig = await start_rig(tmp_path, sqlite_url, flows=builtin_flows(), engines=engines, **env)
    speech = utterance("u03")
    try:
        channel = await rig.call(CallerScript([
            WaitFor("answer"), Listen(0.4), Dtmf("4556737586899855#", gap_s=0.1), Wait(0.5),
            Say(speech), Listen(0.5, timeout=10), Say(speech), Wait(5), Hangup()]),  # after the transfer: whatever extension 1000 does
            flow="assistant")
        await asyncio.wait_for(channel.ended.wait(), 60)
        for _ in range(200):
            await rig.controller.writer.flush()
            if list_calls(rig.database_url) and list_rows(rig.database_url, "recordings", channel.uuid):
                break
            await asyncio.sleep(0.05)
    finally:
        await stop_rig(rig)
    url = rig.database_url
    assert channel.script_error is None
    [cdr] = list_calls(url)
    assert cdr["outcome"] == "transferred"

    tools = list_rows(url, "tool_calls", channel.uuid)
    assert [(t["name"], t["arguments"], t["error"]) for t in tools] == [
        ("order_status", {"order_number": "45721"}, None), ("transfer_to_human", {}, None)]
    assert "shipped" in tools[0]["result"] and tools[0]["turn_seq"] < tools[1]["turn_seq"]

    [transfer] = list_rows(url, "transfers", channel.uuid)
    assert (transfer["destination"], transfer["reason"], transfer["outcome"]) == ("1000", "agent", "accepted")

    dtmf = list_rows(url, "dtmf", channel.uuid)
    assert "".join(d["digit"] for d in dtmf) == "x" * 16 + "#", "a card number typed on the keypad is masked"

    [recording] = list_rows(url, "recordings", channel.uuid)
    assert recording["channels"] == 2 and recording["complete"] and recording["key_id"] == "k1"
    sealed = open(recording["path"], "rb").read()
    assert hashlib.sha256(sealed).hexdigest() == recording["sha256"]

    for name, value in {**env, "VOXGATE_DATABASE_URL": url}.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "call.wav"
    assert main(["recording", "export", channel.uuid, "--out", str(out)]) == 0
    assert main(["recording", "export", channel.uuid, "--out", str(out)]) == 1  # never overwrites
    with wave.open(str(out)) as f:
        assert f.getnchannels() == 2 and f.getframerate() == 8000
        stereo = np.frombuffer(f.readframes(f.getnframes()), "<i2").reshape(-1, 2)
    left, right = stereo[:, 0].copy(), stereo[:, 1].copy()
    assert abs(len(left) / 8000 - recording["duration_s"]) < 0.05
    _, score = locate(speech.data, left.tobytes())
    assert score > 0.9, f"the caller's words are not on the left channel (correlation {score:.2f})"
    agent_s = sum(end - start for start, end in channel.agent_speech)
    voiced = np.abs(right.astype(float)).reshape(-1, 160).mean(axis=1) > 200  # 20 ms windows with audio
    assert abs(voiced.sum() * 0.02 - agent_s) < 0.25 * agent_s, (voiced.sum() * 0.02, agent_s)
