"""One simulated call running a test's flow, on FreeSWITCH or Asterisk; what the flow kept and the CDR."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controller.agent.conversation import Engines
from controller.agent.fixed import FixedLlm, FixedStt, FixedTts
from controller.agent.silero import SileroVad
from controller.audio import Pcm, read_wav
from controller.flows import FlowRegistry
from controller.simulator.caller import CallerScript, Step
from tests.e2e.asterisk_rig import start_asterisk_rig, stop_asterisk_rig
from tests.e2e.conftest import start_rig, stop_rig, stored_call

SPEECH = Path(__file__).parents[1] / "fixtures" / "speech"
HEARD_RATE = 8000


def utterance(name: str, voice: str = "flite") -> Pcm:
    return read_wav(SPEECH / voice / "8k" / f"{name}.wav")


def fast_engines(text: str = "unused") -> Engines:
    """Fixed engines (a tone for TTS, a fixed transcript) with the real Silero VAD."""
    return Engines(stt=FixedStt(text), llm=FixedLlm("unused"), tts=FixedTts(), vad=SileroVad())


@dataclass
class Outcome:
    channel: Any
    cdr: dict
    kept: dict[str, Any] = field(default_factory=dict)  # what the flow put there


Flow = Callable[[Any, dict[str, Any]], Awaitable[str | None]]


async def run_call(tmp_path: Path, database_url: str, flow: Flow, steps: Sequence[Step], *,
                   engines: Engines | None = None, pbx: str = "freeswitch", mode: str = "streaming",
                   media: str = "audiosocket", timeout: float = 40.0, finish_after_hangup: float = 0.0) -> Outcome:
    """Place one call whose flow is `flow(call, kept)`; return once its CDR is stored.

    The controller cancels a flow when the caller hangs up, unless `finish_after_hangup` lets it
    finish (as a voicemail flow does): tests of what a verb does at the hangup set it.
    """
    kept: dict[str, Any] = {}
    registry = FlowRegistry()

    @registry.register("test", finish_after_hangup=finish_after_hangup)
    async def run(call) -> str | None:
        kept["call"] = call
        try:
            return await flow(call, kept)
        except BaseException as exc:
            kept["raised"] = exc
            kept["raised_at"] = asyncio.get_running_loop().time()
            raise

    engines = engines or fast_engines()
    if pbx == "asterisk":
        rig = await start_asterisk_rig(tmp_path, database_url, flows=registry, engines=engines)
        try:
            channel = await rig.call(CallerScript(list(steps)), media=media, flow="test")
            cdr = await rig.finished(channel, timeout)
        finally:
            await stop_asterisk_rig(rig)
        return Outcome(channel, cdr, kept)
    rig = await start_rig(tmp_path, database_url, mode=mode, flows=registry, engines=engines)
    try:
        channel = await rig.call(CallerScript(list(steps)), flow="test")
        cdr = await stored_call(rig.controller, rig.database_url, channel, timeout)
    finally:
        await stop_rig(rig)
    return Outcome(channel, cdr, kept)


def barge_in_s(channel, said: Pcm) -> float:
    """Seconds from the first words of what the caller said (`said`, spoken first) to the end of
    the first far-end audio they heard: how long a prompt went on over them."""
    voice_at = channel.caller_speech[0][0] + loud_spans(said.data, said.sample_rate, 300.0)[0][0]
    return channel.agent_speech[0][1] - voice_at


def loud_spans(pcm: bytes, rate: int = HEARD_RATE, threshold: float = 150.0) -> list[tuple[float, float]]:
    """(start, end) seconds of the 20 ms windows louder than `threshold` RMS, joined across gaps < 100 ms."""
    step = rate // 50
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    frames = x[: len(x) // step * step].reshape(-1, step)
    loud = np.sqrt((frames * frames).mean(axis=1)) > threshold
    spans: list[list[float]] = []
    for index in np.flatnonzero(loud):
        at = index * 0.02
        if spans and at - spans[-1][1] < 0.1:
            spans[-1][1] = at + 0.02
        else:
            spans.append([at, at + 0.02])
    return [(a, b) for a, b in spans]
