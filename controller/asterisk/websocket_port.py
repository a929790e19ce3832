"""A call's MediaPort over Asterisk chan_websocket: caller frames in, agent audio out through Asterisk's queue.

Asterisk paces what it is sent (one frame per ptime from its queue) and can drop or mark it, so
voxgate keeps that queue short rather than timing each frame: MediaSession releases audio only
while the estimated queue is under a modest lead and no MEDIA_XOFF is in force. A MARK_MEDIA
after each chunk tells when the caller heard it; FLUSH_MEDIA empties the queue on barge-in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from controller.asterisk.websocket_media import (
    CommandError, Dtmf, MarkProcessed, MediaSession, MediaStart, MediaXoff, MediaXon, WebSocketMediaError,
    expect_media_start,
)
from controller.audio import Resampler, ulaw_decode, ulaw_encode
from controller.call import PlayResult
from controller.media import PortBase, one_chunk

log = logging.getLogger(__name__)

DEFAULT_RATE = 16000  # the contract's dial string asks for c(slin16); MEDIA_START says for sure
MAX_LEAD_MS = 200  # queued in Asterisk ahead of the caller: rides out a 110 ms GC pause
REFILL_MS = 60  # topped up three frames at a time: one wakeup and one message per 60 ms
START_TIMEOUT_S = 5.0  # Asterisk sends MEDIA_START within ~1 ms of the upgrade
MARK_GRACE_S = 1.0


def _codec(start: MediaStart) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """(decode, encode) between the wire format and L16; ulaw is what c() defaults to for many SIP callers."""
    if start.is_l16:
        return bytes, bytes
    if start.format == "ulaw":
        return ulaw_decode, ulaw_encode
    raise WebSocketMediaError(f"voxgate does not take {start.format!r} audio: dial with c(slin16), c(slin) or c(ulaw)")


class _Playback:
    """One play: where it starts in the outbound stream, how much audio it holds, how it ended."""

    def __init__(self, start_ms: int, on_first_frame: Callable[[float], None] | None) -> None:
        self.start_ms = start_ms
        self.on_first_frame = on_first_frame
        self.first_at: float | None = None
        self.audio_ms = 0.0
        self.final_mark: str | None = None
        self.heard_ms: float | None = None  # set when interrupted
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    @property
    def interrupted(self) -> bool:
        return self.done.done() and not self.done.result()

    def left(self, now: float) -> None:
        """Its audio is on the way to Asterisk."""
        if self.first_at is None:
            self.first_at = now
            if self.on_first_frame is not None:
                self.on_first_frame(now)

    def interrupt(self, stream_heard_ms: float) -> None:
        if not self.done.done():
            self.heard_ms = stream_heard_ms - self.start_ms
            self.done.set_result(False)

    def result(self) -> PlayResult:
        total = int(self.audio_ms)
        heard = total if self.heard_ms is None else int(min(max(self.heard_ms, 0.0), total))
        return PlayResult(heard, total, self.interrupted, self.first_at)


class WebSocketMediaPort(PortBase):
    """MediaPort for one call's chan_websocket connection.

    The call layer sets `on_dtmf(digit)` for key presses and `on_closed(reason)` to learn that
    the connection ended (the caller hung up: Asterisk closes with 1000); `hangup()` asks
    Asterisk to hang the channel up; `tap` records both directions. WebSocketMediaServer runs
    attach() for the call's one connection.
    """

    def __init__(self, call_id: str, *, sample_rate: int = DEFAULT_RATE, max_lead_ms: int = MAX_LEAD_MS,
                 refill_ms: int = REFILL_MS, queue_frames: int = 250,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        super().__init__(queue_frames)
        self.call_id = call_id
        self.sample_rate = sample_rate
        self.on_dtmf: Callable[[str], None] | None = None
        self.on_closed: Callable[[str], None] | None = None
        self.media_start: MediaStart | None = None
        self.closed_reason: str | None = None
        self._max_lead_ms = max_lead_ms
        self._refill_ms = refill_ms
        self._start_timeout_s = start_timeout_s
        self._ws: ServerConnection | None = None
        self._session: MediaSession | None = None
        self._decode: Callable[[bytes], bytes] = bytes
        self._encode: Callable[[bytes], bytes] = bytes
        self._pcm_frame = 0  # bytes of L16 in one ptime, from MEDIA_START
        self._used = False
        self._closed = False
        self._wake = asyncio.Event()
        self._play_lock = asyncio.Lock()
        self._generation = 0  # bumped by flush(): plays still waiting for the lock are cancelled too
        self._flushes = 0  # bumped by every FLUSH_MEDIA: audio the sender holds from before it is stale
        self._playback: _Playback | None = None
        self._mark_seq = 0

    # ------------------------------------------------------------ the connection (WebSocketMediaServer)

    @property
    def in_use(self) -> bool:
        """A connection came already: one per call, and none after the call ended."""
        return self._used or self._closed

    async def attach(self, ws: ServerConnection) -> None:
        """Run the call's connection until it closes: MEDIA_START first, then media and events."""
        if self.in_use:
            await ws.close(1008, "this call already has a media connection")
            return
        self._used = True
        self._ws = ws
        reason = "voxgate closed the connection"
        sender: asyncio.Task[None] | None = None
        try:
            session = await self._start(ws)
            sender = asyncio.create_task(self._send(ws, session), name=f"websocket-send-{self.call_id}")
            while True:
                self._receive(session, await ws.recv())
        except ConnectionClosed as exc:
            reason = _close_reason(exc.rcvd)
        except (WebSocketMediaError, TimeoutError) as exc:
            reason = str(exc) or f"no MEDIA_START within {self._start_timeout_s:g} s"
            log.warning("chan_websocket call %s: %s; closing", self.call_id, reason)
            self._lost(reason)
            await ws.close(1003, "unusable media")
        finally:
            if sender is not None:
                sender.cancel()
            self._lost(reason)

    def _lost(self, reason: str) -> None:
        """The connection is over: tell the call layer, unless it ended the call itself."""
        if self._ws is None:
            return
        self._stop_media()
        if not self._closed:
            self.closed_reason = reason
            log.info("chan_websocket call %s: %s", self.call_id, reason)
            if self.on_closed is not None:
                self.on_closed(reason)

    async def _start(self, ws: ServerConnection) -> MediaSession:
        async with asyncio.timeout(self._start_timeout_s):
            start = expect_media_start(await ws.recv())
        self._decode, self._encode = _codec(start)
        session = MediaSession(start, max_lead_ms=self._max_lead_ms, refill_ms=self._refill_ms)
        self.media_start = start
        self.sample_rate = start.sample_rate or self.sample_rate
        self._pcm_frame = self.sample_rate * start.ptime // 1000 * 2
        self._session = session
        self._attached.set()
        return session

    def _receive(self, session: MediaSession, message: str | bytes) -> None:
        if isinstance(message, bytes):
            data = session.receive_binary(message)
            if data is not None:
                pcm = self._decode(data)
                if self.tap is not None:
                    self.tap.caller(pcm, self.sample_rate)
                self._inbound.push(pcm, self.sample_rate)
            return
        try:
            event = session.receive_text(message, asyncio.get_running_loop().time())
        except WebSocketMediaError as exc:
            log.warning("chan_websocket call %s: ignored a TEXT message: %s", self.call_id, exc)
            return
        match event:
            case Dtmf(digit):
                if self.on_dtmf is not None:
                    self.on_dtmf(digit)
            case MarkProcessed(name):
                playback = self._playback
                if playback is not None and name == playback.final_mark and not playback.done.done():
                    playback.done.set_result(True)
                self._wake.set()  # the queue estimate moved
            case MediaXoff():
                log.info("chan_websocket call %s: Asterisk's queue is full (MEDIA_XOFF): holding audio", self.call_id)
            case MediaXon():
                self._wake.set()
            case CommandError(_, text):
                log.warning("chan_websocket call %s: Asterisk refused a command: %s", self.call_id, text.strip())

    @property
    def frames_rejected(self) -> int:
        """Inbound frames dropped as unusable (empty, or not whole samples)."""
        return sum(self._session.framer.dropped.values()) if self._session is not None else 0

    # ------------------------------------------------------------ MediaPort

    @property
    def connected(self) -> bool:
        return self._session is not None

    async def play(self, pcm: bytes, sample_rate: int) -> PlayResult:
        """Play to the caller; returns when Asterisk reports it played, or at a flush."""
        return await self.play_stream(one_chunk(pcm), sample_rate)

    async def play_stream(self, chunks: AsyncIterator[bytes], sample_rate: int,
                          on_first_frame: Callable[[float], None] | None = None) -> PlayResult:
        """Play audio while it is still being produced; `on_first_frame` gets the first audio's send time."""
        generation = self._generation  # a flush while this play waits for the lock cancels it too
        async with self._play_lock:
            session = self._session
            if generation != self._generation or session is None:
                return PlayResult(0, 0, True)
            playback = self._playback = _Playback(session.position_ms, on_first_frame)
            try:
                await self._queue_stream(session, playback, chunks, sample_rate)
                await self._played_out(session, playback)
            finally:
                self._playback = None
                if not playback.done.done():  # cancelled: its audio must not play under the next one
                    await self._flush(session)
            return playback.result()

    async def flush(self) -> None:
        """Barge-in: FLUSH_MEDIA goes out at once and nothing more is released."""
        self._generation += 1
        if self._session is not None:
            await self._flush(self._session)

    async def hangup(self) -> None:
        """Ask Asterisk to hang the channel up (HANGUP); it then closes the connection with 1000."""
        session, ws = self._session, self._ws
        if ws is None:
            return
        if session is None:  # before MEDIA_START: our close is a hangup too (cause 16)
            await ws.close(1000, "hangup")
            return
        session.send_command(session.commands.hangup())
        await self._send_now(ws, session)

    def close(self) -> None:
        """The call is over: end frames() and playback, and close the connection (Asterisk hangs up)."""
        if self._closed:
            return
        self._closed = True
        ws = self._ws
        self._stop_media()
        if ws is not None:
            asyncio.ensure_future(ws.close(1000, "call ended"))

    # ------------------------------------------------------------ outbound

    async def _queue_stream(self, session: MediaSession, playback: _Playback, chunks: AsyncIterator[bytes],
                            sample_rate: int) -> None:
        """Whole frames to the session as they come, a mark after each chunk, the padded tail last."""
        resampler = Resampler(sample_rate, self.sample_rate)
        frame = self._pcm_frame
        pending = bytearray()
        async for chunk in chunks:
            if playback.done.done():
                return
            pcm = resampler.convert(chunk)
            playback.audio_ms += len(pcm) * 1000 / (2 * self.sample_rate)
            pending += pcm
            whole = len(pending) - len(pending) % frame
            if whole:
                session.send_audio(self._encode(bytes(pending[:whole])))
                del pending[:whole]
                session.mark(self._next_mark())
                self._wake.set()
        if playback.done.done():
            return
        session.send_audio(self._encode(bytes(pending)), end=True)
        playback.final_mark = self._next_mark()
        session.mark(playback.final_mark)
        self._wake.set()

    async def _played_out(self, session: MediaSession, playback: _Playback) -> None:
        """Wait for the last mark; should it never come, the queue estimate bounds the wait."""
        loop = asyncio.get_running_loop()
        while not playback.done.done():
            now = loop.time()
            remaining_s = max(0.0, session.position_ms - session.played_ms(now)) / 1000
            finished, _ = await asyncio.wait({playback.done}, timeout=remaining_s + MARK_GRACE_S)
            if not finished and not (session.xoff or session.paused):
                log.warning("chan_websocket call %s: mark %s never came back; assuming it played",
                            self.call_id, playback.final_mark)
                playback.done.set_result(True)

    async def _flush(self, session: MediaSession) -> None:
        now = asyncio.get_running_loop().time()
        self._flushes += 1
        flushed = session.flush(now)
        if self._playback is not None:
            self._playback.interrupt(max(flushed.heard_ms, session.heard_ms))
        if self._ws is not None:
            await self._send_now(self._ws, session)

    async def _send_now(self, ws: ServerConnection, session: MediaSession) -> None:
        """Commands that must not wait for the sender's next turn (FLUSH_MEDIA, HANGUP)."""
        try:
            for message in session.messages_to_send(asyncio.get_running_loop().time()):
                await self._send_message(ws, message)
        except ConnectionClosed:
            pass

    async def _send(self, ws: ServerConnection, session: MediaSession) -> None:
        """Release what the session lets go, then sleep until it lets more go or something changes."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        try:
            while True:
                self._wake.clear()
                now = loop.time()
                flushes = self._flushes
                for message in session.messages_to_send(now):
                    if isinstance(message, bytes):
                        if flushes != self._flushes:
                            continue  # a flush came while this batch went out: its audio is discarded
                        for _ in range(len(message) // session.framer.frame_size):
                            self.pacing.record(now - due)
                    await self._send_message(ws, message)
                wake_at = session.next_send_time(loop.time())
                timer = None if wake_at is None else loop.call_at(wake_at, self._wake.set)
                await self._wake.wait()
                if timer is not None:
                    timer.cancel()
                due = loop.time() if wake_at is None else wake_at
        except ConnectionClosed:
            pass  # the reader sees the close too

    async def _send_message(self, ws: ServerConnection, message: str | bytes) -> None:
        await ws.send(message)
        if isinstance(message, bytes):
            now = asyncio.get_running_loop().time()
            if self.tap is not None:
                pcm, step = self._decode(message), self._pcm_frame
                for offset in range(0, len(pcm), step):
                    self.tap.agent(pcm[offset:offset + step], self.sample_rate)
            if self._playback is not None:
                self._playback.left(now)

    def _next_mark(self) -> str:
        self._mark_seq += 1
        return f"vx{self._mark_seq}"

    def _stop_media(self) -> None:
        session = self._session
        if session is not None and self._playback is not None:
            now = asyncio.get_running_loop().time()
            self._playback.interrupt(max(session.played_ms(now), session.heard_ms))
        self._session = None
        self._ws = None
        self._attached.clear()
        self._wake.set()
        self._inbound.end()


def _close_reason(close: Close | None) -> str:
    if close is None:
        return "connection lost without a close frame"
    if close.code == 1000:
        return "Asterisk closed the connection (the call hung up)"
    return f"connection closed ({close.code}{': ' + close.reason if close.reason else ''})"
