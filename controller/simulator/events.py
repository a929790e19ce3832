"""Events of the simulated switch: the simulated clock, the header block every event starts with,
one global Event-Sequence, and delivery to the ESL sessions listening.

Header names, order and the Event-Calling-* values are those FreeSWITCH 1.10.12 sent in the
recorded sessions (tests/fixtures/freeswitch/esl_*.json).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from typing import Protocol

VERSION = "1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit"
VERSION_BANNER = f"FreeSWITCH Version {VERSION} (git a88d069 2024-08-02 21:02:27Z 64bit)"
VERSION_SHORT = "1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit"

# (file, function, line) of the code that fires each event, as recorded.
CALLING_SITES: dict[str, tuple[str, str, int]] = {
    "API": ("switch_loadable_module.c", "switch_api_execute", 2954),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", 1572),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3846),
    # not in the recordings (no bridge was captured): the function FreeSWITCH 1.10 fires it from, line approximate
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "audio_bridge_on_exchange_media", 1027),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", 301),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 626),
    "CHANNEL_DATA": ("mod_event_socket.c", "parse_command", 2021),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1584),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2944),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2967),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3445),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", 943),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", 1002),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", 1213),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", 2408),
    "CUSTOM": ("mod_audio_fork.c", "responseHandler", 22),
    "DTMF": ("switch_channel.c", "switch_channel_dequeue_dtmf", 677),
    "MEDIA_BUG_START": ("switch_core_media_bug.c", "switch_core_media_bug_add", 1014),
    "MEDIA_BUG_STOP": ("switch_core_media_bug.c", "switch_core_media_bug_destroy", 84),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", 1646),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", 2020),
    # Not in the captures: the function FreeSWITCH fires it from, line number approximate.
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", 3681),
}

# switch_event.c EVENT_NAMES: what 'event' and 'nixevent' accept.
EVENT_NAMES = frozenset("""
CUSTOM CLONE CHANNEL_CREATE CHANNEL_DESTROY CHANNEL_STATE CHANNEL_CALLSTATE CHANNEL_ANSWER
CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_HOLD
CHANNEL_UNHOLD CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA
CHANNEL_OUTGOING CHANNEL_PARK CHANNEL_UNPARK CHANNEL_APPLICATION CHANNEL_ORIGINATE CHANNEL_UUID
API LOG INBOUND_CHAN OUTBOUND_CHAN STARTUP SHUTDOWN PUBLISH UNPUBLISH TALK NOTALK SESSION_CRASH
MODULE_LOAD MODULE_UNLOAD DTMF MESSAGE PRESENCE_IN NOTIFY_IN PRESENCE_OUT PRESENCE_PROBE
MESSAGE_WAITING MESSAGE_QUERY ROSTER CODEC BACKGROUND_JOB DETECTED_SPEECH DETECTED_TONE
PRIVATE_COMMAND HEARTBEAT TRAP ADD_SCHEDULE DEL_SCHEDULE EXE_SCHEDULE RE_SCHEDULE RELOADXML
NOTIFY PHONE_FEATURE PHONE_FEATURE_SUBSCRIBE SEND_MESSAGE RECV_MESSAGE REQUEST_PARAMS
CHANNEL_DATA GENERAL COMMAND SESSION_HEARTBEAT CLIENT_DISCONNECTED SERVER_DISCONNECTED SEND_INFO
RECV_INFO RECV_RTCP_MESSAGE SEND_RTCP_MESSAGE CALL_SECURE NAT RECORD_START RECORD_STOP
PLAYBACK_START PLAYBACK_STOP CALL_UPDATE FAILURE SOCKET_DATA MEDIA_BUG_START MEDIA_BUG_STOP
CONFERENCE_DATA_QUERY CONFERENCE_DATA CALL_SETUP_REQ CALL_SETUP_RESULT CALL_DETAIL DEVICE_STATE
TEXT SHUTDOWN_REQUESTED ALL
""".split())


class SimClock:
    """The switch's wall clock, running `speed` times faster than real time.

    Everything the switch times (the 20 ms media clock, sleep, linger, CDR timestamps) reads this
    clock, so a 60 s call at speed 10 takes 6 s and still reports duration 60.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.speed = speed
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0) * self.speed

    def now_us(self) -> int:
        return int(self.now() * 1_000_000)

    def real(self, seconds: float) -> float:
        """Real seconds that `seconds` of simulated time take."""
        return seconds / self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)


def local_stamp(us: int) -> str:
    """'2026-11-23 22:18:11', the format of Event-Date-Local and the *_stamp variables."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us / 1_000_000))


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One fired event: headers in wire order and an optional body."""

    name: str
    headers: tuple[tuple[str, str], ...]
    body: str | None = None

    def get(self, key: str) -> str | None:
        """The first header called `key` (case-insensitive, as switch_event_get_header)."""
        lowered = key.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    @property
    def subclass(self) -> str:
        return self.get("Event-Subclass") or ""

    @property
    def kind(self) -> str:
        """The subclass for CUSTOM events, otherwise the event name."""
        return self.subclass if self.name == "CUSTOM" else self.name

    @property
    def unique_id(self) -> str | None:
        return self.get("Unique-ID")


class EventListener(Protocol):
    def deliver(self, event: SimEvent) -> None: ...


class EventSource:
    """Stamps events with the switch identity and a global sequence, and hands them to listeners.

    Delivery is synchronous: a listener only queues the bytes, so events reach every socket in the
    order they were fired.
    """

    def __init__(self, clock: SimClock, hostname: str, ipv4: str = "127.0.0.1", ipv6: str = "::1") -> None:
        self.clock = clock
        self.hostname = hostname
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.core_uuid = str(uuid.uuid4())
        self._sequence = itertools.count(1)
        self._listeners: list[EventListener] = []

    def head(self, name: str, subclass: str | None = None) -> list[tuple[str, str]]:
        """Event-Name .. Event-Sequence; CUSTOM events put Event-Subclass first."""
        us = self.clock.now_us()
        file, function, line = CALLING_SITES[name]
        headers = [("Event-Subclass", subclass)] if subclass else []
        headers += [
            ("Event-Name", name),
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", self.ipv4),
            ("FreeSWITCH-IPv6", self.ipv6),
            ("Event-Date-Local", local_stamp(us)),
            ("Event-Date-GMT", formatdate(us / 1_000_000, usegmt=True)),
            ("Event-Date-Timestamp", str(us)),
            ("Event-Calling-File", file),
            ("Event-Calling-Function", function),
            ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(next(self._sequence))),
        ]
        return headers

    def subscribe(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: EventListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def fire(self, event: SimEvent) -> None:
        for listener in list(self._listeners):
            listener.deliver(event)
