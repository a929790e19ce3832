"""Call control on Asterisk when things go wrong or the call leaves: AMI cut mid-call, Asterisk dying, transfer."""

from __future__ import annotations

import asyncio

import pytest

from controller import prompts
from controller.call import CommandFailed
from controller.flows import FlowRegistry
from controller.records.store import list_calls, list_rows
from controller.simulator.asterisk.fake_asterisk import FakeAsterisk
from controller.simulator.caller import CallerScript, Dtmf, Hangup, Wait, WaitFor
from tests.audio_match import locate
from tests.e2e.asterisk_rig import AMI_SECRET, MEDIA, AsteriskRig, start_asterisk_rig, stop_asterisk_rig
from tests.e2e.test_call import GREETING_S


@pytest.fixture
async def rig(tmp_path, sqlite_url):
    rig = await start_asterisk_rig(tmp_path, sqlite_url)
    yield rig
    await stop_asterisk_rig(rig)


def _typing(digits: str) -> CallerScript:
    return CallerScript([WaitFor("answer", timeout=10), Wait(GREETING_S + 0.5), Dtmf(digits),
                         WaitFor("hangup", timeout=30)])


async def _wait_until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_a_call_goes_on_while_ami_is_cut_and_voxgate_reconnects(rig):
    channel = await rig.call(_typing("4321#"), media="audiosocket", caller_id_number="15551230001")
    await asyncio.sleep(1.0)  # mid-greeting: the media is flowing, the flow is playing
    await rig.pbx.drop_manager()
    await asyncio.sleep(1.0)
    await rig.pbx.restore_manager()
    await rig.pbx.wait_for_manager()
    cdr = await rig.finished(channel)

    # the digits came in-band and were read back; the hang-up went over the new AMI session
    _, score = locate(prompts.load("digit_4")[0], bytes(channel.heard))
    assert score > 0.9, f"read-back not heard after the AMI cut (correlation {score:.2f})"
    assert cdr["outcome"] == "completed" and cdr["variables"]["entered_digits"] == "4321"
    assert cdr["hangup_cause"] == "NORMAL_CLEARING" and cdr["error"] is None, cdr
    assert cdr["variables"]["disposition"] == "ANSWERED", "the CDR should come from Asterisk's Cdr event"
    events = [e["type"] for e in list_rows(rig.database_url, "call_events", channel.uniqueid)]
    assert events[-2:] in (["Hangup", "Cdr"], ["Cdr", "Hangup"]), events

    # and the next call is an ordinary call
    second = await rig.call(_typing("7#"), media="websocket")
    assert (await rig.finished(second))["variables"]["entered_digits"] == "7"


def _transfer_flow(go: asyncio.Event, outcome: dict) -> FlowRegistry:
    registry = FlowRegistry()

    @registry.register("transfer")
    async def transfer(call) -> str:
        await call.answer()
        await go.wait()
        try:
            await call.transfer("1000", reason="test")
        except CommandFailed as exc:
            outcome["error"] = str(exc)
            await call.play_audio(*prompts.load("sorry"))
            await call.hangup()
            return "transfer_failed"
        return "transferred"

    return registry


async def test_a_transfer_while_ami_is_away_fails_cleanly_and_the_flow_carries_on(tmp_path, sqlite_url):
    go, outcome = asyncio.Event(), {}
    rig = await start_asterisk_rig(tmp_path, sqlite_url, flows=_transfer_flow(go, outcome))
    try:
        channel = await rig.call(CallerScript([WaitFor("answer", timeout=10), WaitFor("hangup", timeout=30)]),
                                 media="audiosocket", flow="transfer")
        await _wait_until(lambda: channel.media is not None)
        await rig.pbx.drop_manager()
        go.set()
        await _wait_until(lambda: "error" in outcome)
        await rig.pbx.restore_manager()  # back in time for the flow's hang-up after its apology
        cdr = await rig.finished(channel)
        [transfer] = list_rows(rig.database_url, "transfers", channel.uniqueid)
    finally:
        await stop_asterisk_rig(rig)

    assert "Redirect" in outcome["error"], outcome
    assert channel.redirects == [], "nothing reached Asterisk"
    assert (transfer["destination"], transfer["outcome"]) == ("1000", "failed") and transfer["error"]
    # all but its last 100 ms: the hang-up right after it cuts what the phone's jitter buffer still held
    _, score = locate(prompts.load("sorry")[0][:-1600], bytes(channel.heard))
    assert score > 0.9, f"the apology was not heard (correlation {score:.2f})"
    assert cdr["outcome"] == "transfer_failed" and cdr["hangup_cause"] == "NORMAL_CLEARING"


@pytest.mark.parametrize("media", MEDIA)
async def test_a_blind_transfer_redirects_the_channel_and_voxgate_lets_go(tmp_path, sqlite_url, media):
    go = asyncio.Event()
    go.set()
    rig = await start_asterisk_rig(tmp_path, sqlite_url, flows=_transfer_flow(go, {}))
    try:
        channel = await rig.call(CallerScript([WaitFor("answer", timeout=10), Wait(2.0), Hangup()]),
                                 media=media, flow="transfer", destination="5000")
        await _wait_until(lambda: bool(channel.redirects))
        await _wait_until(lambda: not rig.controller.calls)  # voxgate let go while the caller is still up
        assert not channel.ended.is_set() and channel.media is None
        await rig.controller.writer.flush()
        [cdr] = [c for c in list_calls(rig.database_url) if c["call_uuid"] == channel.uniqueid]
        [transfer] = list_rows(rig.database_url, "transfers", channel.uniqueid)
        await asyncio.wait_for(channel.ended.wait(), 10)
    finally:
        await stop_asterisk_rig(rig)
    assert channel.redirects == [("voxgate-transfer", "1000", 1)]
    assert (transfer["destination"], transfer["reason"], transfer["outcome"]) == ("1000", "test", "accepted")
    assert cdr["outcome"] == "transferred" and cdr["destination"] == "5000" and cdr["error"] is None


async def test_asterisk_dying_mid_call_ends_the_call_with_a_record_and_voxgate_reconnects(rig: AsteriskRig):
    calls = [await rig.call(CallerScript([WaitFor("answer", timeout=10), Wait(30)]), media=media)
             for media in MEDIA]
    await _wait_until(lambda: len(rig.controller.calls) == len(MEDIA) and all(c.media for c in calls))
    await rig.pbx.crash()
    # Asterisk comes back on the same port: voxgate logs in again by itself
    reborn = FakeAsterisk("voxgate", AMI_SECRET, ami_port=rig.pbx.ami_port, audiosocket=rig.pbx.audiosocket,
                          websocket=rig.pbx.websocket, tmp_dir=rig.pbx.tmp_dir)
    await reborn.start()
    try:
        cdrs = [await rig.finished(channel) for channel in calls]  # the flows end on their media closing
        assert all(c["outcome"] == "abandoned" and c["pbx"] == "asterisk" for c in cdrs), cdrs
        assert all("Cdr event not received" in (c["error"] or "") for c in cdrs), "voxgate's own view, said so"
        assert not rig.controller.calls

        await reborn.wait_for_manager(timeout=20)
        channel = await reborn.place_call(_typing("9#"), media="audiosocket")
        assert (await rig.finished(channel))["variables"]["entered_digits"] == "9"
    finally:
        await reborn.stop()


async def test_a_call_whose_channel_is_gone_after_an_ami_cut_is_ended(rig):
    channel = await rig.call(CallerScript([WaitFor("answer", timeout=10), Wait(30)]), media="websocket")
    await _wait_until(lambda: bool(rig.controller.calls) and channel.media is not None)
    await rig.pbx.drop_manager()
    # Asterisk no longer lists the channel (masqueraded away while AMI was down), though media stays up:
    # the resync after the reconnect is all that can tell voxgate the call is over.
    del rig.pbx.channels[channel.name]
    await rig.pbx.restore_manager()
    await rig.pbx.wait_for_manager()
    await _wait_until(lambda: not rig.controller.calls)
    await rig.controller.writer.flush()
    [cdr] = [c for c in list_calls(rig.database_url) if c["call_uuid"] == channel.uniqueid]
    assert cdr["hangup_cause"] == "NETWORK_OUT_OF_ORDER" and cdr["outcome"] == "abandoned", cdr
