"""The examples/ flows on the simulated PBXs, loaded the way `voxgate serve --flows` loads them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from controller.agent.conversation import Engines
from controller.agent.factory import build_engines, warm_up
from controller.audio import Pcm, resample
from controller.flows import load_flows
from controller.records.store import list_rows
from controller.simulator.caller import CallerScript, Step
from tests.e2e.asterisk_rig import start_asterisk_rig, stop_asterisk_rig
from tests.e2e.conftest import make_settings, start_rig, stop_rig, stored_call


@pytest.fixture(autouse=True)
def examples_dir(tmp_path, monkeypatch):
    """Each test's CRM and voicemail files in a folder of its own."""
    folder = tmp_path / "examples-data"
    monkeypatch.setenv("EXAMPLES_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def embedded() -> Engines:
    """The embedded engines (Whisper, grounded, hibari, Silero), loaded once."""
    engines = build_engines(make_settings("sqlite://"))
    asyncio.run(warm_up(engines, progress=lambda _: None))
    return engines


async def spoken(tts, text: str) -> Pcm:
    """`text` in the embedded voice as 8 kHz telephone audio: what a caller says, or hears from say()."""
    pcm = bytearray()
    async for chunk in tts.synthesize(text):
        pcm.extend(chunk.pcm)
    return resample(Pcm(bytes(pcm), tts.sample_rate), 8000)


@dataclass
class Placed:
    channel: object
    cdr: dict
    transfers: list[dict]


async def place(tmp_path, database_url: str, module: str, flow: str, steps: Sequence[Step], engines: Engines, *,
                pbx: str = "freeswitch", timeout: float = 60, **call_kw) -> Placed:
    """One call from a scripted caller to an example flow; its CDR and transfer rows once stored."""
    flows = load_flows(module)
    if pbx == "asterisk":
        rig = await start_asterisk_rig(tmp_path, database_url, flows=flows, engines=engines)
        try:
            channel = await rig.call(CallerScript(list(steps)), flow=flow, **call_kw)
            cdr = await rig.finished(channel, timeout)
        finally:
            await stop_asterisk_rig(rig)
    else:
        rig = await start_rig(tmp_path, database_url, flows=flows, engines=engines)
        try:
            channel = await rig.call(CallerScript(list(steps)), flow=flow, **call_kw)
            cdr = await stored_call(rig.controller, database_url, channel, timeout)
        finally:
            await stop_rig(rig)
    return Placed(channel, cdr, list_rows(database_url, "transfers", channel.uuid))
