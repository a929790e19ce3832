"""OpenTelemetry traces of real simulated calls: a span per call, a child span per turn, a span per stage.

The calls run on the simulated FreeSWITCH with the real Silero VAD (and the embedded Whisper, grounded
model and hibari TTS where the stage timings are the point); the spans go to an InMemorySpanExporter
handed to tracing.start(), and are checked against the turns voxgate stored in the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from controller import tracing
from controller.agent.conversation import AgentConfig, Engines
from controller.agent.factory import build_engines, warm_up
from controller.agent.fixed import FixedLlm, FixedStt, FixedTts
from controller.agent.silero import SileroVad
from controller.call import CallInfo
from controller.flows import FlowRegistry
from controller.records.cdr import CallRecord, TurnRecord
from controller.records.store import list_turns
from controller.simulator.caller import CallerScript, Hangup, Listen, Say, Wait, WaitFor
from tests.e2e.conftest import make_settings, start_rig, stop_rig, stored_call
from tests.e2e.test_agent import LONG_GREETING, utterance

ROOT = Path(__file__).parents[2]
SPEECH = ROOT / "tests" / "fixtures" / "speech" / "flite" / "8k"
REPLY_STAGES = ["caller.speech", "endpointing", "stt.final", "llm.first_token", "tts.first_audio", "playout"]
US = 1_000  # ns


def agent_flows(**greetings: str) -> FlowRegistry:
    """One agent flow per name, each with its greeting."""
    registry = FlowRegistry()
    for name, greeting in greetings.items():
        config = AgentConfig(system_prompt="test", greeting=greeting, dead_air_s=0.6, engine_timeout_s=1.5,
                             dont_know="Sorry, I don't know that one.", fallback="Sorry, say that again?")

        async def flow(call, config=config) -> str:
            await call.answer()
            result = await call.agent(config)
            if result.reason != "caller_hangup":
                await call.hangup()
            return result.reason

        registry.register(name)(flow)
    return registry


async def traced_rig(tmp_path, sqlite_url, flows: FlowRegistry, engines: Engines):
    """A rig whose controller traces into memory, through the same seam `otel = true` uses."""
    rig = await start_rig(tmp_path, sqlite_url, flows=flows, engines=engines)
    exporter = InMemorySpanExporter()
    rig.controller.tracing = tracing.start(replace(rig.controller.settings, otel=True), exporter=exporter)
    return rig, exporter


def ns(at: datetime) -> int:
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * US


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id),
                  key=lambda s: (s.start_time, s.end_time))


def call_tree(spans: list[ReadableSpan], uuid: str) -> tuple[ReadableSpan, dict[int, ReadableSpan]]:
    """The call's span and its turn spans by seq; checks that the call's trace holds nothing else."""
    [call] = [s for s in spans if s.name == "call" and s.attributes["voxgate.call.uuid"] == uuid]
    assert call.parent is None
    trace = [s for s in spans if s.context.trace_id == call.context.trace_id]
    turns = children(trace, call)
    assert turns and all(t.name == "turn" and t.attributes["voxgate.call.uuid"] == uuid for t in turns)
    ids = {s.context.span_id for s in trace}
    assert all(s is call or s.parent.span_id in ids for s in trace)  # one tree, no stray span of another call
    assert len(trace) == 1 + len(turns) + sum(len(children(trace, t)) for t in turns)
    return call, {t.attributes.get("voxgate.turn.seq", t.attributes.get("voxgate.turn.caller_seq")): t
                  for t in turns}


def check_reply(spans: list[ReadableSpan], turn: ReadableSpan, caller: dict, agent: dict) -> None:
    """A reply's span against the two rows the turn code stored: its stages in order, its latencies equal."""
    found = {s.name: s for s in children(spans, turn)}
    assert sorted(found) == sorted(REPLY_STAGES)
    stages = [found[name] for name in REPLY_STAGES]
    speech, playout = stages[0], stages[-1]
    assert (speech.start_time, speech.end_time) == (ns(caller["started_at"]), ns(caller["ended_at"]))
    assert turn.start_time == speech.start_time and turn.end_time == playout.end_time == ns(agent["ended_at"])
    for earlier, later in zip(stages[:5], stages[1:5]):  # the pipeline, stage after stage
        assert earlier.end_time <= later.start_time + US and later.start_time <= later.end_time, (earlier, later)
    # the first audio can be a filler said before the model's first words: playout only follows the speech
    assert speech.end_time <= playout.start_time <= playout.end_time
    for stage, latency in zip(stages[2:5], ("stt_ms", "llm_first_token_ms", "tts_first_audio_ms")):
        assert turn.attributes[f"voxgate.turn.{latency}"] == agent[latency]
        assert abs(stage.end_time - speech.end_time - agent[latency] * 1e6) <= US
    assert abs(stages[1].end_time - speech.end_time - agent["detail"]["endpoint_ms"] * 1e6) <= US
    assert turn.attributes["voxgate.turn.voice_to_voice_ms"] == agent["voice_to_voice_ms"]
    # first audio sent, as the turn code recorded it (two clock readings apart: a few microseconds)
    assert abs(playout.start_time - speech.end_time - agent["voice_to_voice_ms"] * 1e6) < 2_000 * US
    assert 0 < agent["stt_ms"] <= agent["llm_first_token_ms"] <= agent["tts_first_audio_ms"] < 15_000
    assert turn.attributes["voxgate.turn.caller_chars"] == len(caller["text"]) > 0
    assert turn.attributes["voxgate.turn.reply_chars"] == len(agent["text"]) > 0
    assert turn.attributes["voxgate.turn.answered"] is True and turn.status.status_code is StatusCode.UNSET


def words_never_exported(spans: list[ReadableSpan], texts: list[str]) -> None:
    """No attribute (span, event or resource) nor status holds two words in a row of any transcript, nor
    any of its long words (short ones such as "caller" are voxgate's own vocabulary too)."""
    values = []
    for span in spans:
        values += list(span.attributes.values()) + list(span.resource.attributes.values())
        values += [v for event in span.events for v in event.attributes.values()]
        values.append(span.status.description or "")
    exported = " | ".join(str(v) for v in values).lower()
    leaks = set()
    for text in texts:
        words = re.findall(r"[a-z0-9']+", text.lower())
        leaks |= {w for w in words if len(w) >= 7} | {f"{a} {b}" for a, b in zip(words, words[1:])}
    assert len(leaks) >= 5
    assert not [leak for leak in leaks if leak in exported]


@pytest.fixture(scope="module")
def embedded() -> Engines:
    engines = build_engines(make_settings("sqlite://"))
    asyncio.run(warm_up(engines, progress=lambda _: None))
    return engines


# ---------------------------------------------------------------- real calls


async def test_two_concurrent_agent_calls_each_get_their_own_span_tree(tmp_path, sqlite_url, embedded):
    rig, exporter = await traced_rig(tmp_path, sqlite_url, agent_flows(barge=LONG_GREETING, plain="Hello."), embedded)
    barge = [WaitFor("answer"), Wait(2.0), Say(utterance("u03")), Listen(0.8, timeout=20), Hangup()]
    plain = [WaitFor("answer"), Listen(0.3, timeout=10), Say(utterance("u03")), Listen(0.8, timeout=20), Hangup()]
    try:
        channels = await asyncio.gather(rig.call(CallerScript(barge), flow="barge"),
                                        rig.call(CallerScript(plain), flow="plain"))
        cdrs = await asyncio.gather(*(stored_call(rig.controller, rig.database_url, c, 90) for c in channels))
    finally:
        await stop_rig(rig)  # ends the tracing: every span is exported
    spans = list(exporter.get_finished_spans())
    assert len({s.context.trace_id for s in spans if s.name == "call"}) == 2

    texts = [LONG_GREETING]
    for channel, cdr, flow in zip(channels, cdrs, ("barge", "plain")):
        assert channel.script_error is None
        rows = list_turns(rig.database_url, channel.uuid)
        texts += [t for row in rows for t in (row["text"], row["heard_text"]) if t]
        call, turns = call_tree(spans, channel.uuid)
        assert dict(call.attributes) == {
            "voxgate.call.uuid": channel.uuid, "voxgate.pbx": "freeswitch", "voxgate.flow": flow,
            "voxgate.call.direction": cdr["direction"], "voxgate.call.outcome": cdr["outcome"],
            "voxgate.call.hangup_cause": cdr["hangup_cause"], "voxgate.call.duration_s": cdr["duration_s"],
            "voxgate.call.billsec": cdr["billsec"], "voxgate.call.turns": len(rows)}
        assert call.status.status_code is StatusCode.UNSET
        assert call.start_time == ns(cdr["started_at"]) and call.end_time == ns(cdr["ended_at"])
        assert call.start_time <= min(t.start_time for t in turns.values())
        assert max(t.end_time for t in turns.values()) <= call.end_time
        assert call.resource.attributes["service.name"] == "voxgate"
        assert call.resource.attributes["service.instance.id"] == "e2e"

        greeting, caller, reply = rows[:3]
        assert [r["speaker"] for r in rows[:3]] == ["agent", "caller", "agent"]
        assert sorted(turns) == [r["seq"] for r in rows if r["speaker"] == "agent"]  # one turn span per reply
        [playout] = children(spans, turns[0])
        assert playout.name == "playout" and playout.start_time == ns(greeting["started_at"])
        interrupted = flow == "barge"
        assert greeting["interrupted"] is interrupted and turns[0].attributes["voxgate.turn.interrupted"] is interrupted
        if interrupted:
            assert turns[0].attributes["voxgate.turn.barge_in_ms"] == greeting["barge_in_ms"] < 1000
            [event] = playout.events
            assert event.name == "barge_in" and event.attributes["voxgate.turn.barge_in_ms"] == greeting["barge_in_ms"]
            assert turns[0].attributes["voxgate.turn.heard_chars"] == len(greeting["heard_text"]) \
                < turns[0].attributes["voxgate.turn.reply_chars"]
        else:
            assert not playout.events and "voxgate.turn.barge_in_ms" not in turns[0].attributes
        check_reply(spans, turns[reply["seq"]], caller, reply)
        assert turns[reply["seq"]].attributes["voxgate.engine.stt"] == "whisper"
    words_never_exported(spans, texts)


async def test_failures_set_the_error_status_with_their_kind_and_never_their_text(tmp_path, sqlite_url):
    flows = agent_flows(agent="Hi.")

    @flows.register("boom")
    async def boom(call) -> str:
        await call.answer()
        raise RuntimeError("the caller's card number is 4111 1111 1111 1111")

    engines = Engines(stt=FixedStt("Can I speak to a manager please"), llm=FixedLlm("unused", fail=True),
                      tts=FixedTts(), vad=SileroVad())
    rig, exporter = await traced_rig(tmp_path, sqlite_url, flows, engines)
    try:
        failing, broken = await asyncio.gather(
            rig.call(CallerScript([WaitFor("answer"), Listen(0.4), Say(utterance("u03")), Listen(0.6, timeout=10),
                                   Hangup()]), flow="agent"),
            rig.call(CallerScript([WaitFor("answer"), WaitFor("hangup", timeout=20)]), flow="boom"))
        await asyncio.gather(*(stored_call(rig.controller, rig.database_url, c) for c in (failing, broken)))
    finally:
        await stop_rig(rig)
    spans = list(exporter.get_finished_spans())
    rows = list_turns(rig.database_url, failing.uuid)
    assert rows[2]["detail"]["fallback"] == "fixed-llm: scripted failure"
    call, turns = call_tree(spans, failing.uuid)
    reply = turns[rows[2]["seq"]]
    assert call.status.status_code is StatusCode.UNSET
    assert (reply.status.status_code, reply.status.description) == (StatusCode.ERROR, "reply error")
    assert reply.attributes["error.type"] == "error" and reply.attributes["voxgate.turn.fallback_stage"] == "reply"
    assert [s.name for s in children(spans, reply)] == ["caller.speech", "endpointing", "stt.final", "playout"]
    assert turns[0].status.status_code is StatusCode.UNSET

    [crashed] = [s for s in spans if s.name == "call" and s.attributes["voxgate.call.uuid"] == broken.uuid]
    assert crashed.attributes["voxgate.call.outcome"] == "error" and crashed.attributes["error.type"] == "RuntimeError"
    assert (crashed.status.status_code, crashed.status.description) == (StatusCode.ERROR, "RuntimeError")
    words_never_exported(spans, [r["text"] for r in rows])
    exported = json.dumps([[dict(s.attributes), s.status.description] for s in spans])
    assert not [word for word in ("scripted", "card", "4111") if word in exported]  # the errors' own words


# ---------------------------------------------------------------- the Tracing itself


def _caller_turn(seq: int, onset: datetime, words: str) -> TurnRecord:
    return TurnRecord(pbx="asterisk", call_uuid="c1", seq=seq, speaker="caller", text=words, heard_text=None,
                      started_at=onset, ended_at=onset + timedelta(seconds=1), confidence=0.9)


async def test_a_caller_turn_left_unanswered_is_a_turn_of_its_own(tmp_path):
    """The caller went on talking before the reply was audible: that turn has no reply, the next one has."""
    exporter = InMemorySpanExporter()
    traced = tracing.start(replace(make_settings(f"sqlite:///{tmp_path}/r.sqlite3"), otel=True), exporter=exporter)
    t0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
    traced.call_started(CallInfo("c1", "asterisk", "inbound", flow="sales", started_at=t0))
    traced.turn_completed(_caller_turn(0, t0 + timedelta(seconds=1), "I would like"))
    traced.turn_completed(_caller_turn(1, t0 + timedelta(seconds=2.5), "I would like to order"))
    traced.turn_completed(TurnRecord(
        pbx="asterisk", call_uuid="c1", seq=2, speaker="agent", text="Sure.", heard_text="Sure.",
        started_at=t0 + timedelta(seconds=4.2), ended_at=t0 + timedelta(seconds=5), stt_ms=120.0,
        llm_first_token_ms=300.0, tts_first_audio_ms=500.0, voice_to_voice_ms=700.0, detail={"endpoint_ms": 80.0}))
    traced.turn_completed(_caller_turn(3, t0 + timedelta(seconds=6), "thanks"))  # then they hang up
    traced.call_ended(CallRecord(
        pbx="asterisk", call_uuid="c1", direction="inbound", caller_id_name="", caller_id_number="",
        destination="", started_at=t0, answered_at=t0, ended_at=t0 + timedelta(seconds=8), duration_s=8, billsec=8,
        hangup_cause="NORMAL_CLEARING", flow="sales", outcome="caller_hangup", error=None, variables={}))
    await traced.close()
    spans = list(exporter.get_finished_spans())
    call, _ = call_tree(spans, "c1")
    first, answered, last = children(spans, call)
    assert [t.attributes["voxgate.turn.answered"] for t in (first, answered, last)] == [False, True, False]
    assert [s.name for s in children(spans, first)] == ["caller.speech"]
    assert [s.name for s in children(spans, answered)] == REPLY_STAGES
    stages = {s.name: s for s in children(spans, answered)}
    assert stages["caller.speech"].end_time == ns(t0 + timedelta(seconds=3.5))
    assert stages["endpointing"].end_time - stages["endpointing"].start_time == 80_000 * US
    assert stages["llm.first_token"].start_time == stages["stt.final"].end_time
    assert stages["tts.first_audio"].end_time == ns(t0 + timedelta(seconds=4))
    assert (answered.start_time, answered.end_time) == (ns(t0 + timedelta(seconds=2.5)), ns(t0 + timedelta(seconds=5)))
    assert call.attributes["voxgate.call.turns"] == 4 and call.end_time == ns(t0 + timedelta(seconds=8))


async def test_resource_names_the_service_and_the_environment_may_add_to_it(sqlite_url, monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=lab")
    settings = make_settings(sqlite_url)
    assert not settings.otel and tracing.start(settings) is None
    traced = tracing.start(replace(settings, otel=True), exporter=InMemorySpanExporter())
    try:
        resource = dict(traced.provider.resource.attributes)
    finally:
        await traced.close()
    assert resource["service.name"] == "voxgate" and resource["service.instance.id"] == "e2e"
    assert resource["deployment.environment"] == "lab"


# ---------------------------------------------------------------- off, or not installed


def _python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOXGATE_", "OTEL_"))}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)


OFF = """
import asyncio, json, sys, tempfile
from pathlib import Path
from controller.agent.conversation import AgentConfig, Engines
from controller.agent.fixed import FixedLlm, FixedStt, FixedTts
from controller.agent.silero import SileroVad
from controller.flows import FlowRegistry
from controller.records.store import list_turns
from controller.simulator.caller import CallerScript, Hangup, Listen, Say, WaitFor
from tests.e2e.conftest import start_rig, stop_rig, stored_call

flows = FlowRegistry()

@flows.register("agent")
async def agent(call):
    await call.answer()
    return (await call.agent(AgentConfig(system_prompt="test", greeting="Hi."))).reason

async def main():
    engines = Engines(stt=FixedStt("Hello there"), llm=FixedLlm("Hi."), tts=FixedTts(), vad=SileroVad())
    rig = await start_rig(Path(tempfile.mkdtemp()), {url!r}, flows=flows, engines=engines)
    try:
        channel = await rig.call(CallerScript([WaitFor("answer"), Listen(0.4), Say({speech!r}),
                                               Listen(0.5, timeout=10), Hangup()]), flow="agent")
        await stored_call(rig.controller, rig.database_url, channel)
        tracing_off = rig.controller.tracing is None and not rig.controller.settings.otel
    finally:
        await stop_rig(rig)
    print(json.dumps({{"off": tracing_off, "turns": len(list_turns(rig.database_url, channel.uuid)),
                      "otel": sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")}}))

asyncio.run(main())
"""


def test_with_otel_off_a_call_runs_without_importing_opentelemetry(sqlite_url):
    done = _python(OFF.format(url=sqlite_url, speech=str(SPEECH / "u03.wav")))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"off": True, "turns": 3, "otel": []}


MISSING = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # as if it were not installed
from controller import tracing
from controller.config import ConfigError, Settings, load_settings
try:
    load_settings({{"VOXGATE_OTEL": "true", "VOXGATE_TOKEN_SECRET": "a-token-secret-for-the-test"}})
except ConfigError as exc:
    print("settings:", exc)
try:
    tracing.start(Settings(otel=True))
except ConfigError as exc:
    print("start:", exc)
"""


@pytest.mark.parametrize(("blocked", "named"), [
    (["opentelemetry"], "opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http"),
    (["opentelemetry.exporter"], "opentelemetry-exporter-otlp-proto-http"),
])
def test_otel_on_without_its_packages_stops_start_up_naming_the_extra(blocked, named):
    done = _python(MISSING.format(blocked=blocked))
    assert done.returncode == 0, done.stderr[-3000:]
    why = f"needs {named}, not installed: pip install 'voxgate[otel]'"
    assert done.stdout.splitlines() == [f"settings: VOXGATE_OTEL: {why}", f"start: otel (VOXGATE_OTEL): {why}"]
