"""One simulated FreeSWITCH call leg: states, variables, dialplan applications, media and events.

A placed call looks like the B leg of a mod_loopback pair, because that is what every recorded
session shows: Channel-Name 'loopback/<destination>-b', Caller-Source mod_loopback, context
default, variable_loopback_leg B. Its A leg is not simulated (other_loopback_leg_uuid names a
channel that does not exist). Events carry the header blocks of the captures, built from the
channel's state, never copied.

Every channel runs one 20 ms media clock. Each tick it takes 20 ms of what the scripted caller says
(READ, silence when nothing) and 20 ms of what the caller hears (WRITE: the current playback or
silence, mixed with what each media bug plays out), appends WRITE to `heard` and hands both to the
media bugs. The clock catches up after a stall instead of drifting.

Applications from the dialplan and from sendmsg run one at a time in arrival order; event-lock
is accepted but changes nothing, since nothing runs nested. 'break' is the exception: it acts at
once, as it does in FreeSWITCH when it interrupts a playback. The applications simulated are
answer, pre_answer, playback, park, hangup, sleep, set, transfer, break and socket; any other
hangs the call up with DESTINATION_OUT_OF_ORDER, as FreeSWITCH does for an invalid application.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid as uuid_mod
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from controller.audio import Pcm, frame_bytes, mix, read_wav, resample, silence, to_mono
from controller.causes import cause_name, q850
from controller.simulator.caller_leg import CallerLeg
from controller.simulator.events import EventSource, SimClock, SimEvent, local_stamp

if TYPE_CHECKING:
    from controller.simulator.audio_fork import AudioForkBug

log = logging.getLogger(__name__)

DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")

# Call states (switch_channel_callstate_t) and their numbers.
CALL_STATES = {"DOWN": 0, "DIALING": 1, "RINGING": 2, "EARLY": 3, "ACTIVE": 4, "HELD": 5,
               "RING_WAIT": 6, "HANGUP": 7, "UNHELD": 8}


class SocketLink(Protocol):
    """The channel's side of its outbound Event Socket connection (the 'socket' application)."""

    connected: asyncio.Event  # voxgate sent 'connect'
    closed: asyncio.Event  # the connection is over; until then it holds the session

    def abort(self) -> None: ...


class Switch(Protocol):
    """What a channel needs from the simulated switch."""

    clock: SimClock
    events: EventSource
    tmp_dir: Path

    async def connect_outbound(self, channel: SimChannel, host: str, port: int,
                               args: list[str]) -> SocketLink | None: ...

    def channel_destroyed(self, channel: SimChannel) -> None: ...


@dataclass(slots=True)
class _App:
    name: str
    arg: str | None
    app_uuid: str
    loops: int = 0  # sendmsg's 'loops' (runs it that many times); 0 for a dialplan application


@dataclass(slots=True)
class _Playback:
    path: str
    pcm: bytes | None  # None: endless silence (silence_stream://-1)
    pos: int = 0
    ending: str | None = None  # done | break | hangup
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self, how: str) -> None:
        if self.ending is None:
            self.ending = how
            self.finished.set()


def load_audio(path: str, rate: int) -> bytes | None:
    """What playback plays: L16 mono at the channel rate; None for endless silence.

    WAV (16-bit) and raw L16 files named .r8/.r16/.r24/.r32/.r48/.r64 (the rate in kHz, as
    mod_audio_fork writes them), and silence_stream://<ms>. Raises OSError or ValueError.
    """
    if path.startswith("silence_stream://"):
        ms = int(path.removeprefix("silence_stream://").split(",")[0] or 0)
        return silence(rate, ms) if ms > 0 else None
    file = Path(path)
    raw = re.fullmatch(r"\.r(\d+)", file.suffix.lower())
    if raw:
        data = file.read_bytes()
        pcm = Pcm(data[:len(data) // 2 * 2], int(raw.group(1)) * 1000)
    elif file.suffix.lower() == ".wav":
        pcm = read_wav(file)
        pcm = Pcm(to_mono(pcm.data, pcm.channels), pcm.sample_rate)
    else:
        raise ValueError(f"{path}: the simulator plays .wav, raw .r8/.r16 and silence_stream:// only")
    return resample(pcm, rate).data if pcm.sample_rate != rate else pcm.data


async def _first(*waitables: Awaitable[object]) -> None:
    """Wait until any of the awaitables is done; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class SimChannel(CallerLeg):
    """One call leg of the simulated switch; also the ForkHost media bugs attach to."""

    EVENT_ALIASES = {"answer": "CHANNEL_ANSWER", "park": "CHANNEL_PARK", "hangup": "CHANNEL_HANGUP"}

    def __init__(self, switch: Switch, *, uuid: str, name: str, direction: str, destination: str,
                 caller_id_number: str, caller_id_name: str, session_id: int,
                 variables: dict[str, str], sample_rate: int = 8000) -> None:
        super().__init__(switch.clock, sample_rate)
        self.switch = switch
        self.uuid = uuid
        self.name = name
        self.direction = direction
        self.destination = destination
        self.caller_id_number = caller_id_number
        self.caller_id_name = caller_id_name
        self.session_id = session_id
        self.tmp_dir = switch.tmp_dir
        self.variables: dict[str, str] = dict(variables)

        self.running_state = "CS_NEW"
        self.state_number = 0
        self.call_state = "DOWN"
        self.answer_state = "ringing"
        self.created_us = self.clock.now_us()
        self.answered_us = 0
        self.progress_media_us = 0
        self.hangup_us = 0
        self.transfer_us = 0
        self.hangup_cause: str | None = None
        self.transferred_to: str | None = None

        self.events: list[tuple[float, str]] = []
        self.dtmf_sent: list[str] = []  # what voxgate sent with uuid_send_dtmf
        self.bugs: dict[str, AudioForkBug] = {}

        self._queue: deque[_App] = deque()
        self._wake = asyncio.Event()
        self._break = asyncio.Event()
        self._parked = False
        self._playback: _Playback | None = None
        self._last_app: tuple[str, str | None] | None = None
        self._dtmf_out: deque[str] = deque()
        self._digits = ""  # every DTMF the channel saw, for digits_dialed
        self._link: SocketLink | None = None
        self._apps: dict[str, Callable[[str | None], Awaitable[None]]] = {
            "answer": self._app_answer, "pre_answer": self._app_pre_answer, "playback": self._app_playback,
            "park": self._app_park, "hangup": self._app_hangup, "sleep": self._app_sleep, "set": self._app_set,
            "transfer": self._app_transfer, "break": self._app_break, "socket": self._app_socket,
        }

    # ------------------------------------------------------------------ public view

    @property
    def media_up(self) -> bool:
        return self.answer_state in ("answered", "early")

    @property
    def answered(self) -> bool:
        return self.answered_us > 0

    @property
    def answered_at(self) -> float | None:
        """Simulated epoch seconds of the answer, None while unanswered."""
        return self.answered_us / 1_000_000 if self.answered_us else None

    def set_var(self, name: str, value: str | None) -> None:
        """Set (moving it last, as FreeSWITCH re-adds a header) or, with None, unset a variable."""
        self.variables.pop(name, None)
        if value is not None:
            self.variables[name] = value

    # ------------------------------------------------------------------ lifecycle

    def start(self, dialplan: list[tuple[str, str | None]], *, answered: bool = False) -> None:
        """Fire the creation events now, then run the dialplan applications in the background."""
        self._set_state("CS_INIT", 1)
        self.state_number = 2
        self.fire("CHANNEL_CREATE")
        self.running_state = "CS_ROUTING"
        self._set_call_state("RINGING")
        self._set_state("CS_ROUTING", 2)
        self._set_state("CS_EXECUTE", 4)
        if answered:
            self.answer()
        self._spawn(self._media_clock())
        self._spawn(self._run(dialplan))

    async def _run(self, dialplan: list[tuple[str, str | None]]) -> None:
        for name, arg in dialplan:
            if self.hung_up:
                break
            await self._execute(_App(name, arg, str(uuid_mod.uuid4())))
        self.hangup("NORMAL_CLEARING")
        await self._teardown()

    async def _teardown(self) -> None:
        self._set_state("CS_HANGUP", 10)
        for bugname, bug in list(self.bugs.items()):
            try:
                await asyncio.wait_for(bug.hangup(), 5)
            except TimeoutError:
                log.warning("media bug %s on %s did not close in time", bugname, self.uuid)
            self.detach_bug(bugname)
        self._set_call_state("HANGUP")
        self._set_state("CS_REPORTING", 11)
        self.variables.update(self._cdr())
        self.fire("CHANNEL_HANGUP_COMPLETE", pre=[("Hangup-Cause", self.hangup_cause or "")])
        if self._link is not None:
            await self._link.closed.wait()  # the outbound listener holds the session until it is done
        self.state_number = 12
        self.fire("CHANNEL_DESTROY")
        self._set_state("CS_DESTROY", 12)
        self.ended.set()
        self.switch.channel_destroyed(self)
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    def cancel(self) -> None:
        """Stop all of the channel's tasks at once (the switch is going away)."""
        for task in list(self._tasks):
            task.cancel()
        self.ended.set()

    # ------------------------------------------------------------------ call control

    def answer(self) -> None:
        if self.answered or self.hung_up:
            return
        self.answered_us = self.clock.now_us()
        self.answer_state = "answered"
        self.fire("CHANNEL_ANSWER")
        self._set_call_state("ACTIVE")
        self.set_var("endpoint_disposition", "ANSWER")

    def pre_answer(self) -> None:
        if self.media_up or self.hung_up:
            return
        self.progress_media_us = self.clock.now_us()
        self.answer_state = "early"
        self.fire("CHANNEL_PROGRESS_MEDIA")
        self._set_call_state("EARLY")
        self.set_var("endpoint_disposition", "EARLY MEDIA")

    def hangup(self, cause: str | None = "NORMAL_CLEARING") -> None:
        """Hang up now: CHANNEL_HANGUP fires at once; the running application ends, then the teardown."""
        if self.hung_up:
            return
        self.hangup_cause = cause_name(cause)
        self.hangup_us = self.clock.now_us()
        self.answer_state = "hangup"
        self.state_number = 10
        self._hungup.set()
        self._wake.set()
        self.fire("CHANNEL_HANGUP")
        if self._playback:
            self._playback.end("hangup")
        self._release_readers()

    def enqueue(self, app: str, arg: str | None, event_uuid: str | None = None, loops: int = 1) -> None:
        """sendmsg execute: queue the application ('break' acts at once)."""
        job = _App(app, arg, event_uuid or str(uuid_mod.uuid4()), max(1, loops))
        if app == "break":
            self._spawn(self._execute(job))
            return
        self._queue.append(job)
        self._wake.set()

    def drop_outbound_socket(self) -> None:
        """Cut the outbound ESL connection without a goodbye, as a network failure would."""
        if self._link is not None:
            self._link.abort()

    def flush_queue(self) -> None:
        self._queue.clear()

    def break_playback(self) -> None:
        """Stop the current playback (PLAYBACK_STOP Playback-Status: break) or sleep."""
        self._break.set()
        if self._playback:
            self._playback.end("break")

    def transfer(self, destination: str) -> None:
        """uuid_transfer: the call leaves voxgate's control, which here means it hangs up."""
        self._spawn(self._execute(_App("transfer", destination, str(uuid_mod.uuid4()))))

    def send_dtmf(self, digits: str) -> None:
        """uuid_send_dtmf: one DTMF event per media tick ('w' waits 500 ms, 'W' 1 s)."""
        digits = digits.split("@")[0]
        self.dtmf_sent.extend(d for d in digits if d in DTMF_DIGITS)
        for d in digits:
            if d in DTMF_DIGITS:
                self._dtmf_out.append(d)
            elif d in "wW":
                self._dtmf_out.extend([""] * (25 if d == "w" else 50))

    # ------------------------------------------------------------------ the caller's side

    def caller_dtmf(self, digit: str) -> None:
        """The caller presses a key: a DTMF event with source rtp."""
        self.dtmf_received.append(digit)
        self._fire_dtmf(digit, "rtp")

    # ------------------------------------------------------------------ media bugs (ForkHost)

    def fire_custom(self, subclass: str, body: str | None) -> None:
        self.fire("CUSTOM", subclass=subclass, body=body)

    def attach_bug(self, bugname: str, bug: AudioForkBug) -> None:
        self.bugs[bugname] = bug
        self.fire("MEDIA_BUG_START", pre=[("Media-Bug-Function", bugname), ("Media-Bug-Target", "N/A")])

    def detach_bug(self, bugname: str) -> None:
        if self.bugs.pop(bugname, None) is not None:
            self.fire("MEDIA_BUG_STOP", pre=[("Media-Bug-Function", bugname), ("Media-Bug-Target", "N/A")])

    # ------------------------------------------------------------------ applications

    async def _execute(self, job: _App) -> None:
        """Run an application: from sendmsg `loops` times, with current_loop/total_loops set meanwhile."""
        if not job.loops:
            await self._execute_once(job)
            return
        for loop in range(1, job.loops + 1):
            self.set_var("current_loop", str(loop))
            self.set_var("total_loops", str(job.loops))
            await self._execute_once(job)
            if self.hung_up:
                break
        self.set_var("current_loop", None)
        self.set_var("total_loops", None)

    async def _execute_once(self, job: _App) -> None:
        handler = self._apps.get(job.name)
        if handler is None:
            log.warning("%s: application %r is not simulated (FreeSWITCH hangs up on an invalid application)",
                        self.uuid, job.name)
            self.hangup("DESTINATION_OUT_OF_ORDER")
            return
        self._last_app = (job.name, job.arg)
        self._break.clear()
        self.set_var("current_application_response", None)
        self.set_var("current_application", job.name)
        self.set_var("current_application_data", job.arg)
        data = [("Application-Data", job.arg)] if job.arg else []
        self.fire("CHANNEL_EXECUTE", post=[("Application", job.name), *data, ("Application-UUID", job.app_uuid)])
        await handler(job.arg)
        response = self.variables.get("current_application_response", "_none_")
        self.fire("CHANNEL_EXECUTE_COMPLETE", post=[("Application", job.name), *data,
                                                    ("Application-Response", response),
                                                    ("Application-UUID", job.app_uuid)])

    async def _app_answer(self, arg: str | None) -> None:
        self.answer()

    async def _app_pre_answer(self, arg: str | None) -> None:
        self.pre_answer()

    async def _app_hangup(self, arg: str | None) -> None:
        self.hangup(arg)

    async def _app_set(self, arg: str | None) -> None:
        name, _, value = (arg or "").partition("=")
        if name:
            self.set_var(name, value or None)

    async def _app_break(self, arg: str | None) -> None:
        self.break_playback()

    async def _app_transfer(self, arg: str | None) -> None:
        self.transferred_to = (arg or "").split(" ")[0]
        self.transfer_us = self.clock.now_us()
        self.hangup("NORMAL_CLEARING")

    async def _app_sleep(self, arg: str | None) -> None:
        ms = int(arg) if arg and arg.isdigit() else 0
        await _first(self.clock.sleep(ms / 1000), self._hungup.wait(), self._break.wait())

    async def _app_park(self, arg: str | None) -> None:
        await self._park(None)

    async def _app_playback(self, arg: str | None) -> None:
        path = arg or ""
        if self.hung_up:
            return
        if not self.media_up:
            self.pre_answer()
        try:
            pcm = load_audio(path, self.sample_rate)
        except (OSError, ValueError) as exc:
            log.warning("%s: playback %s: %s", self.uuid, path, exc)
            self.set_var("current_application_response", "FILE NOT FOUND")
            return
        self.set_var("current_application_data", path)
        self.set_var("current_application", "playback")
        stream = [("Playback-File-Type", "silence_stream")] if path.startswith("silence_stream://") else []
        playback = _Playback(path, pcm)
        self._playback = playback
        self.fire("PLAYBACK_START", post=[*stream, ("Playback-File-Path", path)])
        await playback.finished.wait()
        self._playback = None
        samples = playback.pos // 2
        ms = samples * 1000 // self.sample_rate
        for name, value in (("playback_last_offset_pos", samples), ("playback_seconds", ms // 1000),
                            ("playback_ms", ms), ("playback_samples", samples)):
            self.set_var(name, str(value))
        status = "break" if playback.ending == "break" else "done"
        self.fire("PLAYBACK_STOP", post=[*stream, ("Playback-File-Path", path), ("Playback-Status", status)])
        self.set_var("current_application_response",
                     "PLAYBACK ERROR" if playback.ending == "hangup" else "FILE PLAYED")

    async def _app_socket(self, arg: str | None) -> None:
        argv = (arg or "").split()
        if not argv:
            return
        host, sep, port = argv[0].rpartition(":")
        host, port = (host, int(port)) if sep and port.isdigit() else (argv[0], 8084)
        self.set_var("socket_host", host)
        link = await self.switch.connect_outbound(self, host, port, argv[1:])
        if link is None:
            return  # 'Socket Error!': the application returns and the dialplan runs out
        self._link = link
        await _first(link.connected.wait(), link.closed.wait(), self._hungup.wait())
        if link.connected.is_set() and not self.hung_up:
            await _first(self.clock.sleep(0.02), self._hungup.wait())
            await self._park(link.closed)

    async def _park(self, until: asyncio.Event | None) -> None:
        """switch_ivr_park: run queued applications until hangup (or the socket goes away)."""
        if self._parked:
            return
        self._parked = True
        self.fire("CHANNEL_PARK")
        while not self.hung_up and not (until and until.is_set()):
            if self._queue:
                await self._execute(self._queue.popleft())
                continue
            self._wake.clear()
            waits = [self._wake.wait()] + ([until.wait()] if until else [])
            await _first(*waits)
        self._parked = False
        self._queue.clear()
        self.fire("CHANNEL_UNPARK")

    # ------------------------------------------------------------------ media clock

    def _tick(self) -> None:
        if self._dtmf_out:
            digit = self._dtmf_out.popleft()
            if digit:
                self._fire_dtmf(digit, "UNKNOWN")
        if not self.media_up or self.hung_up:
            return
        n = frame_bytes(self.sample_rate)
        read = self._take_read(n) or bytes(n)
        write = self._playback_frame(n)
        for bug in list(self.bugs.values()):
            out = bug.take_playout(n)
            if out:
                write = mix(write, out[:n].ljust(n, b"\0"))
        self._hear(write)
        for bug in list(self.bugs.values()):
            bug.on_tick(read, write)

    def _playback_frame(self, n: int) -> bytes:
        playback = self._playback
        if playback is None or playback.ending:
            return bytes(n)
        if playback.pcm is None:
            playback.pos += n
            return bytes(n)
        frame = playback.pcm[playback.pos:playback.pos + n]
        playback.pos += len(frame)
        if playback.pos >= len(playback.pcm):
            playback.end("done")
        return frame.ljust(n, b"\0")

    # ------------------------------------------------------------------ events

    def fire(self, name: str, *, pre: list[tuple[str, str]] | None = None,
             post: list[tuple[str, str]] | None = None, subclass: str | None = None,
             body: str | None = None) -> SimEvent:
        """Build an event of this channel (header order as FreeSWITCH's) and fire it."""
        event = SimEvent(name, tuple(self.switch.events.head(name, subclass) + (pre or [])
                                     + self.channel_headers(with_variables=name not in _NO_VARIABLES)
                                     + (post or [])), body)
        self.events.append((self.clock.now() - self.created_us / 1_000_000, event.kind))
        self.switch.events.fire(event)
        self._event_fired(event.kind)
        return event

    def channel_headers(self, with_variables: bool = True) -> list[tuple[str, str]]:
        """switch_channel_event_set_data(): the channel block, the Caller-* profile, the variables."""
        rate = str(self.sample_rate)
        bits = str(self.sample_rate * 16)
        headers = [
            ("Channel-State", self.running_state),
            ("Channel-Call-State", self.call_state),
            ("Channel-State-Number", str(self.state_number)),
            ("Channel-Name", self.name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "true"),
            ("Channel-Call-UUID", self.uuid),
            ("Answer-State", self.answer_state),
        ]
        if self.hangup_cause:
            headers.append(("Hangup-Cause", self.hangup_cause))
        headers += [
            ("Channel-Read-Codec-Name", "L16"), ("Channel-Read-Codec-Rate", rate),
            ("Channel-Read-Codec-Bit-Rate", bits), ("Channel-Write-Codec-Name", "L16"),
            ("Channel-Write-Codec-Rate", rate), ("Channel-Write-Codec-Bit-Rate", bits),
        ]
        headers += self.profile_headers("Caller")
        if with_variables:
            headers += [(f"variable_{k}", v) for k, v in self.variables.items()]
        return headers

    def profile_headers(self, prefix: str) -> list[tuple[str, str]]:
        """The caller profile (Caller-* in events, Channel-* in CHANNEL_DATA)."""
        named = bool(self.caller_id_name)
        hangup_time = self.hangup_us if self.call_state == "HANGUP" else 0
        rows = [
            ("Direction", self.direction), ("Logical-Direction", self.direction), ("Dialplan", "xml"),
            *([("Caller-ID-Name", self.caller_id_name)] if named else []),
            ("Caller-ID-Number", self.caller_id_number),
            *([("Orig-Caller-ID-Name", self.caller_id_name)] if named else []),
            ("Orig-Caller-ID-Number", self.caller_id_number),
            ("Callee-ID-Name", "Outbound Call"), ("Callee-ID-Number", "default"),
            ("ANI", self.caller_id_number), ("Destination-Number", self.destination),
            ("Unique-ID", self.uuid), ("Source", "mod_loopback"), ("Context", "default"),
            ("Channel-Name", self.name), ("Profile-Index", "1"),
            ("Profile-Created-Time", str(self.created_us)), ("Channel-Created-Time", str(self.created_us)),
            ("Channel-Answered-Time", str(self.answered_us)), ("Channel-Progress-Time", "0"),
            ("Channel-Progress-Media-Time", str(self.progress_media_us)),
            ("Channel-Hangup-Time", str(hangup_time)), ("Channel-Transfer-Time", str(self.transfer_us)),
            ("Channel-Resurrect-Time", "0"), ("Channel-Bridged-Time", "0"), ("Channel-Last-Hold", "0"),
            ("Channel-Hold-Accum", "0"), ("Screen-Bit", "true"), ("Privacy-Hide-Name", "false"),
            ("Privacy-Hide-Number", "false"),
        ]
        return [(f"{prefix}-{key}", value) for key, value in rows]

    def channel_data(self) -> list[tuple[str, str]]:
        """The CHANNEL_DATA event the outbound 'connect' reply carries."""
        return (self.switch.events.head("CHANNEL_DATA") + self.profile_headers("Channel")
                + self.channel_headers())

    def show_row(self, hostname: str) -> dict[str, str]:
        """This channel as a row of 'show channels' (the core db's channels table)."""
        created = self.created_us // 1_000_000
        return {
            "uuid": self.uuid, "direction": self.direction, "created": local_stamp(self.created_us),
            "created_epoch": str(created), "name": self.name, "state": self.running_state,
            "cid_name": self.caller_id_name, "cid_num": self.caller_id_number, "ip_addr": "",
            "dest": self.destination, "application": self.variables.get("current_application", ""),
            "application_data": self.variables.get("current_application_data", ""), "dialplan": "XML",
            "context": "default", "read_codec": "L16", "read_rate": str(self.sample_rate),
            "read_bit_rate": str(self.sample_rate * 16), "write_codec": "L16",
            "write_rate": str(self.sample_rate), "write_bit_rate": str(self.sample_rate * 16),
            "secure": "", "hostname": hostname, "presence_id": "", "presence_data": "", "accountcode": "",
            "callstate": self.call_state, "callee_name": "", "callee_num": "", "callee_direction": "",
            "call_uuid": "", "sent_callee_name": "", "sent_callee_num": "",
            "initial_cid_name": self.caller_id_name, "initial_cid_num": self.caller_id_number,
            "initial_ip_addr": "", "initial_dest": self.destination, "initial_dialplan": "XML",
            "initial_context": "default",
        }

    def _fire_dtmf(self, digit: str, source: str) -> None:
        self._digits += digit
        self.fire("DTMF", post=[("DTMF-Digit", digit), ("DTMF-Duration", "2000"), ("DTMF-Source", source)])

    def _set_state(self, running_state: str, number: int) -> None:
        self.running_state = running_state
        self.state_number = number
        self.fire("CHANNEL_STATE")

    def _set_call_state(self, state: str) -> None:
        original, self.call_state = self.call_state, state
        self.fire("CHANNEL_CALLSTATE", pre=[("Original-Channel-Call-State", original),
                                            ("Channel-Call-State-Number", str(CALL_STATES[state]))])

    def _cdr(self) -> dict[str, str]:
        """The variables switch_channel_set_timestamps() adds at hangup, computed from this call."""
        start, answer, progress_media, end = self.created_us, self.answered_us, self.progress_media_us, self.hangup_us

        def diff(later: int, earlier: int, unit: int) -> int:
            return later // unit - earlier // unit if later and earlier else 0

        stamps = [("start_stamp", start), ("profile_start_stamp", start)]
        stamps += [("answer_stamp", answer)] if answer else []
        stamps += [("progress_media_stamp", progress_media)] if progress_media else []
        stamps += [("end_stamp", end)]
        cdr = {"hangup_cause": self.hangup_cause or "NORMAL_CLEARING",
               "hangup_cause_q850": str(q850(self.hangup_cause or "NORMAL_CLEARING")),
               "digits_dialed": self._digits or "none"}
        cdr.update({name: local_stamp(us) for name, us in stamps})
        for name, us in (("start", start), ("profile_start", start), ("answer", answer), ("bridge", 0),
                         ("last_hold", 0)):
            cdr[f"{name}_epoch"] = str(us // 1_000_000)
            cdr[f"{name}_uepoch"] = str(us)
        cdr.update({"hold_accum_seconds": "0", "hold_accum_usec": "0", "hold_accum_ms": "0"})
        for name, us in (("resurrect", 0), ("progress", 0), ("progress_media", progress_media), ("end", end)):
            cdr[f"{name}_epoch"] = str(us // 1_000_000)
            cdr[f"{name}_uepoch"] = str(us)
        if self._last_app:
            cdr["last_app"] = self._last_app[0]
            if self._last_app[1]:
                cdr["last_arg"] = self._last_app[1]
        cdr["caller_id"] = (f'"{self.caller_id_name}" <{self.caller_id_number}>' if self.caller_id_name
                            else self.caller_id_number)
        for suffix, unit in (("sec", 1_000_000), ("msec", 1000), ("usec", 1)):
            short = {"sec": "", "msec": "m", "usec": "u"}[suffix]
            cdr[f"{short}duration"] = str(diff(end, start, unit))
            cdr[f"bill{suffix}"] = str(diff(end, answer, unit))
            cdr[f"progress{suffix}"] = "0"
            cdr[f"answer{suffix}"] = str(diff(answer, start, unit))
            cdr[f"wait{suffix}"] = "0"
            cdr[f"progress_media{suffix}"] = str(diff(progress_media, start, unit))
            cdr[f"flow_bill{suffix}"] = str(diff(end, start, unit))
        cdr["is_loopback"] = "1"
        return cdr


# Events FreeSWITCH fires without the channel variables (as recorded).
_NO_VARIABLES = frozenset({"CHANNEL_STATE", "CHANNEL_CALLSTATE", "DTMF"})
