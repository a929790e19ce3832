"""The scripted caller's side of one simulated call, whatever the PBX: the 20 ms media clock, what
the caller says and hears, and the waits a caller script makes.

Each PBX's channel (FreeSWITCH's SimChannel, Asterisk's AsteriskChannel) subclasses it and says
what one tick does with the caller's 20 ms (`_tick`), how the call hangs up and what a key press
does; the caller script steps (controller.simulator.caller) only use what is defined here, so one
script drives a call on either PBX unchanged.
"""

from __future__ import annotations

import sys

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any, ClassVar

from controller.audio import Pcm, Resampler, resample, rms, to_mono, write_wav
from controller.simulator.events import SimClock

log = logging.getLogger(__name__)

HEARD_RATE = 8000
VOICE_RMS = 150  # a heard frame louder than this is the agent talking (TTS, prompts)


class WaitForTimeout(TimeoutError):
    """A caller script waited for an event that did not come."""


class CallerLeg(ABC):
    """Media clock and caller side of a simulated call leg; subclasses add the PBX."""

    name: str
    EVENT_ALIASES: ClassVar[dict[str, str]] = {}
    """What a script's WaitFor kinds ('answer', 'park', 'hangup') are called among the PBX's events."""

    def __init__(self, clock: SimClock, sample_rate: int) -> None:
        self.clock = clock
        self.sample_rate = sample_rate
        self.script_error: str | None = None
        self.ended = asyncio.Event()
        self.heard = bytearray()
        self.dtmf_received: list[str] = []  # what the scripted caller pressed
        # (start, end) in loop time: when the caller spoke and when the caller heard the far end
        self.caller_speech: list[tuple[float, float]] = []
        self.agent_speech: list[list[float]] = []
        self._hungup = asyncio.Event()
        self._read = bytearray()
        self._read_taken = 0
        self._read_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._event_waiters: list[tuple[str, asyncio.Future[None]]] = []
        self._heard_resampler = Resampler(sample_rate, HEARD_RATE)
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ what the PBX defines

    @property
    @abstractmethod
    def answered(self) -> bool:
        """Whether the PBX answered this leg (each simulated PBX keeps its own channel state)."""

    @abstractmethod
    def hangup(self, cause: str | None = "NORMAL_CLEARING") -> None:
        """The caller (or a failed script) hangs up; `cause` is a FreeSWITCH-style cause name."""

    @abstractmethod
    def caller_dtmf(self, digit: str) -> None:
        """The caller presses a key."""

    @abstractmethod
    def _tick(self) -> None:
        """One 20 ms of media: take the caller's frame (_take_read), make what it hears (_hear)."""

    # ------------------------------------------------------------------ public view

    @property
    def hung_up(self) -> bool:
        return self._hungup.is_set()

    def heard_pcm(self) -> Pcm:
        """Everything the caller heard, L16 mono 8 kHz."""
        return Pcm(bytes(self.heard), HEARD_RATE)

    def save_heard(self, path: str | Path) -> None:
        write_wav(path, self.heard_pcm())

    # ------------------------------------------------------------------ tasks

    def run_caller(self, script: Coroutine[Any, Any, None]) -> None:
        """Run the caller's side of the call; it stops when the channel is destroyed."""
        task = asyncio.ensure_future(script)
        self._tasks.add(task)
        task.add_done_callback(self._caller_done)

    def _caller_done(self, task: asyncio.Task[None]) -> None:
        """A script that fails (a WaitFor timing out, a WAV that cannot be read) hangs up its call."""
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        self.script_error = str(exc) if isinstance(exc, WaitForTimeout) else f"{type(exc).__name__}: {exc}"
        log.warning("caller script on %s: %s", self.name, self.script_error)
        self.hangup("NORMAL_CLEARING")

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ media clock

    async def _media_clock(self) -> None:
        """Tick every 20 ms (simulated) on an absolute schedule: after a stall it catches up."""
        loop = asyncio.get_running_loop()
        period = self.clock.real(0.02)
        start = loop.time()
        tick = 0
        while not self.hung_up:
            tick += 1
            delay = start + tick * period - loop.time()
            await asyncio.sleep(max(0.0, delay))
            self._tick()

    def _take_read(self, n: int) -> bytes | None:
        """The caller's next `n` bytes (silence-padded), or None when the caller is not talking."""
        if not self._read:
            return None
        read = bytes(self._read[:n]).ljust(n, b"\0")
        taken = min(n, len(self._read))
        del self._read[:taken]
        self._read_taken += taken
        self._wake_readers()
        return read

    def _hear(self, write: bytes) -> None:
        """The caller hears `write` (channel rate): into `heard` and the agent_speech timeline."""
        self.heard += self._heard_resampler.convert(write)
        if rms(write) < VOICE_RMS:
            return
        now = asyncio.get_running_loop().time()
        last = self.agent_speech[-1] if self.agent_speech else None
        if last is not None and now - last[1] <= self.clock.real(0.1):
            last[1] = now
        else:
            self.agent_speech.append([now - self.clock.real(0.02), now])

    def _wake_readers(self) -> None:
        pending = []
        for target, waiter in self._read_waiters:
            if self._read_taken >= target:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                pending.append((target, waiter))
        self._read_waiters = pending

    def _release_readers(self) -> None:
        """The call is over: every say() returns."""
        for _, waiter in self._read_waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------ the caller's side

    async def say(self, pcm: Pcm) -> None:
        """Speak into the call (READ); returns once the media clock has taken all of it."""
        mono = Pcm(to_mono(pcm.data, pcm.channels), pcm.sample_rate)
        data = resample(mono, self.sample_rate).data if mono.sample_rate != self.sample_rate else mono.data
        if self.hung_up or not data:
            return
        loop = asyncio.get_running_loop()
        start = loop.time() + self.clock.real(len(self._read) / (2 * self.sample_rate))
        self._read += data
        waiter = loop.create_future()
        self._read_waiters.append((self._read_taken + len(self._read), waiter))
        await waiter
        self.caller_speech.append((start, loop.time()))

    async def listen(self, silence_s: float, timeout: float) -> bool:
        """Wait until the far end has said something and then stayed quiet for `silence_s`
        (simulated seconds); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.clock.real(timeout)
        since = loop.time()
        quiet = self.clock.real(silence_s)
        while not self.hung_up and loop.time() < deadline:
            last = self.agent_speech[-1] if self.agent_speech else None
            if last is not None and last[1] >= since and loop.time() - last[1] >= quiet:
                return True
            await asyncio.sleep(self.clock.real(0.02))
        return False

    async def wait_event(self, kind: str, timeout: float) -> None:
        """Wait (simulated seconds) for the next event of `kind`: a PBX event name or one of
        'answer' / 'park' / 'hangup'. 'answer' is satisfied at once by an answered call."""
        if kind == "answer" and self.answered:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._event_waiters.append((self.EVENT_ALIASES.get(kind, kind).upper(), waiter))
        try:
            await asyncio.wait_for(waiter, self.clock.real(timeout))
        except TimeoutError:
            raise WaitForTimeout(f"no {kind} within {timeout:g} s") from None

    def _event_fired(self, kind: str) -> None:
        """Wake the scripts waiting for an event of `kind` (compared case-insensitively)."""
        kind = kind.upper()
        for wanted, waiter in self._event_waiters:
            if wanted == kind and not waiter.done():
                waiter.set_result(None)
        self._event_waiters = [(k, w) for k, w in self._event_waiters if not w.done()]


def report(summary: str, heard: object, script_error: str | None) -> int:
    """The simulate commands' last words: one summary line, where the heard audio went, the script's error."""
    print(summary)
    if heard:
        print(f"what the caller heard: {heard}")
    if script_error:
        print(f"script: {script_error}", file=sys.stderr)
        return 1
    return 0
