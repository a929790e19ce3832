"""A whole call through the simulated PBX: answer, prompt, DTMF, read-back, CDR.

The flow's behaviour runs on every PBX setup (fixture any_pbx); PostgreSQL and the shipped example
scenario are checked on FreeSWITCH.
"""

from __future__ import annotations

import asyncio

from controller import prompts
from controller.records.store import list_calls, list_events, list_rows
from controller.simulator.caller import CallerScript, Dtmf, Hangup, Wait, WaitFor
from tests.audio_match import locate
from tests.e2e.conftest import start_rig, stop_rig, stored_call

GREETING_S = len(prompts.load("greeting")[0]) / 16000


def _typing(digits: str) -> CallerScript:
    return CallerScript([WaitFor("answer", timeout=10), Wait(GREETING_S + 0.5), Dtmf(digits),
                         WaitFor("hangup", timeout=30)])


async def _finished(rig, channel, timeout=40):
    return await stored_call(rig.controller, rig.database_url, channel, timeout)


def _faithful(rig) -> float:
    """How closely a heard prompt must match: Asterisk's phone plays through a jitter buffer."""
    return 0.95 if rig.pbx_name == "freeswitch" else 0.9


async def test_greeting_call_reads_back_the_digits(any_pbx):
    rig = any_pbx
    channel = await rig.call(_typing("4321#"), destination="5000", caller_id_number="15551230001")
    cdr = await rig.finished(channel)

    heard = bytes(channel.heard)
    at, score = locate(prompts.load("greeting")[0], heard)
    assert score > _faithful(rig), f"greeting not heard faithfully (correlation {score:.2f})"
    digit_times = []
    for digit in "4321":
        when, score = locate(prompts.load(f"digit_{digit}")[0], heard[int((at + GREETING_S) * 8000) * 2:])
        assert score > _faithful(rig), f"digit {digit} not read back (correlation {score:.2f})"
        digit_times.append(when)
    assert digit_times == sorted(digit_times), "digits read back out of order"

    assert cdr["pbx"] == rig.pbx_name and cdr["flow"] == "greeting" and cdr["outcome"] == "completed"
    assert cdr["hangup_cause"] == "NORMAL_CLEARING" and cdr["error"] is None, cdr
    assert cdr["caller_id_number"] == "15551230001" and cdr["destination"] == "5000"
    assert cdr["variables"]["entered_digits"] == "4321"
    assert cdr["answered_at"] is not None and cdr["duration_s"] >= int(GREETING_S)
    dtmf = list_rows(rig.database_url, "dtmf", channel.uuid)
    assert [(d["seq"], d["digit"], d["direction"]) for d in dtmf] == [(i + 1, c, "in") for i, c in enumerate("4321#")]
    events = list_events(rig.database_url, channel.uuid)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert not any(key in e["payload"] for e in events for key in ("DTMF-Digit", "Digit")), \
        "digits kept outside the dtmf table"
    if rig.pbx_name == "freeswitch":
        assert sum(e["type"] == "DTMF" for e in events) == 5
        assert events[-1]["type"] == "CHANNEL_HANGUP_COMPLETE"
    else:  # a key is DTMFBegin and DTMFEnd; the Cdr event may come before or after Hangup
        assert sum(e["type"] == "DTMFEnd" for e in events) == 5
        assert {e["type"] for e in events[-2:]} == {"Hangup", "Cdr"}, [e["type"] for e in events]


async def test_no_digits_gets_the_no_input_prompt(any_pbx):
    rig = any_pbx
    script = CallerScript([WaitFor("answer", timeout=10), WaitFor("hangup", timeout=30)])
    channel = await rig.call(script, variables={"voxgate_digit_timeout": "0.5"})
    cdr = await rig.finished(channel)
    assert cdr["outcome"] == "no_input"
    heard = bytes(channel.heard) + bytes(800)  # the prompt ends the call: its last samples may meet the hang-up
    greeting_at, _ = locate(prompts.load("greeting")[0], heard)
    no_input_at, score = locate(prompts.load("no_input")[0], heard)
    assert score > _faithful(rig)
    waited = no_input_at - greeting_at - GREETING_S
    assert waited < 2.5, f"the dialplan's 0.5 s digit timeout was not kept: no-input prompt after {waited:.1f} s"


async def test_caller_hanging_up_mid_prompt_is_recorded_as_abandoned(any_pbx):
    rig = any_pbx
    script = CallerScript([WaitFor("answer", timeout=10), Wait(1.0), Hangup("NORMAL_CLEARING")])
    channel = await rig.call(script)
    cdr = await rig.finished(channel)
    assert cdr["outcome"] == "abandoned"
    assert cdr["hangup_cause"] == "NORMAL_CLEARING"
    assert 0 <= cdr["billsec"] <= 2


async def test_cdr_lands_in_postgresql(tmp_path, pg_database_url):
    rig = await start_rig(tmp_path, pg_database_url)
    try:
        channel = await rig.call(_typing("77#"))
        cdr = await _finished(rig, channel)
    finally:
        await stop_rig(rig)
    assert cdr["variables"]["entered_digits"] == "77"
    assert cdr["started_at"].tzinfo is not None
    assert len(list_events(pg_database_url, channel.uuid)) > 5


async def test_shipped_example_scenario_runs_against_voxgate(tmp_path, sqlite_url):
    from pathlib import Path

    from controller.simulator.fake_freeswitch import run_scenario

    rig = await start_rig(tmp_path, sqlite_url)
    try:
        example = Path(__file__).parents[2] / "examples" / "scenarios" / "greeting.toml"
        channel = await run_scenario(example, outbound_socket=("127.0.0.1", rig.controller.outbound.port),
                                     heard=tmp_path / "heard.wav", tmp_dir=tmp_path)
        await rig.controller.writer.flush()
        await asyncio.sleep(0.5)
        await rig.controller.writer.flush()
    finally:
        await stop_rig(rig)
    cdr = next(r for r in list_calls(sqlite_url) if r["call_uuid"] == channel.uuid)
    assert cdr["variables"]["entered_digits"] == "24680" and cdr["caller_id_name"] == "Ada Example"
    assert (tmp_path / "heard.wav").stat().st_size > 8000 * 2 * 5
