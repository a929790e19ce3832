"""The caller's hangup ends the flow at once, wherever it is; finish_after_hangup lets post-processing finish.

Through the simulated FreeSWITCH over real sockets; every call leaves exactly one CDR.
"""

from __future__ import annotations

import asyncio

from controller import prompts
from controller.app import FLOW_SETTLE_S
from controller.call import CallGone
from controller.flows import FlowRegistry, flow, marked_flows
from controller.simulator.caller import CallerScript, Hangup, Wait, WaitFor
from tests.audio_match import locate
from tests.e2e.conftest import stop_rig
from tests.flows.rig import cdr, place, start_flow_rig

HANG_UP_AFTER_S = 0.5
MARGIN_S = 1.0  # measured: a few milliseconds after the deadline; the margin is for a busy 2-core machine


def _hangs_up(after: float = HANG_UP_AFTER_S) -> CallerScript:
    return CallerScript([WaitFor("answer", timeout=10), Wait(after), Hangup("NORMAL_CLEARING")])


def _registry(*fns) -> FlowRegistry:
    registry = FlowRegistry()
    for fn in fns:
        for spec in marked_flows(fn):
            registry.add(spec)
    return registry


async def test_hangup_cancels_a_sleeping_flow_promptly(tmp_path, sqlite_url):
    seen: dict[str, float] = {}
    clock = None

    @flow
    async def sleeper(call):
        await call.answer()
        try:
            await asyncio.sleep(60)  # not inside a verb: only the controller can notice the hangup
        except asyncio.CancelledError:
            seen["cancelled"] = clock.now()
            raise
        return "slept"

    rig = await start_flow_rig(tmp_path, sqlite_url, _registry(sleeper))
    clock = rig.sim.clock
    try:
        channel = await place(rig, _hangs_up(), flow="sleeper")
        record = await cdr(rig, channel, timeout=15)
    finally:
        await stop_rig(rig)
    late = seen["cancelled"] - channel.hangup_us / 1e6
    assert FLOW_SETTLE_S <= late < FLOW_SETTLE_S + MARGIN_S, f"flow cancelled {late:.3f} s after the hangup"
    assert record["outcome"] == "abandoned" and record["error"] is None
    assert record["hangup_cause"] == "NORMAL_CLEARING" and record["flow"] == "sleeper"
    assert rig.controller.writer.cdrs[channel.uuid] == 1


async def test_a_flow_inside_a_verb_ends_by_itself_with_its_own_outcome(tmp_path, sqlite_url):
    @flow
    async def menu(call):
        await call.answer()
        try:
            await call.collect_dtmf(4, timeout=30)
        except CallGone:
            call.info.variables["menu"] = "left before choosing"
            return "left_menu"
        return "chose"

    rig = await start_flow_rig(tmp_path, sqlite_url, _registry(menu))
    try:
        channel = await place(rig, _hangs_up(), flow="menu")
        record = await cdr(rig, channel, timeout=15)
    finally:
        await stop_rig(rig)
    assert record["outcome"] == "left_menu" and record["error"] is None  # not cancelled: CallGone came first
    assert record["variables"]["menu"] == "left before choosing"
    assert rig.controller.writer.cdrs[channel.uuid] == 1


async def test_finish_after_hangup_lets_the_flow_finish_its_work(tmp_path, sqlite_url):
    seen: dict[str, object] = {}

    @flow("voicemail", finish_after_hangup=10)
    async def voicemail(call):
        await call.answer()
        await call.ended.wait()  # the caller leaves a message and hangs up
        await asyncio.sleep(FLOW_SETTLE_S + 0.5)  # transcribing it, after the hangup
        try:
            await call.play_audio(*prompts.load("goodbye"))
        except CallGone:
            seen["verb"] = "CallGone"
        call.info.variables["transcript"] = "please call me back"
        return "voicemail"

    rig = await start_flow_rig(tmp_path, sqlite_url, _registry(voicemail))
    try:
        channel = await place(rig, _hangs_up(), flow="voicemail")
        record = await cdr(rig, channel, timeout=15)
    finally:
        await stop_rig(rig)
    assert seen["verb"] == "CallGone"  # verbs that need the caller still refuse
    assert record["outcome"] == "voicemail" and record["error"] is None
    assert record["variables"]["transcript"] == "please call me back"  # the CDR waited for the flow
    assert rig.controller.writer.cdrs[channel.uuid] == 1


async def test_finish_after_hangup_is_a_limit(tmp_path, sqlite_url):
    seen: dict[str, float] = {}
    clock = None

    @flow("slow_voicemail", finish_after_hangup=1.5)
    async def slow(call):
        await call.answer()
        await call.ended.wait()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled"] = clock.now()
            raise

    rig = await start_flow_rig(tmp_path, sqlite_url, _registry(slow))
    clock = rig.sim.clock
    try:
        channel = await place(rig, _hangs_up(), flow="slow_voicemail")
        record = await cdr(rig, channel, timeout=15)
    finally:
        await stop_rig(rig)
    late = seen["cancelled"] - channel.hangup_us / 1e6
    assert 1.5 <= late < 1.5 + MARGIN_S
    assert record["outcome"] == "abandoned"
    assert record["error"] == "still running 1.5 s after the caller hung up: cancelled"
    assert rig.controller.writer.cdrs[channel.uuid] == 1


async def test_a_raising_flow_ends_only_its_own_call(tmp_path, sqlite_url):
    """Three calls at once: one flow raises, one is hung up on mid-sleep, one finishes normally."""

    @flow
    async def raiser(call):
        await call.answer()
        await asyncio.sleep(0.5)
        raise RuntimeError("a bug in one call's flow")

    @flow
    async def steady(call):
        await call.answer()
        await asyncio.sleep(1.5)
        call.info.variables["steady"] = "yes"
        return "steady_done"

    @flow
    async def sleeper(call):
        await call.answer()
        await asyncio.sleep(60)

    rig = await start_flow_rig(tmp_path, sqlite_url, _registry(raiser, steady, sleeper))
    try:
        channels = await asyncio.gather(place(rig, flow="raiser"), place(rig, flow="steady"),
                                        place(rig, _hangs_up(), flow="sleeper"))
        bad, good, gone = [await cdr(rig, channel) for channel in channels]
    finally:
        await stop_rig(rig)
    assert bad["outcome"] == "error" and bad["error"] == "RuntimeError: a bug in one call's flow"
    assert bad["hangup_cause"] == "NORMAL_TEMPORARY_FAILURE"
    assert good["outcome"] == "steady_done" and good["variables"]["steady"] == "yes" and good["error"] is None
    assert good["hangup_cause"] == "NORMAL_CLEARING"
    assert gone["outcome"] == "abandoned" and gone["error"] is None
    stats = rig.controller.stats
    assert stats.failed == 1 and stats.finished == 3
    assert stats.outcomes == {"error": 1, "steady_done": 1, "abandoned": 1}
    assert [rig.controller.writer.cdrs[c.uuid] for c in channels] == [1, 1, 1]
    sorry = prompts.load("sorry")[0]
    assert locate(sorry, bytes(channels[0].heard))[1] > 0.95  # the apology went to the raiser's caller
    assert locate(sorry, bytes(channels[1].heard))[1] < 0.5  # ... and to no one else


async def test_stopping_the_controller_cancels_running_flows_and_keeps_their_records(tmp_path, sqlite_url):
    seen: dict[str, bool] = {}

    @flow
    async def endless(call):
        await call.answer()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    rig = await start_flow_rig(tmp_path, sqlite_url, _registry(endless))
    channel = await place(rig, flow="endless")
    for _ in range(100):
        if channel.answered:
            break
        await asyncio.sleep(0.05)
    await rig.controller.stop(drain_s=0.2)
    await rig.sim.stop()
    assert seen == {"cancelled": True}
    assert rig.controller.writer.cdrs[channel.uuid] == 1
    assert rig.controller.stats.finished == 1
