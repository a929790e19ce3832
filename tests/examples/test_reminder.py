"""examples/reminder.py dialled out for real: originate over the simulated FreeSWITCH's trunk, a scripted callee."""

from __future__ import annotations

import asyncio

import pytest

from controller.agent.conversation import Engines
from controller.agent.fixed import FixedLlm, FixedStt, FixedTts
from controller.agent.silero import SileroVad
from controller.app import Controller
from controller.dialer import OutboundCall
from controller.flows import load_flows
from controller.records.migrate import upgrade
from controller.simulator.callee import Answer
from controller.simulator.caller import CallerScript, Dtmf, Listen, Say, WaitFor
from controller.simulator.fake_freeswitch import FakeFreeSwitch
from tests.audio_match import locate
from tests.e2e.conftest import SIM_PASSWORD, make_settings
from tests.examples.conftest import spoken
from tests.outbound.conftest import NUMBER, OutboundRig

TRUNK = "carrier_a"


async def remind(tmp_path, database_url: str, engines: Engines, callee: CallerScript) -> tuple[dict, object]:
    """Dial NUMBER with the reminder flow, the callee answering with its script; (CDR, callee's channel)."""
    upgrade(database_url)
    switch = FakeFreeSwitch(SIM_PASSWORD, tmp_dir=tmp_path, gateways=(TRUNK,))
    await switch.start()
    settings = make_settings(database_url, VOXGATE_ESL_INBOUND="true", VOXGATE_ESL_PORT=str(switch.esl_port),
                             VOXGATE_ESL_PASSWORD=SIM_PASSWORD, VOXGATE_FREESWITCH_TRUNKS=TRUNK,
                             VOXGATE_CALLER_ID_NUMBER="+12025550100", VOXGATE_DIAL_RETRIES="0")
    controller = Controller(settings, load_flows("examples.reminder"), engines=engines)
    await controller.start()
    rig = OutboundRig(controller, switch, database_url)
    try:
        await asyncio.wait_for(controller.inbound.connected.wait(), 5)
        switch.callees.script(Answer(callee), trunk=TRUNK)
        result = await controller.dialer.dial(OutboundCall(NUMBER, "reminder",
                                                           variables={"appointment": "Tuesday at 3 pm"}))
        assert result.answered, result.attempts
        channel = switch.channels[result.call_uuid]
        await asyncio.wait_for(result.finished(), 90)
        return await rig.cdr(result.call_uuid), channel
    finally:
        await switch.stop()
        await controller.stop()


async def test_the_callee_confirms_with_a_key(tmp_path, sqlite_url):
    engines = Engines(stt=FixedStt("unused"), llm=FixedLlm("unused"), tts=FixedTts(), vad=SileroVad())
    cdr, _ = await remind(tmp_path, sqlite_url, engines,
                          CallerScript([Listen(0.5, timeout=20), Dtmf("1"), WaitFor("hangup", timeout=20)]))
    assert cdr["direction"] == "outbound" and cdr["flow"] == "reminder" and cdr["outcome"] == "confirmed"
    assert cdr["state"] == {"appointment": "Tuesday at 3 pm", "outcome": "confirmed"}
    assert cdr["variables"]["appointment"] == "Tuesday at 3 pm" and cdr["hangup_cause"] == "NORMAL_CLEARING"


@pytest.mark.parametrize("answer", ["keys", "speech"])
async def test_the_callee_reschedules(tmp_path, sqlite_url, embedded, answer):
    tts = embedded.tts
    if answer == "keys":
        steps = [Listen(0.8, timeout=30), Dtmf("2"), Listen(0.8, timeout=30), Dtmf("3")]
    else:
        steps = [Listen(0.8, timeout=30), Say(await spoken(tts, "I'd like to reschedule.")),
                 Listen(0.8, timeout=30), Say(await spoken(tts, "Wednesday would be better."))]
    cdr, callee = await remind(tmp_path, sqlite_url, embedded, CallerScript([*steps, WaitFor("hangup", timeout=30)]))
    assert cdr["outcome"] == "rescheduled", cdr
    assert cdr["state"] == {"appointment": "Tuesday at 3 pm", "outcome": "rescheduled", "new_day": "Wednesday"}
    _, score = locate((await spoken(tts, "Done: we moved your appointment to Wednesday, same time.")).data,
                      bytes(callee.heard))
    assert score > 0.8, f"the callee did not hear the new day (correlation {score:.2f})"
