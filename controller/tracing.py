"""Optional OpenTelemetry traces: one span per call, a child span per turn, a span per engine stage.

Nothing here touches the media path. Like the metrics, the spans are built from what the call and
the agent already record (the CallInfo, each TurnRecord, the CallRecord), with explicit start and end
times taken from the timestamps the turn code measured. With `otel` off this module imports nothing
of OpenTelemetry and the controller holds None instead of a Tracing: the cost is one `is None` test
per call and per turn. Spans carry numbers, names and lengths, never words: transcripts are personal
data, and an engine's error text may quote them (or a URL with a key), so errors show as kinds.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import TYPE_CHECKING

from controller.config import ConfigError
from controller.metrics import failure_labels

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from controller.call import CallInfo
    from controller.config import Settings
    from controller.records.cdr import CallRecord, TurnRecord

INSTALL_HINT = "pip install 'voxgate[otel]'"
SERVICE_NAME = "voxgate"
# distribution -> a module it provides (the exporter is only needed when none is handed in)
_SDK = {"opentelemetry-sdk": "opentelemetry.sdk.trace"}
_EXPORTER = {"opentelemetry-exporter-otlp-proto-http": "opentelemetry.exporter.otlp.proto.http"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ERROR_TYPE = re.compile(r"[A-Za-z_][\w.]*")

Attributes = dict[str, str | bool | int | float]

log = logging.getLogger(__name__)


def _contained(hook):
    """A tracing fault is logged and stops there: a call's clean-up and records never depend on its trace."""
    @functools.wraps(hook)
    def run(self, record) -> None:
        try:
            hook(self, record)
        except Exception:
            log.exception("tracing: %s failed; the call goes on untraced", hook.__name__)
    return run


def unavailable(*, exporter: bool = True) -> str | None:
    """Why tracing cannot start here (packages missing), or None; finds the modules without running them."""
    needed = {**_SDK, **(_EXPORTER if exporter else {})}
    missing = [name for name, module in needed.items() if not _importable(module)]
    if not missing:
        return None
    return f"needs {', '.join(missing)}, not installed: {INSTALL_HINT}"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing (or blocked)
        return False


def start(settings: Settings, exporter: SpanExporter | None = None) -> Tracing | None:
    """The tracing of one controller, or None when `otel` is off (then OpenTelemetry is never imported).

    Spans go to `exporter` when given (tests), else to OTLP over HTTP configured the standard way
    (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_HEADERS, ...). A provider of its own, not
    the global one: several controllers may share a process, and the flows' own tracing stays theirs.
    """
    if not settings.otel:
        return None
    why = unavailable(exporter=exporter is None)
    if why is not None:
        raise ConfigError([f"otel (VOXGATE_OTEL): {why}"])
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=_resource(settings.instance_id))
    # exports from its own thread in batches: ending a span on the event loop only queues it
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return Tracing(provider)


def _resource(instance_id: str):
    """voxgate's service name and instance id; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still win."""
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    own: Attributes = {"service.name": SERVICE_NAME, "service.instance.id": instance_id}
    try:
        own["service.version"] = metadata.version("voxgate")
    except metadata.PackageNotFoundError:
        pass
    return Resource.create(own).merge(OTELResourceDetector().detect())


# ------------------------------------------------------------ what a turn's spans show (pure)


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a turn as a span: nanoseconds since the epoch, and (name, time, attributes) events."""

    name: str
    start_ns: int
    end_ns: int
    attributes: Attributes
    events: tuple[tuple[str, int, Attributes], ...] = ()


@dataclass(frozen=True, slots=True)
class TurnTrace:
    """One turn (the caller's words and the agent's reply to them, or either alone) as a span."""

    start_ns: int
    end_ns: int
    attributes: Attributes
    stages: tuple[Stage, ...]
    error: str | None = None  # the status description when the reply fell back: "llm error", "reply timeout"


def turn_trace(caller: TurnRecord | None, agent: TurnRecord | None) -> TurnTrace:
    """The span of a turn. Stages follow each other from the end of the caller's speech: endpointing,
    final transcript, first model token, first synthesised audio, each ending when the turn code saw it;
    then the playout of the reply. A greeting (no caller) or an abandoned reply (no agent) has fewer."""
    if caller is None and agent is None:
        raise ValueError("a turn needs a caller turn, an agent turn or both")
    attributes: Attributes = {"voxgate.call.uuid": (caller or agent).call_uuid}
    stages: list[Stage] = []
    if caller is not None:
        attributes.update(_caller_attributes(caller))
        speech_end = _ns(caller.ended_at)
        stages.append(Stage("caller.speech", _ns(caller.started_at), speech_end,
                            {"voxgate.turn.caller_chars": len(caller.text)}))
    error = None
    if agent is not None:
        attributes.update(_agent_attributes(agent))
        if caller is not None:
            stages += _engine_stages(speech_end, agent)
        stages.append(_playout(agent))
        reason = agent.detail.get("fallback")
        if isinstance(reason, str):
            stage, kind = failure_labels(reason)
            attributes.update({"voxgate.turn.fallback_stage": stage, "error.type": kind})
            error = f"{stage} {kind}"
    attributes["voxgate.turn.answered"] = agent is not None
    return TurnTrace(min(s.start_ns for s in stages), max(s.end_ns for s in stages), attributes, tuple(stages),
                     error)


def _caller_attributes(caller: TurnRecord) -> Attributes:
    found: Attributes = {"voxgate.turn.caller_seq": caller.seq, "voxgate.turn.caller_chars": len(caller.text),
                         "voxgate.turn.caller_words": len(caller.text.split())}
    if caller.confidence is not None:
        found["voxgate.turn.stt_confidence"] = caller.confidence
    return found


def _agent_attributes(agent: TurnRecord) -> Attributes:
    found: Attributes = {"voxgate.turn.seq": agent.seq, "voxgate.turn.reply_chars": len(agent.text),
                         "voxgate.turn.heard_chars": len(agent.heard_text or ""),
                         "voxgate.turn.interrupted": agent.interrupted}
    for name in ("stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "voice_to_voice_ms", "barge_in_ms"):
        value = getattr(agent, name)
        if value is not None:
            found[f"voxgate.turn.{name}"] = value
    detail = agent.detail
    if isinstance(detail.get("endpoint_ms"), int | float):
        found["voxgate.turn.endpoint_ms"] = detail["endpoint_ms"]
    tool_calls = detail.get("tool_calls") or []
    if tool_calls:
        found["voxgate.turn.tool_calls"] = len(tool_calls)
        found["voxgate.turn.tool_errors"] = sum(1 for c in tool_calls if isinstance(c, Mapping) and c.get("error"))
    if detail.get("filler"):
        found["voxgate.turn.filler"] = True
    if detail.get("false_interruptions"):
        found["voxgate.turn.false_interruptions"] = detail["false_interruptions"]
    found.update({f"voxgate.engine.{kind}": name for kind, name in agent.engines.items()})
    return found


def _engine_stages(speech_end: int, agent: TurnRecord) -> list[Stage]:
    """Consecutive stages, each from the previous milestone to its own (latencies count from speech end)."""
    endpoint = agent.detail.get("endpoint_ms")
    marks = (("endpointing", endpoint if isinstance(endpoint, int | float) else None), ("stt.final", agent.stt_ms),
             ("llm.first_token", agent.llm_first_token_ms), ("tts.first_audio", agent.tts_first_audio_ms))
    stages, at = [], speech_end
    for name, ms in marks:
        if ms is None:
            continue
        reached = speech_end + round(ms * 1_000_000)
        stages.append(Stage(name, min(at, reached), reached, {"voxgate.stage.since_speech_end_ms": ms}))
        at = max(at, reached)
    return stages


def _playout(agent: TurnRecord) -> Stage:
    """From the first audio sent to the PBX to the reply's end; a barge-in ends it, as an event."""
    start, end = _ns(agent.started_at), _ns(agent.ended_at)
    events: tuple[tuple[str, int, Attributes], ...] = ()
    if agent.barge_in_ms is not None:
        events = (("barge_in", end, {"voxgate.turn.barge_in_ms": agent.barge_in_ms}),)
    return Stage("playout", start, max(start, end), {"voxgate.turn.interrupted": agent.interrupted,
                                                     "voxgate.turn.heard_chars": len(agent.heard_text or "")},
                 events)


def call_error_type(record: CallRecord) -> str | None:
    """The kind of a failed call ("RuntimeError"; "error" when the text names none), never the text."""
    if record.outcome != "error":
        return None
    prefix = (record.error or "").split(":", 1)[0]
    return prefix if _ERROR_TYPE.fullmatch(prefix) else "error"


def _ns(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


# ------------------------------------------------------------ the spans


@dataclass(slots=True)
class _CallSpan:
    span: Span
    context: Context
    start_ns: int
    waiting: TurnRecord | None = None  # the caller's turn, until the reply to it is recorded
    turns: int = 0


class Tracing:
    """Spans of the calls in progress, keyed by call uuid: concurrent calls never share a parent."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace

        self.provider = provider
        self._trace = trace
        self._tracer: Tracer = provider.get_tracer("voxgate")
        self._calls: dict[str, _CallSpan] = {}

    @_contained
    def call_started(self, info: CallInfo) -> None:
        start = _ns(info.started_at or datetime.now(UTC))
        span = self._tracer.start_span("call", start_time=start, attributes={
            "voxgate.call.uuid": info.uuid, "voxgate.pbx": info.pbx, "voxgate.flow": info.flow or "",
            "voxgate.call.direction": info.direction})
        self._calls[info.uuid] = _CallSpan(span, self._trace.set_span_in_context(span), start)

    @_contained
    def turn_completed(self, turn: TurnRecord) -> None:
        call = self._calls.get(turn.call_uuid)
        if call is None:
            return
        call.turns += 1
        if turn.speaker == "caller":
            self._flush(call)  # a caller turn still waiting was not answered: the caller went on talking
            call.waiting = turn
            return
        # a reply to the caller's turn has an STT latency; greetings and re-asks answer nobody
        caller = call.waiting if turn.stt_ms is not None else None
        if caller is not None:
            call.waiting = None
        self._emit(call, turn_trace(caller, turn))

    @_contained
    def call_ended(self, record: CallRecord) -> None:
        call = self._calls.pop(record.call_uuid, None)
        if call is None:
            return
        self._flush(call)
        span = call.span
        span.set_attributes({"voxgate.call.outcome": record.outcome, "voxgate.call.hangup_cause": record.hangup_cause,
                             "voxgate.call.duration_s": record.duration_s, "voxgate.call.billsec": record.billsec,
                             "voxgate.call.turns": call.turns})
        kind = call_error_type(record)
        if kind is not None:
            span.set_attribute("error.type", kind)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, kind))
        span.end(end_time=max(call.start_ns, _ns(record.ended_at)))

    async def close(self) -> None:
        """End the spans of calls still open (the controller is stopping), then export what is queued."""
        for call in self._calls.values():
            self._flush(call)
            call.span.set_attribute("voxgate.call.outcome", "unfinished")
            call.span.end()
        self._calls.clear()
        await asyncio.to_thread(self.provider.shutdown)  # waits for the exporter: off the loop

    def _flush(self, call: _CallSpan) -> None:
        if call.waiting is not None:
            self._emit(call, turn_trace(call.waiting, None))
            call.waiting = None

    def _emit(self, call: _CallSpan, turn: TurnTrace) -> None:
        span = self._tracer.start_span("turn", context=call.context, start_time=turn.start_ns,
                                       attributes=turn.attributes)
        if turn.error is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, turn.error))
        inside = self._trace.set_span_in_context(span)
        for stage in turn.stages:
            child = self._tracer.start_span(stage.name, context=inside, start_time=stage.start_ns,
                                            attributes=stage.attributes)
            for name, at, attributes in stage.events:
                child.add_event(name, attributes, timestamp=at)
            child.end(end_time=stage.end_ns)
        span.end(end_time=turn.end_ns)

