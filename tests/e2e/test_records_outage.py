"""Nothing lost: 50 concurrent agent calls while PostgreSQL goes down mid-run and comes back."""

from __future__ import annotations

import asyncio

from controller.agent.conversation import AgentConfig
from controller.records import migrate
from controller.records.store import list_calls, list_events, list_turns
from controller.simulator.caller import CallerScript, Hangup, Listen, Say, WaitFor
from tests.e2e.conftest import start_rig, stop_rig
from tests.e2e.test_agent import agent_flow, fixed_engines, utterance

CALLS = 50


async def test_every_call_turn_and_event_arrives_exactly_once_across_a_database_restart(tmp_path, private_postgres):
    url = private_postgres.url
    migrate.upgrade(url)
    config = AgentConfig(system_prompt="test", greeting="Hi.")
    rig = await start_rig(tmp_path, url, flows=agent_flow(config), engines=fixed_engines())
    try:
        script = CallerScript([WaitFor("answer"), Listen(0.4), Say(utterance("u03")), Listen(0.5, timeout=15),
                               Hangup()])
        channels = await asyncio.gather(*(rig.call(script, flow="agent") for _ in range(CALLS)))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(private_postgres.stop)  # mid-call: turns and events are being written
        await asyncio.sleep(3.0)
        await asyncio.to_thread(private_postgres.start)
        await asyncio.wait_for(asyncio.gather(*(c.ended.wait() for c in channels)), 60)
        async with asyncio.timeout(60):
            while len(list_calls(url)) < CALLS or rig.controller.writer.pending:
                await asyncio.sleep(0.2)
        writer = rig.controller.writer
        assert writer.failed_batches > 0, "the outage did not hit the writer: the test proves nothing"
    finally:
        await stop_rig(rig)
    calls = {c["call_uuid"]: c for c in list_calls(url)}
    assert set(calls) == {c.uuid for c in channels}
    for channel in channels:
        assert channel.script_error is None
        turns = list_turns(url, channel.uuid)
        assert [(t["seq"], t["speaker"]) for t in turns] == [(0, "agent"), (1, "caller"), (2, "agent")]
        events = list_events(url, channel.uuid)
        assert [e["seq"] for e in events] == list(range(len(events)))  # none lost, none twice
        assert events[-1]["type"] == "CHANNEL_HANGUP_COMPLETE"
        assert calls[channel.uuid]["hangup_cause"] == "NORMAL_CLEARING"
