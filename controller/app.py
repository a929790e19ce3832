"""The voxgate process: one Controller wired at start-up from Settings.

It owns the ESL hub thread, the outbound ESL server, the optional inbound ESL client, the
audio fork WebSocket server, the optional Asterisk side (AMI and its media servers) and the
record writer, and runs one task per call.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from controller import prompts, tokens, tracing
from controller.adapter import AdapterCall
from controller.agent.conversation import Engines
from controller.agent.factory import build_engines, warm_up
from controller.asterisk.pbx import AsteriskPbx
from controller.audiofork import protocol as fork
from controller.audiofork.media import ForkMediaPort
from controller.audiofork.server import AudioForkServer, fork_url
from controller.call import Answered, CallEvent, CallGone, CallInfo, CommandFailed, Dtmf, DtmfSent, Transferred
from controller.collector import ScheduledCollector
from controller.config import Settings
from controller.dialer import Dialer
from controller.esl import protocol as esl
from controller.esl.client import CALL_EVENTS, EslError, EslLink, InboundClient, OutboundServer
from controller.esl.hub import GeventHub
from controller.esl.protocol import EslEvent, EslFrame
from controller.flows import Flow, FlowError, FlowRegistry
from controller.freeswitch.call import FreeSwitchCall, audit_payload, call_info_from_channel
from controller.http_api import ApiServer
from controller.live_calls import LiveCalls
from controller.logs import current_call
from controller.metrics import Metrics
from controller.records.cdr import EventRecord, TransferRecord, TurnRecord, tool_call_records
from controller.records.dtmf_log import DtmfLog
from controller.records.recording import Recorder, RecordingStore, parse_keys
from controller.records.redact import Redactor, compile_patterns
from controller.records.store import RecordQueueFull, RecordWriter
from controller.routing import choose_flow, unregistered
from controller.webhooks import (
    WebhookDispatcher, call_answered, call_ended, call_started, call_transferred, turn_completed,
)

log = logging.getLogger(__name__)

HANGUP_COMPLETE_WAIT_S = 5.0
# After the hangup, verbs raise CallGone and the agent returns with its last turns recorded: a flow gets this
# long to end by itself (a truer outcome than a cancellation) before it is cancelled wherever it is.
FLOW_SETTLE_S = 0.5
FLOW_CANCEL_WAIT_S = 5.0  # a flow that swallows its cancellation is left behind after this
STOP_WAIT_S = 15.0  # stop(): cancelled call tasks get this long to hang up and write their records
SWITCH_INTERVAL_S = 0.0005
State = Literal["starting", "ready", "draining"]
MEDIA_CONNECT_WAIT_S = 3.0


@dataclass
class CallStats:
    """Counters an operator (and the benchmark) reads."""

    started: int = 0
    finished: int = 0
    failed: int = 0
    records_refused: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass
class _CallBooks:
    """What one call accumulates for its records besides the CDR."""

    dtmf: DtmfLog
    transfers: int = 0
    recorder: Recorder | None = None


def _wants_recording(default: bool, variables: dict[str, str]) -> bool:
    """record_calls, unless the dialplan set voxgate_record for this call."""
    value = variables.get("voxgate_record", "").strip().lower()
    return default if value not in ("true", "false") else value == "true"


class Controller:
    """Takes calls from FreeSWITCH (and Asterisk, when configured) and runs a flow on each."""

    def __init__(self, settings: Settings, flows: FlowRegistry, writer: RecordWriter | None = None,
                 engines: Engines | None = None) -> None:
        self.settings = settings
        self.engines = engines or build_engines(settings)
        self.on_turn: Callable[[TurnRecord], None] | None = None  # observers (the demo prints turns)
        self.flows = FlowRegistry()
        self.use_flows(flows)
        self.writer = writer or RecordWriter(settings.database_url.reveal(), journal_dir=settings.journal_dir)
        self.redactor = None if settings.store_raw_text else Redactor(
            compile_patterns(json.loads(settings.redact_patterns or "{}")))
        self.recordings = RecordingStore(settings.recordings_dir, parse_keys(settings.recording_keys.reveal())[0]) \
            if settings.recording_keys else None
        self.collector = ScheduledCollector()
        self.hub = GeventHub()
        self.calls = LiveCalls()
        self.stats = CallStats()
        self._secret = settings.token_secret.reveal() if settings.token_secret else ""
        self._tasks: set[asyncio.Task] = set()
        self._seq: dict[str, int] = {}
        self._books: dict[str, _CallBooks] = {}
        self.ws = AudioForkServer(self._secret, self._media_port, max_message=settings.max_ws_message,
                                  instance=settings.instance_id)
        self.outbound = OutboundServer(self.hub, settings.bind_host, settings.esl_outbound_port, self._on_outbound)
        self.inbound: InboundClient | None = None
        self.asterisk: AsteriskPbx | None = None
        if settings.asterisk:
            self.asterisk = AsteriskPbx(self, settings, settings.asterisk_cdr_zone)
        self.dialer = Dialer(self, self._submit_record)  # outbound calls, over whichever PBX is configured
        self.metrics = Metrics(self)
        self.tracing = tracing.start(settings)  # None unless settings.otel: then nothing is traced
        self.webhooks = WebhookDispatcher(settings.webhooks, self._submit_record)
        self.api: ApiServer | None = None  # the HTTP API (settings.api): started last, stopped after the calls
        self.state: State = "starting"  # then "ready" (taking calls), then "draining": what readiness reports

    async def start(self) -> None:
        if self.settings.preload_engines:
            await warm_up(self.engines)
        self.hub.start()
        self.writer.start()
        await self.ws.start(self.settings.bind_host, self.settings.ws_port)
        await self.outbound.start()
        if self.settings.esl_inbound:
            password = self.settings.esl_password.reveal() if self.settings.esl_password else ""
            self.inbound = InboundClient(self.hub, self.settings.esl_host, self.settings.esl_port, password,
                                         events=CALL_EVENTS, on_event=self._on_inbound_event,
                                         on_connected=self._resync)
            await self.inbound.start()
        if self.asterisk is not None:
            await self.asterisk.start()
        # A full collection walks every object and stalls all calls at once (~100 ms at scale):
        # move what exists after start-up out of the collector's way, and collect on the loop's schedule.
        gc.collect()
        gc.freeze()
        self.collector.start()
        # Worker threads (record writer, recordings, engines) hold the GIL up to the switch interval
        # whenever the loop wants it back: 5 ms by default, which showed as inbound p99 under a busy
        # database. A shorter slice costs a little throughput in those threads, never the media.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.webhooks.start()
        if self.settings.api:
            self.api = ApiServer(self)
            await self.api.start()
        self.state = "ready"
        log.info("voxgate ready: outbound ESL on %s:%s, audio fork on %s:%s", self.settings.bind_host,
                 self.outbound.port, self.settings.bind_host, self.ws.port)

    async def stop(self, drain_s: float = 5.0) -> None:
        """Drain, then stop: take no new calls, let calls in progress run up to `drain_s`, end the rest.

        The listeners close first, so the PBX's next call fails over to another instance (FreeSWITCH's
        next `socket` action, Asterisk's dialplan after AudioSocket fails). Nothing more is dialled: an
        answered leg could not come back. The API stays up while the calls finish, so readiness answers
        503 "draining" meanwhile.
        """
        self.state = "draining"  # the dialer refuses new calls from here on
        await self.outbound.stop_listening()
        if self.asterisk is not None:
            await self.asterisk.stop_listening()
        if self.api is not None:
            await self.api.stop_dialling()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=drain_s)
        for task in self._tasks:
            task.cancel()
        # cancelled calls still hang up and write their records before the writer closes; a task that
        # ignores its cancellation must not keep the process from stopping
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_WAIT_S)
        if self.api is not None:
            await self.api.stop()
        if self.inbound is not None:
            await self.inbound.stop()
        if self.asterisk is not None:
            await self.asterisk.stop()
        await self.outbound.stop()
        await self.ws.stop()
        await self.webhooks.stop(drain_s)  # before the writer: its delivery rows go through it
        if self.tracing is not None:
            await self.tracing.close()
        await self.writer.close()
        await self.collector.stop()
        if self.recordings is not None:
            self.recordings.close()
        self.hub.stop()

    @property
    def fork_base_url(self) -> str:
        if self.settings.ws_public_url:
            return self.settings.audio_fork_base_url
        return f"ws://{self.settings.bind_host}:{self.ws.port}"

    def _media_port(self, call_uuid: str) -> ForkMediaPort | None:
        call = self.calls.get(call_uuid)
        live = isinstance(call, FreeSwitchCall) and not call.ended.is_set()
        return call.media if live else None

    # ------------------------------------------------------------ taking calls

    async def _on_outbound(self, link: EslLink, data: dict[str, str]) -> None:
        """FreeSWITCH's socket app connected for one channel."""
        call = self._new_call(data, link, outbound=True)
        link.on_event = call.handle_event
        link.on_notice = lambda frame: self._on_notice(call, frame)
        # the call's task exists from the moment the call is listed: a drain starting now waits for it
        self.spawn(self._run_outbound(call, link))

    async def _run_outbound(self, call: FreeSwitchCall, link: EslLink) -> None:
        try:
            await link.command(esl.encode_command("myevents"))
            await link.command(esl.subscribe(["PLAYBACK_START", "PLAYBACK_STOP", *[
                e for e in CALL_EVENTS if "::" in e]]))
            await link.command(esl.encode_command("linger"))
        except EslError as exc:
            log.error("call %s: could not set up the outbound socket: %s", call.info.uuid, exc)
            call.connection_lost(str(exc))
        else:
            await call.claim()
        if call.info.session:
            log.warning("call %s: taken over as session %d (an earlier instance lost it mid-call): its flow "
                        "starts again", call.info.uuid, call.info.session)
        await self.run_call(call)

    def _on_notice(self, call: FreeSwitchCall, frame: EslFrame) -> None:
        if frame.content_type == "voxgate/connection-lost":
            call.connection_lost(frame.headers.get("Reason", "connection lost"))

    def _new_call(self, data: dict[str, str], link: EslLink, *, outbound: bool) -> FreeSwitchCall:
        info = call_info_from_channel(data)
        spec = fork.ForkSpec(
            url=fork_url(self.fork_base_url, info.uuid,
                         tokens.mint(self._secret, info.uuid, self.settings.token_ttl_s,
                                     instance=self.settings.instance_id)),
            mix=self.settings.audio_fork_mix, rate=self.settings.audio_fork_rate,
            streaming=self.settings.audio_fork_mode == "streaming", stream_rate=self.settings.audio_fork_rate)
        media = ForkMediaPort(info.uuid, spec, lambda command: call.link_api(command))
        call = FreeSwitchCall(info, link, media, outbound=outbound,
                              on_event=lambda e: self.audit(e.unique_id, e.kind, audit_payload(e)))
        self.adopt(call)
        return call

    def adopt(self, call: AdapterCall) -> None:
        """A new call from any PBX adapter: choose its flow, wire its records, recording and agent engines."""
        info = call.info
        info.flow = choose_flow(info, self.settings.routes, self.settings.default_flow)  # once, so the CDR shows it
        call.agent_engines = self.engines
        call.dialer = self.dialer  # attended transfers dial their consult leg through it
        call.on_turn = self._on_turn if not info.session else \
            lambda turn: self._on_turn(replace(turn, seq=info.seq_base + turn.seq))
        books = self._books[info.uuid] = _CallBooks(
            DtmfLog(info.pbx, info.uuid, self._submit_record, mask=self.redactor is not None,
                    first_seq=info.seq_base + 1))
        call.on_call_event = lambda event: self._on_call_event(books, info, event)
        if _wants_recording(self.settings.record_calls, info.variables):
            if self.recordings is None:
                log.warning("call %s: voxgate_record asks for a recording, but no recording_keys are configured "
                            "(recordings are never stored unencrypted): not recording", info.uuid)
            else:
                call.media.tap = books.recorder = self.recordings.start(
                    info.pbx, info.uuid, call.media.sample_rate, info.started_at or datetime.now(UTC),
                    seq=info.seq_base + 1)
        self.calls[info.uuid] = call
        self._seq[info.uuid] = info.seq_base
        self.stats.started += 1
        self.webhooks.publish("call.started", call_started(info))
        if self.tracing is not None:
            self.tracing.call_started(info)
        if info.answered_at is not None:  # answered by the dialplan before voxgate had it
            self.webhooks.publish("call.answered", call_answered(info, info.answered_at))

    def spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ inbound mode (parked calls)

    def _on_inbound_event(self, event: EslEvent) -> None:
        call = self.calls.get(event.unique_id)
        if isinstance(call, FreeSwitchCall):
            if not call.outbound:  # a call on its own outbound socket gets each event there (DTMF once)
                call.handle_event(event)
        elif (call is None and self.state != "draining" and event.name == "CHANNEL_PARK"
              and event.variable("voxgate_flow") is not None
              and event.variable("current_application") != "socket"):  # the socket app parks too (dialled calls)
            assert self.inbound is not None and self.inbound.link is not None
            call = self._new_call(event.headers, self.inbound.link, outbound=False)
            self.spawn(self.run_call(call))

    async def _resync(self) -> None:
        """After a reconnect: keep calls still up, end the ones that vanished meanwhile."""
        assert self.inbound is not None
        known = set(self.calls)  # calls that appear while we ask are not judged by this snapshot
        try:
            reply = await self.inbound.api("show channels as json")
            rows = json.loads(reply.text or "{}").get("rows", [])
        except (EslError, ValueError) as exc:
            log.error("ESL resync failed: %s", exc)
            return
        alive = {row.get("uuid") for row in rows}
        for call_uuid in known:
            call = self.calls.get(call_uuid)
            if not isinstance(call, FreeSwitchCall) or call.outbound:
                continue
            if call_uuid not in alive:
                call.connection_lost("channel gone after ESL reconnect")
            elif self.inbound.link is not None:
                call.rebind(self.inbound.link)
        log.info("ESL resync: %d live channel(s), %d call(s) kept", len(alive),
                 sum(1 for u in self.calls if u in alive))

    # ------------------------------------------------------------ one call

    async def run_call(self, call: AdapterCall) -> None:
        """Run the call's flow to its end, then store what it left; for calls of every PBX."""
        current_call.set(call.info.uuid)  # every log line of this task and the tasks it starts names the call
        outcome, error = "completed", None
        try:
            outcome, error = await self._run_flow(call)
        except asyncio.CancelledError:  # stop(): the drain deadline passed with the call still going
            outcome, error = "interrupted", "voxgate stopped before the call ended (drain_s passed)"
            raise
        finally:
            if call.transferred_to is not None:
                outcome = "transferred"  # the channel goes on in the dialplan; voxgate lets go of it
            else:
                await self._finish(call)
            record = replace(call.call_record(outcome, error), instance=self.settings.instance_id)
            self._submit(lambda: self.writer.submit_call(record))
            self.metrics.call_ended(record)
            if self.tracing is not None:
                self.tracing.call_ended(record)
            self.webhooks.publish("call.ended", call_ended(record))
            await self._close_books(call.info.uuid)
            await call.release()
            if self.calls.get(call.info.uuid) is call:
                self.calls.pop(call.info.uuid)
                self._seq.pop(call.info.uuid, None)
            self.stats.finished += 1
            self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1

    async def _finish(self, call: AdapterCall) -> None:
        """Hang up what the flow left up, then wait for the PBX's CDR."""
        if not call.ended.is_set():
            try:
                await call.hangup()
            except (CallGone, CommandFailed):
                pass
        try:
            await asyncio.wait_for(call.completed.wait(), HANGUP_COMPLETE_WAIT_S)
        except asyncio.TimeoutError:
            log.warning("call %s: no %s within %.0f s", call.info.uuid, call.CDR_SOURCE, HANGUP_COMPLETE_WAIT_S)

    def use_flows(self, flows: FlowRegistry) -> None:
        """Take these flows for calls that arrive from now on; calls in progress keep the flow they run.

        Raises FlowError (a ValueError) when a route names a flow they lack: calls would be routed to nothing.
        """
        problems = unregistered(self.settings.routes, flows.names)
        if problems:
            raise FlowError("\n".join(problems))
        self.flows = flows

    async def _run_flow(self, call: AdapterCall) -> tuple[str, str | None]:
        """Run the flow as a task of its own, so that the caller's hangup ends it wherever it is: within
        FLOW_SETTLE_S, or its finish_after_hangup."""
        flow = self.flows.get(call.info.flow)
        if flow is None:
            log.error("call %s: unknown flow %r", call.info.uuid, call.info.flow)
            return "error", f"unknown flow {call.info.flow!r}"
        task = asyncio.create_task(self._flow_body(call, flow), name=f"flow {flow.name} {call.info.uuid}")
        try:
            if not await _done_before(task, call.ended):  # the caller hung up first
                await asyncio.wait({task}, timeout=max(FLOW_SETTLE_S, flow.finish_after_hangup))
        finally:
            if not task.done():  # the caller hung up, or the controller is stopping
                await self._cancel_flow(call, flow, task)
        return await self._flow_outcome(call, flow, task)

    @staticmethod
    async def _flow_body(call: AdapterCall, flow: Flow) -> str | None:
        await call.start_media({"callSid": call.info.uuid, "flow": flow.name})
        return await flow.fn(call)

    async def _cancel_flow(self, call: AdapterCall, flow: Flow, task: asyncio.Task) -> None:
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=FLOW_CANCEL_WAIT_S)
        if not done:
            log.error("call %s: flow %r ignored its cancellation for %.0f s; the call ends without it",
                      call.info.uuid, flow.name, FLOW_CANCEL_WAIT_S)
            self._tasks.add(task)  # stop() cancels it again
            task.add_done_callback(self._tasks.discard)

    async def _flow_outcome(self, call: AdapterCall, flow: Flow, task: asyncio.Task) -> tuple[str, str | None]:
        """(outcome, error) of a finished, cancelled or abandoned flow task."""
        if not task.done():
            return "abandoned", "the flow did not stop when the caller hung up"
        if task.cancelled():
            late = flow.finish_after_hangup
            return "abandoned", (f"still running {late:g} s after the caller hung up: cancelled"
                                 if late > FLOW_SETTLE_S else None)
        exc = task.exception()
        if exc is None:
            return task.result() or "completed", None
        if isinstance(exc, CallGone):
            return "abandoned", None
        self.stats.failed += 1
        log.error("call %s: flow %r failed", call.info.uuid, flow.name, exc_info=exc)
        if not call.ended.is_set():
            await self._apologise(call)
        return "error", f"{type(exc).__name__}: {exc}"

    async def _apologise(self, call: AdapterCall) -> None:
        try:
            if call.media.connected:
                await asyncio.wait_for(call.play_audio(*prompts.load("sorry")), 10)
            await call.hangup("NORMAL_TEMPORARY_FAILURE")
        except (CallGone, CommandFailed, asyncio.TimeoutError):
            pass

    # ------------------------------------------------------------ records

    def audit(self, call_uuid: str, kind: str, payload: dict) -> None:
        """Keep one PBX event of a call in call_events, in the order the call saw it."""
        seq, call = self._seq.get(call_uuid), self.calls.get(call_uuid)
        if seq is None or call is None:
            return
        self._seq[call_uuid] = seq + 1
        if self.redactor is not None:  # digits live in the dtmf table, where long runs are masked
            payload.pop("DTMF-Digit", None)
            payload.pop("Digit", None)
        self._submit(lambda: self.writer.submit_event(EventRecord(
            call.info.pbx, call_uuid, seq, datetime.now(UTC), kind, payload)))

    def _on_turn(self, turn: TurnRecord) -> None:
        if self.redactor is not None:  # the agent keeps the words it needs; storage does not
            turn = self.redactor.turn(turn)
        self._submit(lambda: self.writer.submit_turn(turn))
        for tool_call in tool_call_records(turn):
            self._submit_record(tool_call)
        self.metrics.turn_completed(turn)
        if self.tracing is not None:
            self.tracing.turn_completed(turn)
        self.webhooks.publish("turn.completed", turn_completed(turn))
        if self.on_turn is not None:
            self.on_turn(turn)

    def _on_call_event(self, books: _CallBooks, info: CallInfo, event: CallEvent) -> None:
        if isinstance(event, Dtmf):
            books.dtmf.pressed(event.at, event.digit, event.duration_ms)
        elif isinstance(event, DtmfSent):
            books.dtmf.sent(event.at, event.digits)
        elif isinstance(event, Transferred):
            books.transfers += 1
            transfer = TransferRecord(info.pbx, info.uuid, info.seq_base + books.transfers, event.at,
                                      event.destination, event.kind, event.reason,
                                      event.outcome or ("failed" if event.error else "accepted"), event.error)
            self._submit_record(transfer)
            self.webhooks.publish("call.transferred", call_transferred(transfer))
        elif isinstance(event, Answered):
            self.webhooks.publish("call.answered", call_answered(info, event.at))

    async def _close_books(self, call_uuid: str) -> None:
        books = self._books.pop(call_uuid, None)
        if books is None:
            return
        books.dtmf.close()
        if books.recorder is not None:
            recording = await books.recorder.close()
            if recording is not None:
                self._submit_record(recording)

    def _submit_record(self, record) -> None:
        self._submit(lambda: self.writer.submit(record))

    def _submit(self, submit) -> None:
        try:
            submit()
        except RecordQueueFull:
            self.stats.records_refused += 1
            log.error("record queue full: a record was refused (database too slow or down for too long)")


async def _done_before(task: asyncio.Task, event: asyncio.Event) -> bool:
    """Wait for the task or the event; True when the task finished first (or at the same time)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    return task.done()
