"""Calls over AudioSocket (the app and Dial(AudioSocket/...)): frames, pacing, UUID, DTMF, hangup, playback."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from controller.asterisk.audiosocket import Audio, CallId, Digit, audio_frame, hangup_frame
from controller.audio import Pcm, rms, tone
from controller.simulator.asterisk.fake_asterisk import FakeAsterisk
from controller.simulator.caller import Dtmf, Hangup, Say, Wait, WaitFor
from tests.simulator.asterisk.ast_helpers import AmiClient, AudioSocketServer


@pytest.fixture
async def server():
    async with AudioSocketServer() as srv:
        yield srv


@pytest.fixture
async def pbx(server):
    async with FakeAsterisk("voxgate", "s3cret", audiosocket=server.address) as fake:
        yield fake


def voiced_ms(pcm: bytes, rate: int = 8000) -> int:
    """Milliseconds of 20 ms frames with energy in them."""
    n = rate // 50 * 2
    return sum(20 for i in range(0, len(pcm) - n + 1, n) if rms(pcm[i:i + n]) > 150)


async def test_app_sends_uuid_then_paced_slin8_frames_and_dtmf_at_key_release(pbx, server):
    speech = Pcm(tone(440, 600, 8000), 8000)
    call = await pbx.place_call([WaitFor("park"), Say(speech), Dtmf("1#", gap_s=0.1), Wait(0.3), Hangup()])
    peer = await server.accept()
    await asyncio.wait_for(peer.eof.wait(), 5)
    first = peer.events[0][1]
    assert isinstance(first, CallId) and first.uuid == call.voxgate_id == call.variables["VOXGATE_ID"]
    uuid.UUID(first.uuid)
    audio = [(t, e) for t, e in peer.events if isinstance(e, Audio)]
    assert {(e.sample_rate, len(e.pcm)) for _, e in audio} == {(8000, 320)}
    gaps = np.diff([t for t, _ in audio]) * 1000
    assert 18 < float(np.median(gaps)) < 22
    loud = [e for _, e in audio if rms(e.pcm) > 1000]
    assert 28 <= len(loud) <= 31  # 600 ms of tone, plus a frame straddling its start
    assert [d.digit for d in peer.of(Digit)] == ["1", "#"]
    assert call.dtmf_received == ["1", "#"]
    await asyncio.wait_for(call.ended.wait(), 3)
    assert not peer.parser.hung_up  # a TCP close, never a 0x00 frame


async def test_audio_paced_by_voxgate_is_heard_and_a_burst_is_mostly_lost(pbx, server):
    reply = tone(600, 1000, 8000)
    call = await pbx.place_call([WaitFor("park"), Wait(3.0), Hangup()])
    peer = await server.accept()
    await peer.wait(lambda: peer.of(Audio))
    for i in range(0, len(reply), 320):  # real time: one frame per 20 ms
        peer.send(audio_frame(reply[i:i + 320], 8000))
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    paced = voiced_ms(bytes(call.heard))
    for i in range(0, len(reply), 320):  # the same second as a burst
        peer.send(audio_frame(reply[i:i + 320], 8000))
    await asyncio.wait_for(call.ended.wait(), 5)
    burst = voiced_ms(bytes(call.heard)) - paced
    assert paced >= 940
    assert burst <= 120
    assert call.media_legs[0].frames_lost >= 40


async def test_server_hangup_frame_ends_the_app_and_the_dialplan_hangs_up(pbx, server):
    client = await AmiClient.logged_in(pbx.ami_port)
    call = await pbx.place_call([WaitFor("hangup", timeout=5)])
    peer = await server.accept()
    await peer.wait(lambda: peer.of(Audio))
    peer.send(hangup_frame())
    await asyncio.wait_for(call.ended.wait(), 3)
    await client.event("Hangup", Channel=call.name)
    apps = [e.get("Application") for e in client.events(call.name) if e.name == "Newexten"]
    assert apps == ["Answer", "Set", "Set", "UserEvent", "AudioSocket", "Hangup"]
    assert call.script_error is None
    await client.close()


async def test_idle_app_times_out_after_two_seconds(pbx, server):
    client = await AmiClient.logged_in(pbx.ami_port)
    call = await pbx.place_call([], send_silence=False)
    peer = await server.accept()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.wait_for(peer.eof.wait(), 4)
    assert 1.9 <= loop.time() - start <= 2.4
    assert call.media_legs[0].end_reason == "idle_timeout"
    assert [type(e) for _, e in peer.events] == [CallId]
    await asyncio.wait_for(call.ended.wait(), 2)
    await client.event("Hangup", Channel=call.name)
    ending = [e.name for e in client.events(call.name)][-3:]
    assert ending == ["Newexten", "Cdr", "Hangup"]  # the app returned -1: no Hangup() and no request event
    await client.close()


async def test_dial_form_is_a_second_channel_with_slin16_frames(pbx, server):
    client = await AmiClient.logged_in(pbx.ami_port)
    call = await pbx.place_call([WaitFor("park"), Dtmf("5"), Wait(0.4), Hangup()], media="audiosocket-dial",
                                send_silence=True)
    peer = await server.accept()
    await asyncio.wait_for(peer.eof.wait(), 5)
    audio = peer.of(Audio)
    assert audio and {(a.sample_rate, len(a.pcm)) for a in audio} == {(16000, 640)}
    assert [d.digit for d in peer.of(Digit)] == ["5"]
    await asyncio.wait_for(call.ended.wait(), 3)
    peer_name = f"AudioSocket/{server.address[0]}:{server.address[1]}-{call.voxgate_id}"
    created = await client.event("Newchannel", Channel=peer_name)
    assert created.get("Linkedid") == call.uniqueid
    await client.event("Hangup", Channel=peer_name)
    sent = await client.event("DTMFEnd", Channel=peer_name)
    assert (sent.get("Digit"), sent.get("Direction"), sent.get("DurationMs")) == ("5", "Sent", "100")
    received = await client.event("DTMFEnd", Channel=call.name)
    assert received.get("Direction") == "Received"
    await client.close()
