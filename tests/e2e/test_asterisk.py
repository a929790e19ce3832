"""The same flows and agent on Asterisk, over each media path: AudioSocket (application and Dial) and chan_websocket."""

from __future__ import annotations

import pytest

from controller import prompts
from controller.agent.conversation import AgentConfig
from controller.records.store import list_rows
from controller.simulator.caller import CallerScript, Dtmf, Hangup, Listen, Say, Wait, WaitFor
from tests.audio_match import locate
from tests.e2e.asterisk_rig import MEDIA, start_asterisk_rig, stop_asterisk_rig
from tests.e2e.test_agent import LONG_GREETING, agent_flow, fixed_engines, utterance
from tests.e2e.test_call import GREETING_S


@pytest.fixture
async def rig(tmp_path, sqlite_url):
    rig = await start_asterisk_rig(tmp_path, sqlite_url)
    yield rig
    await stop_asterisk_rig(rig)


@pytest.mark.parametrize("media", MEDIA)
async def test_greeting_flow_reads_back_the_digits(rig, media):
    script = CallerScript([WaitFor("answer", timeout=10), Wait(GREETING_S + 0.5), Dtmf("4321#"),
                           WaitFor("hangup", timeout=30)])
    channel = await rig.call(script, media=media, caller_id_number="15551230001", destination="5000")
    cdr = await rig.finished(channel)

    heard = bytes(channel.heard)
    at, score = locate(prompts.load("greeting")[0], heard)
    assert score > 0.9, f"greeting not heard faithfully over {media} (correlation {score:.2f})"
    for digit in "4321":
        _, score = locate(prompts.load(f"digit_{digit}")[0], heard[int((at + GREETING_S) * 8000) * 2:])
        assert score > 0.9, f"digit {digit} not read back over {media} (correlation {score:.2f})"
    assert cdr["pbx"] == "asterisk" and cdr["flow"] == "greeting" and cdr["outcome"] == "completed"
    assert cdr["caller_id_number"] == "15551230001" and cdr["destination"] == "5000"
    assert cdr["variables"]["entered_digits"] == "4321" and cdr["answered_at"] is not None
    assert cdr["hangup_cause"] == "NORMAL_CLEARING" and cdr["error"] is None, cdr
    dtmf = list_rows(rig.database_url, "dtmf", channel.uniqueid)
    assert "".join(d["digit"] for d in dtmf) == "4321#"
    events = list_rows(rig.database_url, "call_events", channel.uniqueid)
    assert {"Hangup", "Cdr"} <= {e["type"] for e in events}


@pytest.mark.parametrize("media", MEDIA)
async def test_the_agent_is_interrupted_and_knows_what_was_heard(tmp_path, sqlite_url, media):
    config = AgentConfig(system_prompt="test", greeting=LONG_GREETING)
    rig = await start_asterisk_rig(tmp_path, sqlite_url, flows=agent_flow(config), engines=fixed_engines())
    try:
        channel = await rig.call(CallerScript([WaitFor("answer"), Wait(2.5), Say(utterance("u03")), Listen(0.5),
                                               Hangup()]), media=media, flow="agent")
        cdr = await rig.finished(channel)
        turns = list_rows(rig.database_url, "turns", channel.uniqueid)
    finally:
        await stop_asterisk_rig(rig)
    greeting, caller, reply = turns[:3]
    assert greeting["interrupted"] and 0 < greeting["barge_in_ms"] < 400
    assert LONG_GREETING.startswith(greeting["heard_text"]) and 0 < len(greeting["heard_text"]) < len(LONG_GREETING)
    assert caller["text"] == "Can I speak to a manager please"
    assert reply["text"] == "Sure, one moment please." and not reply["interrupted"]
    spoke_at = channel.caller_speech[0][0]
    stopped_at = next(end for start, end in channel.agent_speech if start <= spoke_at <= end + 0.05)
    # speech start -> confirmed onset (~250 ms of speech) -> flush -> what the phone's 60 ms jitter buffer held
    assert 0 <= stopped_at - spoke_at < 0.5, f"agent audio went on {stopped_at - spoke_at:.3f} s over {media}"
    assert cdr["outcome"] == "caller_hangup" and cdr["pbx"] == "asterisk"
