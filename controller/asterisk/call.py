"""Asterisk's side of the PBX-neutral Call: AMI events in, AMI actions out, audio over AudioSocket or chan_websocket.

A call exists from the dialplan's `UserEvent(VoxgateCall, ...)`: it names the caller's channel
(Channel, Uniqueid) and the id its media connection will present (VoxgateId). Control goes to
that channel over AMI; DTMF comes in-band with the media (the same digit is also an AMI event,
kept only in the audit trail, so a key is never counted twice); the CDR comes from the `Cdr`
event, which may arrive before or after `Hangup`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from controller.adapter import AdapterCall
from controller.asterisk.ami import AmiEvent, CdrRecord
from controller.asterisk.audiosocket_port import AudioSocketMediaPort
from controller.asterisk.manager import AmiClient, AmiError
from controller.asterisk.websocket_port import WebSocketMediaPort
from controller.audio import read_wav
from controller.call import Answered, CallGone, CallInfo, CommandFailed, DtmfSent, MediaLost, PlayResult, Transferred
from controller.causes import cause_name, q850
from controller.records.cdr import CallRecord

log = logging.getLogger(__name__)

USER_EVENT = "VoxgateCall"
MEDIA_KINDS = ("audiosocket", "websocket")
_UP = "6"  # ChannelState of an answered channel


def call_info_from_event(event: AmiEvent) -> CallInfo:
    """CallInfo from the dialplan's VoxgateCall UserEvent (standard channel fields plus ours); flow may be ""."""
    flow = (event.get("Flow") or "").strip()
    return CallInfo(
        uuid=event.get("Uniqueid") or "", pbx="asterisk", direction="inbound",
        caller_id_name=_known(event.get("CallerIDName")), caller_id_number=_known(event.get("CallerIDNum")),
        destination=event.get("Exten") or "", flow=flow,
        variables={"voxgate_id": event.get("VoxgateId") or "", "voxgate_media": event.get("Media") or "",
                   "channel": event.get("Channel") or "", "context": event.get("Context") or ""},
        started_at=datetime.now(UTC),
        answered_at=datetime.now(UTC) if event.get("ChannelState") == _UP else None)


def _known(value: str | None) -> str:
    return "" if value in (None, "<unknown>") else value


class AsteriskCall(AdapterCall):
    """One Asterisk channel under voxgate's control."""

    CDR_SOURCE = "Cdr event"

    def __init__(self, info: CallInfo, ami: AmiClient, media: AudioSocketMediaPort | WebSocketMediaPort, *,
                 transfer_context: str, cdr_tz: tzinfo) -> None:
        super().__init__(info)
        self.channel = info.variables["channel"]
        self.media = media
        self._ami = ami
        self._transfer_context = transfer_context
        self._cdr_tz = cdr_tz
        self.cdr: CdrRecord | None = None
        self._media_gone = False
        media.on_dtmf = self._digit
        media.on_closed = self._media_closed
        if info.answered_at is not None:
            self._emit(Answered(info.answered_at))

    # ------------------------------------------------------------ events from Asterisk

    def handle_event(self, event: AmiEvent) -> None:
        """An AMI event of this call's channel (routed by Uniqueid)."""
        if event.name == "Newstate" and event.get("ChannelState") == _UP and self.info.answered_at is None:
            self.info.answered_at = datetime.now(UTC)
            self._emit(Answered(self.info.answered_at))
        elif event.name == "Hangup":
            self._on_hangup(cause_name(event.get("Cause")))
        elif event.name == "Cdr":
            try:
                self.cdr = CdrRecord.from_event(event, self._cdr_tz)
            except ValueError as exc:
                log.error("call %s: unusable Cdr event (%s)", self.info.uuid, exc)
            self.completed.set()

    def _on_hangup(self, cause: str) -> None:
        if self._mark_ended(cause):
            self.media.close()
            self._hung_up(cause)

    def _media_closed(self, reason: str) -> None:
        self._media_gone = True  # Asterisk never reconnects a call's media: the caller hung up or left
        if not self._ended.is_set():
            self._emit(MediaLost(datetime.now(UTC), reason))

    async def _media_ready(self) -> None:
        # A closed media connection ends the call at once: AMI's Hangup may trail the TCP close by
        # seconds when many calls end, and never comes if Asterisk died. That holds when it closes
        # while we wait for it to connect, too.
        if not self._media_gone:
            try:
                await super()._media_ready()
                return
            except CommandFailed:
                if not self._media_gone:
                    raise
        raise CallGone(self.hangup_cause or "the call's media connection closed")

    async def load_variables(self, names: Sequence[str], timeout_s: float = 2.0) -> None:
        """Fill info.variables with the channel variables the dialplan set: the UserEvent carries none."""
        async def one(name: str) -> tuple[str, str | None]:
            try:
                return name, await self._ami.getvar(self.channel, name)
            except AmiError as exc:
                log.warning("call %s: Getvar %s failed: %s", self.info.uuid, name, exc)
                return name, None
        try:
            found = await asyncio.wait_for(asyncio.gather(*(one(name) for name in names)), timeout_s)
        except TimeoutError:
            log.warning("call %s: channel variables not read within %.1f s", self.info.uuid, timeout_s)
            return
        for name, value in found:
            if value is not None:
                self.info.variables.setdefault(name, value)

    def control_lost(self, reason: str) -> None:
        """AMI is gone and the channel was not found after reconnecting: the call is over for voxgate."""
        if not self._ended.is_set():
            log.error("call %s: AMI control lost (%s)", self.info.uuid, reason)
            self._on_hangup("NETWORK_OUT_OF_ORDER")
        self.completed.set()

    # ------------------------------------------------------------ verbs

    async def _action(self, what: str, coro) -> None:
        self._check_alive()
        try:
            await coro
        except AmiError as exc:
            if self._ended.is_set():
                raise CallGone(self.hangup_cause) from exc
            raise CommandFailed(f"{what}: {exc}") from exc

    async def answer(self) -> None:
        """The dialplan answers before handing the call over; nothing is left to do but say so."""
        self._check_alive()
        if self.info.answered_at is None:
            raise CommandFailed("the channel is not answered: Answer() in the dialplan before the media")

    async def play_file(self, path: str) -> PlayResult:
        """Asterisk's files are not voxgate's to play over AMI: a local WAV is played through the media."""
        if not Path(path).is_file():
            raise CommandFailed(f"play_file on Asterisk needs a WAV readable by voxgate: {path}")
        pcm = read_wav(path)
        return await self.play_audio(pcm.data, pcm.sample_rate)

    async def stop_playback(self) -> None:
        self._check_alive()
        await self.media.flush()

    async def send_dtmf(self, digits: str) -> None:
        if not digits or any(d not in "0123456789*#ABCDabcd" for d in digits):
            raise ValueError(f"not DTMF digits: {digits!r}")
        for digit in digits:
            await self._action("PlayDTMF", self._ami.play_dtmf(self.channel, digit))
        self._emit(DtmfSent(datetime.now(UTC), digits))

    async def blind_transfer(self, destination: str, reason: str = "") -> None:
        """Blind transfer: Redirect the channel to `destination` in the transfer context; its media leaves voxgate."""
        if not destination or any(c.isspace() or c in ",|" for c in destination):
            raise ValueError(f"bad transfer destination {destination!r}")
        try:
            await self._action("Redirect", self._ami.redirect(self.channel, self._transfer_context, destination))
        except (CommandFailed, CallGone) as exc:
            self._emit(Transferred(datetime.now(UTC), destination, reason=reason, error=str(exc) or "call gone"))
            raise
        self.transferred_to = destination
        self.media.close()
        self._emit(Transferred(datetime.now(UTC), destination, reason=reason))

    async def bridge(self, other: AdapterCall, destination: str) -> None:
        """AMI Bridge: both channels leave their media applications for a bridge; voxgate lets go of both."""
        if not isinstance(other, AsteriskCall):
            raise ValueError("an Asterisk call can only be bridged with another Asterisk call")
        other._check_alive()
        await self._action("Bridge", self._ami.bridge(self.channel, other.channel))
        self.transferred_to, other.transferred_to = destination, self.info.uuid
        for call in (self, other):
            call.media.close()

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        if self._ended.is_set():
            return
        try:
            await self._action("Hangup", self._ami.hangup(self.channel, q850(cause_name(cause))))
        except CallGone:
            pass

    # ------------------------------------------------------------ the controller's side

    def call_record(self, outcome: str, error: str | None) -> CallRecord:
        """From the Cdr event, with voxgate's flow and outcome; voxgate's own view when it never came."""
        cdr = self.cdr
        if cdr is None:
            return super().call_record(outcome, error)
        info = self.info
        return self._with_state(CallRecord(
            pbx="asterisk", call_uuid=info.uuid, direction=info.direction,
            caller_id_name=info.caller_id_name, caller_id_number=info.caller_id_number or cdr.source,
            destination=info.destination or cdr.destination, started_at=cdr.start, answered_at=cdr.answer,
            ended_at=cdr.end, duration_s=cdr.duration, billsec=cdr.billable_seconds,
            hangup_cause=self.hangup_cause or _disposition_cause(cdr.disposition), flow=info.flow,
            outcome=outcome, error=error,
            variables={**info.variables, "disposition": cdr.disposition, "last_application": cdr.last_application}))


def _disposition_cause(disposition: str) -> str:
    return {"ANSWERED": "NORMAL_CLEARING", "NO ANSWER": "NO_ANSWER", "BUSY": "USER_BUSY",
            "CONGESTION": "NORMAL_CIRCUIT_CONGESTION"}.get(disposition, "NORMAL_UNSPECIFIED")
