"""FreeSWITCH's side of the PBX-neutral Call: ESL events in, ESL commands out."""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from controller.adapter import AdapterCall
from controller.audiofork import protocol as fork
from controller.audiofork.media import ForkMediaPort
from controller.call import (
    Answered, CallGone, CallInfo, CommandFailed, DtmfSent, MediaConnected, MediaLost, PlaybackFinished,
    PlaybackStarted, PlayResult, Transferred,
)
from controller.esl import protocol as esl
from controller.esl.client import EslError, EslLink
from controller.esl.protocol import EslEvent
from controller.records.cdr import CallRecord, call_record_from_hangup

log = logging.getLogger(__name__)

# Headers worth keeping in the audit trail of call_events (the rest repeat the channel state).
AUDIT_HEADERS = (
    "Application", "Application-Data", "Application-Response", "Application-UUID", "DTMF-Digit",
    "DTMF-Duration", "Playback-File-Path", "Playback-Status", "Hangup-Cause", "Answer-State",
    "Channel-Call-State", "Job-UUID",
)
# Set on the channel when a voxgate session takes the call: the next session (another instance,
# after this one died mid-call) reads it from the channel data and numbers its records after ours.
SESSION_VAR = "voxgate_session"


def call_info_from_channel(data: dict[str, str]) -> CallInfo:
    """CallInfo from channel data (outbound connect reply, CHANNEL_PARK, ...); flow is the dialplan's, if any."""
    variables = {k[len("variable_"):]: v for k, v in data.items() if k.startswith("variable_")}
    created = data.get("Caller-Channel-Created-Time", "0")
    started = _micros(created)
    return CallInfo(
        uuid=data.get("Unique-ID", ""), pbx="freeswitch",
        direction=data.get("Call-Direction", "inbound"),
        caller_id_name=data.get("Caller-Caller-ID-Name", ""),
        caller_id_number=data.get("Caller-Caller-ID-Number", ""),
        destination=data.get("Caller-Destination-Number", ""),
        flow=variables.get("voxgate_flow", "").strip(), variables=variables,
        started_at=started or datetime.now(UTC),
        answered_at=_micros(data.get("Caller-Channel-Answered-Time", "0")),  # the dialplan may have answered
        session=_next_session(variables.get(SESSION_VAR, "")))


def _next_session(previous: str) -> int:
    """This session's number: one past the one the channel says an earlier instance had."""
    return int(previous) + 1 if previous.isdigit() else 0


def _micros(value: str) -> datetime | None:
    """A FreeSWITCH microsecond timestamp header; None for 0 (not happened) or garbage."""
    return datetime.fromtimestamp(int(value) / 1e6, UTC) if value.isdigit() and value != "0" else None


def audit_payload(event: EslEvent) -> dict:
    """The part of an event kept in call_events."""
    payload: dict = {k: event.headers[k] for k in AUDIT_HEADERS if k in event.headers}
    if event.subclass:
        payload["Event-Subclass"] = event.subclass
    if event.body:
        parsed = event.json_body()
        payload["body"] = parsed if parsed is not None else event.body
    return payload


class FreeSwitchCall(AdapterCall):
    """One FreeSWITCH channel under voxgate's control (outbound socket or inbound ESL)."""

    CDR_SOURCE = "CHANNEL_HANGUP_COMPLETE"

    def __init__(self, info: CallInfo, link: EslLink, media: ForkMediaPort, *, outbound: bool,
                 on_event: Callable[[EslEvent], None] | None = None) -> None:
        super().__init__(info)
        self.media = media
        self._link = link
        self.outbound = outbound
        self._audit = on_event
        self.hangup_headers: dict[str, str] | None = None
        self._apps: dict[str, asyncio.Future[EslEvent]] = {}
        self._file_playing = 0

    # ------------------------------------------------------------ events from FreeSWITCH

    def handle_event(self, event: EslEvent) -> None:
        if event.unique_id and event.unique_id != self.info.uuid:
            return  # another channel's event on a shared socket
        if self._audit is not None:
            self._audit(event)
        now = datetime.now(UTC)
        kind = event.kind
        if kind == "DTMF":
            self._digit(event.headers.get("DTMF-Digit", ""), int(event.headers.get("DTMF-Duration", "0") or 0))
        elif kind == "CHANNEL_ANSWER":
            self.info.answered_at = now
            self._emit(Answered(now))
        elif kind == "CHANNEL_EXECUTE_COMPLETE":
            waiter = self._apps.pop(event.headers.get("Application-UUID", ""), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
        elif kind == "PLAYBACK_START":
            self._emit(PlaybackStarted(now, event.headers.get("Playback-File-Path", "")))
        elif kind == "PLAYBACK_STOP":
            self._on_playback_stop(event, now)
        elif kind == "mod_audio_fork::play_audio":
            body = event.json_body()
            self.media.on_play_audio(body if isinstance(body, dict) else {})
        elif kind == "mod_audio_fork::connect":
            self._emit(MediaConnected(now, self.media.sample_rate, self.media.spec.channels))
        elif kind in ("mod_audio_fork::connect_failed", "mod_audio_fork::disconnect"):
            reason = event.body or kind.split("::")[1]
            if not self._ended.is_set():  # the fork closing as the call ends is no news
                log.warning("call %s: audio fork %s", self.info.uuid, reason)
            self._emit(MediaLost(now, reason))
        elif kind == "CHANNEL_HANGUP":
            self._on_hangup(event.headers.get("Hangup-Cause", "NORMAL_CLEARING"))
        elif kind == "CHANNEL_HANGUP_COMPLETE":
            self.hangup_headers = dict(event.headers)
            self._on_hangup(event.headers.get("Hangup-Cause", "NORMAL_CLEARING"))
            self.completed.set()

    def _on_playback_stop(self, event: EslEvent, now: datetime) -> None:
        path = event.headers.get("Playback-File-Path", "")
        status = event.headers.get("Playback-Status", "done")
        played = int(event.variable("playback_ms", "0") or 0)
        self.media.on_playback_stop(path, status, played)
        self._emit(PlaybackFinished(now, path, status != "done", played))

    def _on_hangup(self, cause: str) -> None:
        if not self._mark_ended(cause):
            return
        for waiter in self._apps.values():
            if not waiter.done():
                waiter.set_exception(CallGone(cause))
        self._apps.clear()
        self.media.close()
        self._hung_up(cause)

    def connection_lost(self, reason: str) -> None:
        """The ESL socket controlling this call is gone: nothing more can be done with it."""
        if not self._ended.is_set():
            log.error("call %s: ESL control lost mid-call (%s)", self.info.uuid, reason)
            self._on_hangup("ESL_CONNECTION_LOST")
        self.completed.set()

    # ------------------------------------------------------------ verbs

    def rebind(self, link: EslLink) -> None:
        """Use another ESL connection for this call (the inbound socket was re-established)."""
        self._link = link

    async def link_api(self, command: str) -> esl.EslFrame:
        """An API command over whichever ESL link controls this call now."""
        try:
            return await self._link.api(command)
        except EslError as exc:
            raise CallGone(str(exc)) from exc

    async def _api(self, command: str) -> esl.EslFrame:
        self._check_alive()
        reply = await self.link_api(command)
        if not reply.ok:
            raise CommandFailed(f"{command.split()[0]}: {reply.text.strip() or reply.reply_text}")
        return reply

    async def execute(self, app: str, arg: str | None = None) -> EslEvent:
        """Run a dialplan application on the channel and wait for it to complete."""
        self._check_alive()
        app_uuid = str(uuidlib.uuid4())
        waiter: asyncio.Future[EslEvent] = asyncio.get_running_loop().create_future()
        self._apps[app_uuid] = waiter
        raw = esl.sendmsg(app, arg, uuid=None if self.outbound else self.info.uuid, event_uuid=app_uuid)
        try:
            reply = await self._link.command(raw)
        except EslError as exc:
            self._apps.pop(app_uuid, None)
            raise CallGone(str(exc)) from exc
        if not reply.ok:
            self._apps.pop(app_uuid, None)
            raise CommandFailed(f"{app}: {reply.reply_text}")
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({waiter, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if not waiter.done():
            self._apps.pop(app_uuid, None)
            raise CallGone(self.hangup_cause)
        return waiter.result()

    async def claim(self) -> None:
        """Mark the channel as this session's (see SESSION_VAR). Best effort: without the mark, only
        a later takeover's first records would collide with ours."""
        try:
            await self._api(f"uuid_setvar {self.info.uuid} {SESSION_VAR} {self.info.session}")
        except (CallGone, CommandFailed) as exc:
            log.warning("call %s: could not mark the channel with %s: %s", self.info.uuid, SESSION_VAR, exc)

    async def start_media(self, metadata: dict) -> None:
        """Ask FreeSWITCH to fork this call's audio to voxgate (it connects back over WebSocket)."""
        start = fork.start_command(self.info.uuid, self.media.spec, metadata)
        try:
            await self._api(start)
        except CommandFailed:
            if not self.info.session:
                raise
            # Taken over from an instance that died: its fork stays attached to the channel, and
            # mod_audio_fork refuses a new start until that one is stopped.
            await self.link_api(fork.stop_command(self.info.uuid))
            log.info("call %s: stopped the audio fork an earlier session left on the channel", self.info.uuid)
            await self._api(start)

    async def answer(self) -> None:
        if self.info.answered_at is None:
            await self.execute("answer")

    async def play_file(self, path: str) -> PlayResult:
        self._file_playing += 1
        try:
            done = await self.execute("playback", path)
        finally:
            self._file_playing -= 1
        played = int(done.variable("playback_ms", "0") or 0)
        finished = done.headers.get("Application-Response", "") == "FILE PLAYED"
        return PlayResult(played, played, not finished)

    async def stop_playback(self) -> None:
        self._check_alive()
        await self.media.flush()
        if self._file_playing:
            await self._api(f"uuid_break {self.info.uuid} all")

    async def send_dtmf(self, digits: str) -> None:
        if not digits or any(d not in "0123456789*#ABCDabcdw" for d in digits):
            raise ValueError(f"not DTMF digits: {digits!r}")
        await self._api(f"uuid_send_dtmf {self.info.uuid} {digits}")
        self._emit(DtmfSent(datetime.now(UTC), digits))

    async def blind_transfer(self, destination: str, reason: str = "") -> None:
        if not destination or any(c.isspace() for c in destination):
            raise ValueError(f"bad transfer destination {destination!r}")
        try:
            # The caller leaves voxgate: stop streaming their audio here, and do not take them back.
            await self._api(fork.stop_command(self.info.uuid))
            self.media.close()
            await self._api(f"uuid_setvar {self.info.uuid} voxgate_flow")
            # Set before the command: the channel leaving the socket can end the call (and cancel
            # the flow) before the reply is read, and the CDR must still say where it went.
            self.transferred_to = destination
            await self._api(f"uuid_transfer {self.info.uuid} {destination}")
        except (CommandFailed, CallGone) as exc:
            if isinstance(exc, CommandFailed):
                self.transferred_to = None
            self._emit(Transferred(datetime.now(UTC), destination, reason=reason, error=str(exc) or "call gone"))
            raise
        self._emit(Transferred(datetime.now(UTC), destination, reason=reason))

    async def bridge(self, other: AdapterCall, destination: str) -> None:
        """uuid_bridge: both channels leave their sockets for a bridge of their own; voxgate's audio forks
        stop first, as for a blind transfer, and the dialplan is not to take them back."""
        if not isinstance(other, FreeSwitchCall):
            raise ValueError("a FreeSWITCH call can only be bridged with another FreeSWITCH call")
        for call in (self, other):  # api commands name their channel: all go over the caller's socket
            await self._api(fork.stop_command(call.info.uuid))
            call.media.close()
            await self._api(f"uuid_setvar {call.info.uuid} voxgate_flow")
        # set before the command, as for uuid_transfer: leaving the socket may end the calls before the reply
        self.transferred_to, other.transferred_to = destination, self.info.uuid
        try:
            await self._api(f"uuid_bridge {self.info.uuid} {other.info.uuid}")
        except CommandFailed:
            self.transferred_to = other.transferred_to = None
            raise

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        if self._ended.is_set():
            return
        if not cause.replace("_", "").isalnum():
            raise ValueError(f"bad hangup cause {cause!r}")
        try:
            await self._api(f"uuid_kill {self.info.uuid} {cause}")
        except CallGone:
            pass


    # ------------------------------------------------------------ the controller's side

    async def release(self) -> None:
        """An outbound socket is this call's own: say goodbye to it."""
        if self.outbound and not self._link.closed.is_set():
            try:
                await self._link.command(esl.encode_command("exit"), timeout=2)
            except EslError:
                pass
            await self._link.close()

    def call_record(self, outcome: str, error: str | None) -> CallRecord:
        """From CHANNEL_HANGUP_COMPLETE, with the flow's variables; voxgate's own view when it never came."""
        if self.hangup_headers is not None:
            try:
                record = call_record_from_hangup(self.hangup_headers, flow=self.info.flow, outcome=outcome,
                                                 error=error)
                return self._with_state(replace(record, variables={**self.info.variables, **record.variables}))
            except ValueError as exc:
                log.error("call %s: unusable CHANNEL_HANGUP_COMPLETE (%s); recording what is known",
                          self.info.uuid, exc)
        return super().call_record(outcome, error)
