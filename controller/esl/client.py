"""The asyncio face of ESL: inbound client with reconnect, outbound server, one link per socket.

Connections live on the GeventHub thread (greenswitch); coroutines here only submit work to
it and receive frames and events back through call_soon_threadsafe, in wire order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from collections.abc import Awaitable, Callable

import gevent
from gevent.server import StreamServer
from greenswitch.esl import NotConnectedError, OutboundSessionHasGoneAway

from controller.esl import protocol as esl
from controller.esl.connection import InboundConnection, OutboundConnection
from controller.esl.hub import GeventHub
from controller.esl.protocol import EslEvent, EslFrame

log = logging.getLogger(__name__)

EventHandler = Callable[[EslEvent], None]

# What a controlled call needs; CUSTOM subclasses are moved last by esl.subscribe().
CALL_EVENTS = [
    "CHANNEL_ANSWER", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_PARK", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "DTMF", "PLAYBACK_START", "PLAYBACK_STOP",
    "BACKGROUND_JOB", "mod_audio_fork::connect", "mod_audio_fork::connect_failed",
    "mod_audio_fork::disconnect", "mod_audio_fork::play_audio", "mod_audio_fork::kill_audio",
    "mod_audio_fork::error", "mod_audio_fork::buffer_overrun",
]


class EslError(RuntimeError):
    """An ESL command could not be carried out (connection down, timeout)."""


class EslLink:
    """One ESL socket as seen from asyncio: send commands, receive events and notices."""

    def __init__(self, hub: GeventHub, loop: asyncio.AbstractEventLoop) -> None:
        self._hub = hub
        self._loop = loop
        self.conn: InboundConnection | OutboundConnection | None = None
        self.on_event: EventHandler | None = None
        self.on_notice: Callable[[EslFrame], None] | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""

    # runs on the hub thread
    def _frame_from_hub(self, frame: EslFrame) -> None:
        try:
            event = esl.parse_event(frame)
        except esl.EslProtocolError as exc:
            log.error("unreadable ESL event dropped: %s", exc)
            return
        self._loop.call_soon_threadsafe(self._dispatch, frame, event)

    def _dispatch(self, frame: EslFrame, event: EslEvent | None) -> None:
        if event is not None:
            if self.on_event is not None:
                self.on_event(event)
            return
        if frame.content_type == "voxgate/connection-lost":
            self.close_reason = frame.headers.get("Reason", "")
            self.closed.set()
        if self.on_notice is not None:
            self.on_notice(frame)

    async def command(self, raw: bytes, timeout: float = 10.0) -> EslFrame:
        """Send encoded bytes and return the reply frame."""
        conn = self.conn
        if conn is None or self.closed.is_set():
            raise EslError(f"ESL connection is down ({self.close_reason or 'not connected'})")
        try:
            return await self._hub.call(conn.send, raw, timeout, timeout=timeout + 1)
        except (asyncio.TimeoutError, gevent.Timeout) as exc:
            raise EslError(f"no ESL reply within {timeout:.0f} s") from exc
        except (NotConnectedError, OutboundSessionHasGoneAway) as exc:
            raise EslError(f"ESL connection is down ({exc})") from exc
        except OSError as exc:
            raise EslError(f"ESL send failed: {exc}") from exc

    async def api(self, command: str, timeout: float = 10.0) -> EslFrame:
        return await self.command(esl.api(command), timeout)

    async def close(self) -> None:
        if self.conn is not None:
            await self._hub.call(self.conn.close)


class InboundClient:
    """Connects to FreeSWITCH's event socket, keeps reconnecting, and matches bgapi jobs."""

    def __init__(self, hub: GeventHub, host: str, port: int, password: str, *,
                 events: list[str] | None = None, on_event: EventHandler,
                 on_connected: Callable[[], Awaitable[None]] | None = None,
                 backoff: tuple[float, float] = (0.5, 10.0)) -> None:
        self._hub = hub
        self._host, self._port, self._password = host, port, password
        self._events = events or CALL_EVENTS
        self._on_event = on_event
        self._on_connected = on_connected
        self._backoff = backoff
        self._jobs: dict[str, asyncio.Future[str]] = {}
        self._task: asyncio.Task | None = None
        self.link: EslLink | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="esl-inbound")

    async def _run(self) -> None:
        delay = self._backoff[0]
        loop = asyncio.get_running_loop()
        while True:
            link = EslLink(self._hub, loop)
            link.on_event = self._route
            try:
                link.conn = await self._hub.call(self._connect, link, timeout=15)
                self.link = link  # before subscribing: events can overtake the subscription's reply
                await link.command(esl.subscribe(self._events))
            except Exception as exc:
                log.warning("ESL %s:%s not available (%s); retrying in %.1f s", self._host, self._port,
                            exc, delay)
                await link.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            self.connected.set()
            log.info("ESL connected to %s:%s", self._host, self._port)
            if self._on_connected is not None:
                asyncio.create_task(self._on_connected())
            await link.closed.wait()
            self.connected.clear()
            self.reconnects += 1
            self._fail_jobs(f"ESL connection lost: {link.close_reason}")
            log.warning("ESL connection lost (%s); reconnecting", link.close_reason)

    def _connect(self, link: EslLink) -> InboundConnection:
        conn = InboundConnection(self._host, self._port, self._password, timeout=4)
        conn.on_frame = link._frame_from_hub
        conn.connect()
        return conn

    def _route(self, event: EslEvent) -> None:
        if event.name == "BACKGROUND_JOB":
            job = self._jobs.pop(event.headers.get("Job-UUID", ""), None)
            if job is not None and not job.done():
                job.set_result(event.body or "")
        self._on_event(event)

    def _fail_jobs(self, reason: str) -> None:
        for job in self._jobs.values():
            if not job.done():
                job.set_exception(EslError(reason))
        self._jobs.clear()

    async def api(self, command: str, timeout: float = 10.0) -> EslFrame:
        if self.link is None or not self.connected.is_set():
            raise EslError("ESL inbound connection is down")
        return await self.link.api(command, timeout)

    async def bgapi(self, command: str, timeout: float = 60.0) -> str:
        """Run a background API job; returns its output from the matching BACKGROUND_JOB event."""
        if self.link is None or not self.connected.is_set():
            raise EslError("ESL inbound connection is down")
        job_uuid = str(uuidlib.uuid4())
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._jobs[job_uuid] = future
        try:
            reply = await self.link.command(esl.bgapi(command, job_uuid))
            if not reply.ok:
                raise EslError(f"bgapi {command.split()[0]} refused: {reply.reply_text}")
            return await asyncio.wait_for(future, timeout)
        finally:
            self._jobs.pop(job_uuid, None)

    async def stop(self) -> None:
        # Python 3.11's wait_for (under hub.call) swallows a cancellation that lands as a connect attempt
        # fails; the retry loop then sleeps on as if never cancelled. So cancel until the task is done.
        while self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1.0)
        if self.link is not None:
            await self.link.close()
        self._fail_jobs("ESL client stopped")


class OutboundServer:
    """Accepts FreeSWITCH's `socket ... async full` connections, one per channel."""

    def __init__(self, hub: GeventHub, host: str, port: int,
                 on_session: Callable[[EslLink, dict[str, str]], Awaitable[None]]) -> None:
        self._hub = hub
        self._host, self._port = host, port
        self._on_session = on_session
        self._server: StreamServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.port = await self._hub.call(self._listen)

    def _listen(self) -> int:
        self._server = StreamServer((self._host, self._port), self._accept)
        self._server.start()
        return self._server.server_port

    def _accept(self, sock, address) -> None:
        """Hub thread: take the connect reply, then hand the channel to asyncio."""
        assert self._loop is not None
        link = EslLink(self._hub, self._loop)
        conn = OutboundConnection(address, sock)
        conn.on_frame = link._frame_from_hub
        link.conn = conn
        try:
            data = conn.connect()
        except Exception as exc:
            log.warning("outbound ESL from %s failed before connect completed: %s", address, exc)
            conn.close()
            return
        future = asyncio.run_coroutine_threadsafe(self._on_session(link, data), self._loop)
        future.add_done_callback(lambda f: self._session_failed(f, conn))
        conn.wait_closed()

    def _session_failed(self, future, conn: OutboundConnection) -> None:
        """A session that could not be set up must not leave the channel sitting in `socket`."""
        if future.cancelled() or future.exception() is None:
            return
        log.error("outbound ESL session could not be set up: %r; hanging up", future.exception())
        self._hub.submit(self._abandon, conn)

    @staticmethod
    def _abandon(conn: OutboundConnection) -> None:
        try:
            conn.send(esl.sendmsg_hangup("NORMAL_TEMPORARY_FAILURE"), timeout=2)
            conn.send("exit", timeout=2)
        except Exception:
            pass
        conn.close()

    async def stop_listening(self) -> None:
        """Refuse new channels (FreeSWITCH's `socket` fails over) but keep the sessions already up."""
        if self._server is not None:
            await self._hub.call(self._server.close)

    async def stop(self) -> None:
        if self._server is not None:
            await self._hub.call(self._server.stop, 2)
