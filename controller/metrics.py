"""Prometheus metrics: what an operator graphs and alerts on.

Levels (live calls, connections, journal depth) are read from the controller when Prometheus
scrapes, so the media path never pays for them; only events that happen once per call or per
turn (a call's end, a turn's latencies, an engine failure) are counted as they happen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter as PromCounter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.records.cdr import CallRecord, TurnRecord

if TYPE_CHECKING:
    from controller.app import Controller

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Voice-to-voice sits around 0.5-1.5 s; barge-in reaction around 0.1-0.4 s.
LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)
BARGE_IN_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)


class Metrics:
    """One registry per controller (tests run several controllers in one process)."""

    def __init__(self, controller: Controller) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = PromCounter("voxgate_calls", "Calls finished, by PBX, flow and outcome",
                                 ("pbx", "flow", "outcome"), registry=self.registry)
        self.voice_to_voice = Histogram(
            "voxgate_voice_to_voice_seconds", "End of caller speech to the first agent audio sent to the PBX",
            ("pbx",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.barge_in = Histogram(
            "voxgate_barge_in_seconds", "Caller speech onset to the agent's audio stopped",
            ("pbx",), buckets=BARGE_IN_BUCKETS, registry=self.registry)
        self.engine_failures = PromCounter(
            "voxgate_engine_failures", "Agent replies that fell back to the canned apology, by stage and kind",
            ("stage", "kind"), registry=self.registry)
        self.registry.register(_Levels(controller))

    def call_ended(self, record: CallRecord) -> None:
        self.calls.labels(record.pbx, record.flow or "none", record.outcome).inc()

    def turn_completed(self, turn: TurnRecord) -> None:
        if turn.voice_to_voice_ms is not None:
            self.voice_to_voice.labels(turn.pbx).observe(turn.voice_to_voice_ms / 1000)
        if turn.barge_in_ms is not None:
            self.barge_in.labels(turn.pbx).observe(turn.barge_in_ms / 1000)
        reason = turn.detail.get("fallback")
        if isinstance(reason, str):
            self.engine_failures.labels(*failure_labels(reason)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def failure_labels(reason: str) -> tuple[str, str]:
    """(stage, kind) of a fallback reason such as 'stt: ...', 'timed out' or an engine's error text."""
    stage = reason.split(":", 1)[0] if reason.startswith(("stt:", "llm:", "tts:")) else "reply"
    return stage, "timeout" if "timed out" in reason or "timeout" in reason.lower() else "error"


class _Levels(Collector):
    """Gauges computed at scrape time from the controller's own state."""

    def __init__(self, controller: Controller) -> None:
        self._controller = controller

    def describe(self) -> list[Metric]:
        return []  # computed metrics: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        c = self._controller
        yield _gauge("voxgate_calls_active", "Calls in progress, by PBX and flow", ("pbx", "flow"),
                     Counter((call.info.pbx, call.info.flow or "none") for call in c.calls.values()))
        yield _gauge("voxgate_media_connections", "Media streams connected, by kind (audio fork, AudioSocket, "
                     "chan_websocket)", ("kind",),
                     Counter(type(call.media).__name__ for call in c.calls.values() if call.media.connected))
        links = {("freeswitch", "esl_outbound"): 1.0}
        if c.inbound is not None:
            links["freeswitch", "esl_inbound"] = float(c.inbound.connected.is_set())
        if c.asterisk is not None:
            links["asterisk", "ami"] = float(c.asterisk.ami.connected)
        yield _gauge("voxgate_pbx_connected", "1 while the control connection to the PBX is up", ("pbx", "link"),
                     links)
        yield _gauge("voxgate_records_pending", "Records accepted but not yet in the database (journal depth)",
                     (), {(): float(c.writer.pending)})
        refused = CounterMetricFamily("voxgate_records_refused", "Records refused because the queue was full")
        refused.add_metric([], float(c.stats.records_refused))
        yield refused
        yield _gauge("voxgate_gc_longest_seconds", "Longest scheduled garbage-collection pause", (),
                     {(): c.collector.stats.longest_ms / 1000})


def _gauge(name: str, documentation: str, labels: tuple[str, ...], values) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for key, value in dict(values).items():
        family.add_metric(list(key) if isinstance(key, tuple) else [key], float(value))
    return family
