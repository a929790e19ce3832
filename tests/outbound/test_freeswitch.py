"""Dialling out over FreeSWITCH: bgapi originate through the simulator's sofia gateways, the answered
call back over the outbound socket, retries over the trunks, every try in call_attempts."""

from __future__ import annotations

import asyncio

import pytest

from controller import prompts
from controller.dialer import DialError, OutboundCall
from controller.simulator.callee import Answer, Busy, Fail, NoAnswer
from controller.simulator.caller import CallerScript, Dtmf, Wait, WaitFor
from tests.audio_match import locate
from tests.e2e.conftest import make_settings
from tests.outbound.conftest import NUMBER, TRUNKS, confirming, start_freeswitch, stop

GREETING_S = len(prompts.load("greeting")[0]) / 16000


@pytest.fixture
async def rig(tmp_path, sqlite_url):
    rig = await start_freeswitch(tmp_path, sqlite_url)
    yield rig
    await stop(rig)


async def test_answered_call_runs_its_flow_as_an_outbound_call(rig):
    typing = CallerScript([Wait(1.0), Dtmf("42#"), WaitFor("hangup", timeout=30)])
    rig.pbx.callees.script(Answer(typing), trunk="carrier_a")
    result = await rig.controller.dialer.dial(OutboundCall(
        NUMBER, "greeting", caller_id_name="Clinic Reminders",
        variables={"patient": "Ada Lovelace"}, request_id="req-greeting"))
    assert result.answered and result.attempts[0].outcome == "answered" and result.call is not None
    callee = rig.pbx.channels[result.call_uuid]
    await asyncio.wait_for(result.finished(), 40)

    cdr = await rig.cdr(result.call_uuid)
    assert cdr["direction"] == "outbound" and cdr["flow"] == "greeting" and cdr["outcome"] == "completed"
    assert cdr["destination"] == NUMBER and cdr["caller_id_number"] == "+12025550100"
    assert cdr["variables"]["voxgate_request_id"] == "req-greeting"
    assert cdr["variables"]["entered_digits"] == "42", "each key once: the outbound socket alone carries events"
    assert cdr["variables"]["patient"] == "Ada Lovelace" and cdr["variables"]["voxgate_trunk"] == "carrier_a"
    assert callee.caller_id_name == "Clinic Reminders"
    _, score = locate(prompts.load("greeting")[0], bytes(callee.heard))
    assert score > 0.9, f"the called party did not hear the greeting (correlation {score:.2f})"
    rows = await rig.attempts("req-greeting")
    assert [(r["attempt"], r["trunk"], r["outcome"], r["cause"], r["call_uuid"]) for r in rows] == [
        (1, "carrier_a", "answered", "SUCCESS", result.call_uuid)]
    assert rows[0]["number"] == NUMBER and rows[0]["pbx"] == "freeswitch" and rows[0]["flow"] == "greeting"


async def test_a_busy_trunk_moves_on_to_the_next(rig):
    rig.pbx.callees.script(Busy(ring_s=0.2), trunk="carrier_a")
    rig.pbx.callees.script(Answer(confirming()), trunk="carrier_b")
    result = await rig.controller.dialer.dial(OutboundCall(NUMBER, "reminder"))
    await asyncio.wait_for(result.finished(), 30)

    assert result.outcome == "answered"
    assert [(a.trunk, a.outcome, a.cause) for a in result.attempts] == [
        ("carrier_a", "busy", "USER_BUSY"), ("carrier_b", "answered", "SUCCESS")]
    assert [d.trunk for d in rig.pbx.callees.dialled] == ["carrier_a", "carrier_b"]
    rows = await rig.attempts(result.request_id)
    assert [(r["attempt"], r["trunk"], r["outcome"], r["call_uuid"]) for r in rows] == [
        (1, "carrier_a", "busy", None), (2, "carrier_b", "answered", result.call_uuid)]
    cdr = await rig.cdr(result.call_uuid)
    assert cdr["outcome"] == "confirmed" and cdr["variables"]["confirmed"] == "yes"
    assert cdr["variables"]["voxgate_attempt"] == "2" and cdr["direction"] == "outbound"


async def test_no_answer_anywhere_is_retried_with_backoff(tmp_path, sqlite_url):
    rig = await start_freeswitch(tmp_path, sqlite_url, speed=10)  # 1 s of ringing takes 0.1 s; no media here
    try:
        rig.pbx.callees.script(NoAnswer())
        result = await rig.controller.dialer.dial(OutboundCall(NUMBER, "reminder", retries=2, backoff_s=0.2,
                                                               ring_timeout_s=1))
        rows = await rig.attempts(result.request_id)
    finally:
        await stop(rig)
    assert result.outcome == "no_answer" and result.call is None
    assert [(a.attempt, a.trunk, a.outcome, a.cause) for a in result.attempts] == [
        (n + 1, TRUNKS[n % 2], "no_answer", "NO_ANSWER") for n in range(6)]
    assert len(rows) == 6 and {r["outcome"] for r in rows} == {"no_answer"}
    gaps = [(b.started_at - a.ended_at).total_seconds() for a, b in zip(result.attempts, result.attempts[1:])]
    # within a pass the next trunk is tried at once; passes wait 0.2 s, then 0.2 * 2 (dial_backoff_factor)
    assert gaps[0] < 0.15 and gaps[2] < 0.15 and gaps[4] < 0.15, gaps
    assert 0.19 <= gaps[1] < 1.0 and 0.39 <= gaps[3] < 1.2 and gaps[3] > gaps[1] + 0.1, gaps


async def test_an_unallocated_number_is_not_retried(rig):
    rig.pbx.callees.script(Fail("UNALLOCATED_NUMBER"))
    result = await rig.controller.dialer.dial(OutboundCall(NUMBER, "reminder", retries=3, backoff_s=0))
    assert (result.outcome, len(result.attempts)) == ("invalid_number", 1)
    assert result.attempts[0].cause == "UNALLOCATED_NUMBER"


async def test_a_failing_trunk_and_a_callee_who_answers_later(rig):
    rig.pbx.callees.script(Fail("NORMAL_TEMPORARY_FAILURE"), trunk="carrier_a")
    rig.pbx.callees.script([Busy(), Answer(confirming())], trunk="carrier_b")
    result = await rig.controller.dialer.dial(OutboundCall(NUMBER, "reminder", retries=1, backoff_s=0.05))
    await asyncio.wait_for(result.finished(), 30)
    assert [(a.trunk, a.outcome, a.cause) for a in result.attempts] == [
        ("carrier_a", "failed", "NORMAL_TEMPORARY_FAILURE"), ("carrier_b", "busy", "USER_BUSY"),
        ("carrier_a", "failed", "NORMAL_TEMPORARY_FAILURE"), ("carrier_b", "answered", "SUCCESS")]


async def test_cancelling_a_dial_hangs_up_the_ringing_leg(rig):
    rig.pbx.callees.script(NoAnswer())
    dial = asyncio.create_task(rig.controller.dialer.dial(OutboundCall(NUMBER, "reminder", ring_timeout_s=30)))
    for _ in range(100):
        if rig.pbx.ringing:
            break
        await asyncio.sleep(0.02)
    assert rig.pbx.ringing, "the originate never reached the switch"
    dial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dial
    for _ in range(100):
        if not rig.pbx.ringing:
            break
        await asyncio.sleep(0.02)
    assert not rig.pbx.ringing and not rig.pbx.channels and not rig.controller.calls


async def test_an_invalid_number_is_refused_before_anything_is_dialled(rig):
    for number in ("+1555", "202 555 0123", "+12025550123 ext 7"):
        with pytest.raises(ValueError):
            await rig.controller.dialer.dial(OutboundCall(number, "reminder"))
    with pytest.raises(ValueError, match="unknown flow"):
        await rig.controller.dialer.dial(OutboundCall(NUMBER, "nosuchflow"))
    with pytest.raises(ValueError, match="may not contain ','"):
        await rig.controller.dialer.dial(OutboundCall(NUMBER, "reminder", variables={"x": "a,origination_uuid=b"}))
    assert rig.pbx.callees.dialled == []


async def test_dialling_freeswitch_needs_its_event_socket(tmp_path, sqlite_url):
    from controller.app import Controller
    from controller.flows import builtin_flows

    controller = Controller(make_settings(sqlite_url, VOXGATE_FREESWITCH_TRUNKS="carrier_a"), builtin_flows())
    with pytest.raises(DialError, match="VOXGATE_ESL_INBOUND"):
        await controller.dialer.dial(OutboundCall(NUMBER, "greeting"))


async def test_the_simulated_switch_answers_originate_as_freeswitch_does(rig):
    """The BACKGROUND_JOB bodies the dialer reads: `+OK <uuid>\\n` or `-ERR <CAUSE>\\n` (as recorded)."""
    inbound = rig.controller.inbound
    rig.pbx.callees.script(Busy(), number="+12025550111")
    rig.pbx.callees.script(Fail("GATEWAY_DOWN"), trunk="carrier_b")
    rig.pbx.callees.script(NoAnswer(), number="+12025550122")
    park = "&park()"
    assert await inbound.bgapi(f"originate sofia/gateway/carrier_a/+12025550111 {park}") == "-ERR USER_BUSY\n"
    assert await inbound.bgapi(f"originate sofia/gateway/carrier_b/+12025550123 {park}") == "-ERR GATEWAY_DOWN\n"
    assert await inbound.bgapi(f"originate sofia/gateway/nowhere/+12025550123 {park}") == "-ERR INVALID_GATEWAY\n"
    assert await inbound.bgapi("originate {originate_timeout=1}sofia/gateway/carrier_a/+12025550122 "
                               f"{park}") == "-ERR NO_ANSWER\n"
    ringing = asyncio.create_task(inbound.bgapi("originate {origination_uuid=r-1}sofia/gateway/carrier_a/"
                                                f"+12025550122 {park}"))
    while "r-1" not in rig.pbx.ringing:
        await asyncio.sleep(0.01)
    assert (await inbound.api("uuid_kill r-1")).text == "+OK\n"
    assert await ringing == "-ERR ORIGINATOR_CANCEL\n"
    answered = await inbound.bgapi("originate {origination_uuid=a-1,origination_caller_id_name='Clinic Reminders'}"
                                   f"sofia/gateway/carrier_a/+12025550123 {park}")
    assert answered == "+OK a-1\n"
    leg = rig.pbx.channels["a-1"]
    assert (leg.name, leg.direction, leg.caller_id_name, leg.destination) == (
        "sofia/external/+12025550123", "outbound", "Clinic Reminders", "+12025550123")
    assert leg.variables["sip_gateway_name"] == "carrier_a" and leg.answered
    assert [(d.trunk, d.number) for d in rig.pbx.callees.dialled][-1] == ("carrier_a", "+12025550123")
