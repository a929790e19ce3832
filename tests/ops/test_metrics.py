"""Prometheus metrics: levels read from a live controller at scrape time, per-turn latencies, engine failures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from controller.app import Controller
from controller.flows import builtin_flows
from controller.metrics import Metrics, failure_labels
from controller.records.cdr import TurnRecord
from controller.simulator.caller import CallerScript, Wait, WaitFor
from tests.e2e.conftest import make_settings, start_rig, stop_rig


def _samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = metrics.render().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _turn(**kw) -> TurnRecord:
    now = datetime.now(UTC)
    return TurnRecord(pbx="asterisk", call_uuid="c1", seq=1, speaker="agent", text="hi", heard_text="hi",
                      started_at=now, ended_at=now, **kw)


async def test_live_calls_and_media_connections_are_read_at_scrape_time(tmp_path, sqlite_url):
    rig = await start_rig(tmp_path, sqlite_url)
    metrics = Metrics(rig.controller)
    try:
        channel = await rig.call(CallerScript([WaitFor("answer", timeout=10), Wait(1.5)]))
        async with asyncio.timeout(10):
            while not any(c.media.connected for c in rig.controller.calls.values()):
                await asyncio.sleep(0.02)
        live = _samples(metrics)
        await asyncio.wait_for(channel.ended.wait(), 20)
        async with asyncio.timeout(10):
            while rig.controller.calls:
                await asyncio.sleep(0.02)
        after = _samples(metrics)
    finally:
        await stop_rig(rig)
    assert live[("voxgate_calls_active", (("flow", "greeting"), ("pbx", "freeswitch")))] == 1
    assert live[("voxgate_media_connections", (("kind", "ForkMediaPort"),))] == 1
    assert live[("voxgate_pbx_connected", (("link", "esl_outbound"), ("pbx", "freeswitch")))] == 1
    assert ("voxgate_calls_active", (("flow", "greeting"), ("pbx", "freeswitch"))) not in after
    assert after[("voxgate_records_pending", ())] >= 0 and after[("voxgate_records_refused_total", ())] == 0


def test_turn_latencies_and_engine_failures_are_observed(sqlite_url):
    metrics = Metrics(Controller(make_settings(sqlite_url), builtin_flows()))  # built, never started: no calls
    metrics.turn_completed(_turn(voice_to_voice_ms=640.0))
    metrics.turn_completed(_turn(voice_to_voice_ms=1800.0, barge_in_ms=130.0))
    metrics.turn_completed(_turn(detail={"fallback": "llm timed out"}))
    samples = _samples(metrics)
    assert samples[("voxgate_voice_to_voice_seconds_count", (("pbx", "asterisk"),))] == 2
    assert samples[("voxgate_voice_to_voice_seconds_bucket", (("le", "0.8"), ("pbx", "asterisk")))] == 1
    assert samples[("voxgate_barge_in_seconds_bucket", (("le", "0.15"), ("pbx", "asterisk")))] == 1
    assert samples[("voxgate_engine_failures_total", (("kind", "timeout"), ("stage", "reply")))] == 1


def test_failure_reasons_map_to_stage_and_kind():
    assert failure_labels("stt: connection refused") == ("stt", "error")
    assert failure_labels("timed out") == ("reply", "timeout")
    assert failure_labels("engine said no") == ("reply", "error")
