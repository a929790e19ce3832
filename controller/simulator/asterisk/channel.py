"""Channels of the fake Asterisk as AMI shows them, and the scripted caller's own channel.

Every event is built from the channel's state with the field set and order Asterisk 22.10.1 sent
(tests/fixtures/asterisk/ami_session_*): the channel block (Channel .. Linkedid) first, then the
event's own fields. Uniqueids are "<epoch at creation>.<counter>", as recorded.

The caller's channel (CallerChannel) is an incoming PJSIP call: it runs the contract dialplan
(controller/simulator/asterisk/dialplan.py) and carries the caller's media to one media leg at a
time (AudioSocket or chan_websocket), which plays what voxgate sends back. A caller that says
nothing still sends silence frames every 20 ms, as a phone's RTP does, unless the call is placed
with send_silence=False (a phone with silence suppression; what tripped the recorded 2 s
AudioSocket idle timeout).
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from controller.audio import frame_bytes, mix
from controller.simulator.caller_leg import CallerLeg
from controller.simulator.channel import q850
from controller.simulator.events import SimClock

Fields = list[tuple[str, str]]

STATE_UP = 6
STATE_DESC = {0: "Down", 1: "Rsrvd", 2: "OffHook", 3: "Dialing", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy",
              8: "Dialing Offhook", 9: "Pre-ring"}
# ast_cause2str() for the causes a simulated call can end with.
CAUSE_TEXT = {
    0: "Unknown", 1: "Unallocated (unassigned) number", 3: "No route to destination", 16: "Normal Clearing",
    17: "User busy", 18: "No user responding", 19: "User alerting, no answer", 21: "Call Rejected",
    27: "Destination out of order", 31: "Normal, unspecified", 34: "Circuit/channel congestion",
    38: "Network out of order", 41: "Temporary failure", 127: "Interworking, unspecified",
}
NORMAL_CLEARING = 16
DTMF_MS = 100  # how long the simulated caller holds a key (DTMFEnd DurationMs)
_DTMF_FREQS = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
               "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
               "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
               "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633)}


class Pbx(Protocol):
    """What a channel needs from the fake Asterisk."""

    clock: SimClock

    def publish(self, fields: Fields) -> None: ...

    def channel_gone(self, channel: AmiChannel) -> None: ...


class MediaLeg(Protocol):
    """The caller's media to and from voxgate: one AudioSocket or chan_websocket connection.

    Frames are at the caller channel's rate (8 kHz); the leg converts to its wire format.
    """

    done: asyncio.Event  # the leg ended on its own (server closed, error, timeout, HANGUP)
    cause: int  # the hangup cause its end gives the media channel (16, or 38 after a broken frame)

    def caller_frame(self, pcm: bytes | None) -> None: ...

    def caller_digit(self, digit: str) -> None: ...

    def playout(self, nbytes: int) -> bytes | None: ...

    def close(self) -> None: ...


class RateDoubler:
    """8 kHz to 16 kHz, exactly two samples out per sample in (Asterisk's frames keep their size):
    each new sample is preceded by its midpoint with the one before, across chunks."""

    def __init__(self) -> None:
        self._last = 0.0

    def convert(self, pcm: bytes) -> bytes:
        if not pcm:
            return pcm
        samples = np.frombuffer(pcm, "<i2").astype(np.float32)
        before = np.concatenate(([self._last], samples[:-1]))
        self._last = float(samples[-1])
        out = np.empty(2 * len(samples), np.float32)
        out[0::2] = (before + samples) / 2
        out[1::2] = samples
        return np.rint(out).astype("<i2").tobytes()


def cause_text(cause: int) -> str:
    return CAUSE_TEXT.get(cause, "Unknown")


def cdr_time(epoch: float | None) -> str:
    """cdr_manager prints local time without a zone: '2026-11-23 22:22:10'."""
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def dtmf_tone(digit: str, ms: int, sample_rate: int) -> bytes:
    """The dual tone of a key, as the caller hears PlayDTMF."""
    low, high = _DTMF_FREQS[digit]
    t = np.arange(sample_rate * ms // 1000) / sample_rate
    return (4000 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))).astype("<i2").tobytes()


class AmiChannel(ABC):
    """One channel's identity, state, dialplan position and variables; publishes its events."""

    def __init__(self, pbx: Pbx, *, name: str, uniqueid: str, linkedid: str, context: str, exten: str,
                 state: int = 0, caller_id_number: str = "", caller_id_name: str = "") -> None:
        self.pbx = pbx
        self.name = name
        self.uniqueid = uniqueid
        self.linkedid = linkedid
        self.context = context
        self.exten = exten
        self.priority = 1
        self.state = state
        self.caller_id_number = caller_id_number
        self.caller_id_name = caller_id_name
        self.connected_number = ""
        self.connected_name = ""
        self.account_code = ""
        self.variables: dict[str, str] = {}
        self.application = ""
        self.app_data = ""
        self.bridge_id = ""
        self.created_at = pbx.clock.now()
        self.answered_at: float | None = None
        self.cause: int | None = None  # set once a hangup was asked for
        self.events: list[tuple[float, str]] = []  # (simulated seconds since creation, event name)

    @property
    def state_desc(self) -> str:
        return STATE_DESC.get(self.state, "Unknown")

    def fields(self, prefix: str = "") -> Fields:
        """The channel block every channel event starts with; prefix 'Dest' for a dialled party."""
        rows = [("Channel", self.name), ("ChannelState", str(self.state)), ("ChannelStateDesc", self.state_desc),
                ("CallerIDNum", self.caller_id_number or "<unknown>"),
                ("CallerIDName", self.caller_id_name or "<unknown>"),
                ("ConnectedLineNum", self.connected_number or "<unknown>"),
                ("ConnectedLineName", self.connected_name or "<unknown>"), ("Language", "en"),
                ("AccountCode", self.account_code), ("Context", self.context), ("Exten", self.exten),
                ("Priority", str(self.priority)), ("Uniqueid", self.uniqueid), ("Linkedid", self.linkedid)]
        return [(prefix + key, value) for key, value in rows]

    def publish(self, event: str, extra: Sequence[tuple[str, str]] = (), *, privilege: str = "call") -> None:
        """Fire an event about this channel: its block, then `extra`."""
        self.pbx.publish([("Event", event), ("Privilege", f"{privilege},all"), *self.fields(), *extra])
        self.events.append((self.pbx.clock.now() - self.created_at, event))
        self._on_event(event)

    def _on_event(self, event: str) -> None:
        """Hook for the caller's channel, whose script can wait for its events."""

    def set_state(self, state: int) -> None:
        self.state = state
        self.publish("Newstate")

    def set_var(self, name: str, value: str) -> None:
        self.variables[name] = value
        self.publish("VarSet", [("Variable", name), ("Value", value)], privilege="dialplan")

    def newexten(self, application: str, data: str) -> None:
        """The dialplan moves to the next application (at self.priority)."""
        self.application, self.app_data = application, data
        self.publish("Newexten", [("Extension", self.exten), ("Application", application), ("AppData", data)],
                     privilege="dialplan")

    def getvar(self, name: str) -> str:
        """A variable or one of the dialplan functions voxgate may read; "" when unset."""
        functions = {"CHANNEL(state)": self.state_desc, "CHANNEL(name)": self.name,
                     "CHANNEL(uniqueid)": self.uniqueid, "CHANNEL(linkedid)": self.linkedid,
                     "CHANNEL(context)": self.context, "CHANNEL(exten)": self.exten,
                     "CALLERID(num)": self.caller_id_number, "CALLERID(name)": self.caller_id_name,
                     "UNIQUEID": self.uniqueid}
        return functions.get(name, self.variables.get(name, ""))

    def show_row(self) -> Fields:
        """This channel as a CoreShowChannel item (after its ActionID)."""
        seconds = int(self.pbx.clock.now() - self.created_at)
        duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return [*self.fields(), ("Application", self.application), ("ApplicationData", self.app_data),
                ("Duration", duration), ("BridgeId", self.bridge_id)]

    def request_hangup(self, cause: int) -> None:
        """AMI Hangup: SoftHangupRequest, then the channel's own way of ending."""
        if self.cause is not None:
            return
        self.cause = cause
        self.publish("SoftHangupRequest", [("Cause", str(cause))])
        self._hangup_requested()

    @abstractmethod
    def _hangup_requested(self) -> None:
        """How this kind of channel ends once AMI asked it to."""

    def publish_hangup(self) -> None:
        cause = NORMAL_CLEARING if self.cause is None else self.cause
        self.publish("Hangup", [("Cause", str(cause)), ("Cause-txt", cause_text(cause))])
        self.pbx.channel_gone(self)


class MediaChannel(AmiChannel):
    """The AudioSocket or WebSocket channel Dial() creates: it has no dialplan of its own."""

    def __init__(self, pbx: Pbx, *, name: str, uniqueid: str, linkedid: str, context: str, exten: str) -> None:
        super().__init__(pbx, name=name, uniqueid=uniqueid, linkedid=linkedid, context=context, exten=exten)
        self.hangup_requested = asyncio.Event()

    def _hangup_requested(self) -> None:
        self.hangup_requested.set()


@dataclass(frozen=True, slots=True)
class MediaPlan:
    """How a call reaches voxgate (the dialplan's per-call choices)."""

    media: str  # audiosocket | audiosocket-dial | websocket
    flow: str
    websocket_json: bool = False


class CallerChannel(AmiChannel, CallerLeg):
    """The scripted caller's channel: an answered PJSIP call running voxgate's dialplan."""

    EVENT_ALIASES = {"hangup": "Hangup"}  # 'answer' and 'park' are signalled by name (see _on_event)

    def __init__(self, pbx: Pbx, *, name: str, uniqueid: str, context: str, exten: str, caller_id_number: str,
                 caller_id_name: str, plan: MediaPlan, send_silence: bool = True, state: int = 4) -> None:
        AmiChannel.__init__(self, pbx, name=name, uniqueid=uniqueid, linkedid=uniqueid, context=context, exten=exten,
                            state=state, caller_id_number=caller_id_number, caller_id_name=caller_id_name)
        CallerLeg.__init__(self, pbx.clock, 8000)
        self.connected_number, self.connected_name = caller_id_number, caller_id_name
        self.plan = plan
        self.send_silence = send_silence
        self.voxgate_id: str | None = None
        self.media: MediaLeg | None = None
        self.media_legs: list[MediaLeg] = []  # every leg the call had, for tests
        self.bridged_with: MediaChannel | None = None
        self.bridged_to: str | None = None  # AMI Bridge: the other channel's Uniqueid
        self.dialed: list[MediaChannel] = []
        self.redirects: list[tuple[str, str, int]] = []
        self.dtmf_sent: list[str] = []  # PlayDTMF digits the caller heard
        self.mute_in = False  # MuteAudio Direction in: the caller's audio does not reach Asterisk
        self.mute_out = False  # MuteAudio Direction out: the caller hears nothing
        self.redirected = asyncio.Event()
        self.redirect_to: tuple[str, str, int] | None = None
        self._dtmf_in: deque[str] = deque()
        self._dtmf_now: tuple[str, int] | None = None  # (digit, ticks left) of the key held down
        self._tones = bytearray()

    # ------------------------------------------------------------------ state

    @property
    def uuid(self) -> str:
        """voxgate's id of the call (its Uniqueid), named as on FreeSWITCH's caller channel."""
        return self.uniqueid

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    def _on_event(self, event: str) -> None:
        self._event_fired(event)

    def answer(self) -> None:
        if self.answered or self.hung_up:
            return
        self.answered_at = self.clock.now()
        self.set_state(STATE_UP)
        self._event_fired("answer")

    def attach(self, leg: MediaLeg) -> None:
        """voxgate has the call's media now: a script's WaitFor('park') returns."""
        self.media = leg
        self.media_legs.append(leg)
        self._event_fired("park")

    def detach(self) -> None:
        """Asterisk ends the media leg: a TCP close or a WebSocket close 1000, never 0x00."""
        if self.media is not None:
            self.media.close()
            self.media = None

    def hangup(self, cause: str | None = "NORMAL_CLEARING") -> None:
        """The caller hangs up (the phone's BYE): HangupRequest now, the rest as the dialplan ends."""
        if self.cause is not None:
            return
        self.cause = q850((cause or "NORMAL_CLEARING").upper())
        self.publish("HangupRequest", [("Cause", str(self.cause))])
        self._hangup_requested()

    def application_failed(self) -> None:
        """An application returned -1 (no media server, an AudioSocket error or idle timeout): the
        PBX hangs the channel up without a request event."""
        if self.cause is None:
            self.cause = NORMAL_CLEARING
            self._hangup_requested()

    def _hangup_requested(self) -> None:
        self._hungup.set()
        self._release_readers()
        self.detach()

    def interruptions(self) -> list[Awaitable[object]]:
        """What ends a running application early: the caller hanging up, a Redirect."""
        return [self._hungup.wait(), self.redirected.wait()]

    def redirect(self, context: str, exten: str, priority: int) -> None:
        """AMI Redirect: leave the running application, go on at context/exten/priority."""
        self.redirects.append((context, exten, priority))
        self.redirect_to = (context, exten, priority)
        self.redirected.set()
        self.detach()

    def play_dtmf(self, digit: str, ms: int) -> None:
        """PlayDTMF toward the caller: it hears the tone (no AMI event for a PJSIP peer)."""
        self.dtmf_sent.append(digit)
        self._tones += dtmf_tone(digit, ms, self.sample_rate)

    def start(self, dialplan: Coroutine[Any, Any, None]) -> None:
        """Run the media clock and the dialplan in the background."""
        self._spawn(self._media_clock())
        self._spawn(dialplan)

    def finish(self) -> None:
        """The dialplan is over: Cdr (before Hangup, as recorded), Hangup, then nothing runs."""
        self.application_failed()  # a dialplan that runs out hangs up the same quiet way
        self.pbx.publish(self.cdr())
        self.publish_hangup()
        self.ended.set()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    def cancel(self) -> None:
        """Stop at once (the fake Asterisk is going away)."""
        for task in list(self._tasks):
            task.cancel()
        self.ended.set()

    def cdr(self) -> Fields:
        """The Cdr event (cdr_manager default mapping) of this channel."""
        end = self.clock.now()
        billable = int(end - self.answered_at) if self.answered_at is not None else 0
        peer = self.dialed[-1].name if self.dialed else ""
        named = f'"{self.caller_id_name}" <{self.caller_id_number}>'
        return [("Event", "Cdr"), ("Privilege", "cdr,all"), ("AccountCode", self.account_code),
                ("Source", self.caller_id_number), ("Destination", self.exten),
                ("DestinationContext", self.context), ("CallerID", named), ("Channel", self.name),
                ("DestinationChannel", peer), ("LastApplication", self.application), ("LastData", self.app_data),
                ("StartTime", cdr_time(self.created_at)), ("AnswerTime", cdr_time(self.answered_at)),
                ("EndTime", cdr_time(end)), ("Duration", str(int(end - self.created_at))),
                ("BillableSeconds", str(billable)),
                ("Disposition", "ANSWERED" if self.answered_at is not None else "NO ANSWER"),
                ("AMAFlags", "DOCUMENTATION"), ("UniqueID", self.uniqueid),
                ("UserField", self.variables.get("CDR(userfield)", ""))]

    # ------------------------------------------------------------------ the caller's side

    def caller_dtmf(self, digit: str) -> None:
        """The caller presses a key; the media clock sends it (DTMFBegin, then DTMFEnd DTMF_MS later)."""
        self.dtmf_received.append(digit)
        self._dtmf_in.append(digit.upper())

    def _tick(self) -> None:
        if not self.answered or self.hung_up:
            return
        self._dtmf_tick()
        n = frame_bytes(self.sample_rate)
        read = self._take_read(n)
        if read is None and self.send_silence:
            read = bytes(n)
        media = self.media
        if media is not None:
            media.caller_frame(None if self.mute_in else read)
        write = (media.playout(n) if media is not None else None) or bytes(n)
        if self._tones:
            tone = bytes(self._tones[:n]).ljust(n, b"\0")
            del self._tones[:n]
            write = mix(write, tone)
        self._hear(bytes(n) if self.mute_out else write)

    def _dtmf_tick(self) -> None:
        if self._dtmf_now is None and self._dtmf_in:
            self._dtmf_now = (self._dtmf_in.popleft(), DTMF_MS // 20)
            self._dtmf_events("DTMFBegin", self._dtmf_now[0], [])
        if self._dtmf_now is None:
            return
        digit, left = self._dtmf_now
        self._dtmf_now = (digit, left - 1) if left > 1 else None
        if self._dtmf_now is None:
            self._dtmf_events("DTMFEnd", digit, [("DurationMs", str(DTMF_MS))])
            if self.media is not None:
                self.media.caller_digit(digit)

    def _dtmf_events(self, event: str, digit: str, duration: Fields) -> None:
        """Received on the caller's channel; Sent on its bridged media channel."""
        self.publish(event, [("Digit", digit), *duration, ("Direction", "Received")], privilege="dtmf")
        if self.bridged_with is not None:
            self.bridged_with.publish(event, [("Digit", digit), *duration, ("Direction", "Sent")], privilege="dtmf")
