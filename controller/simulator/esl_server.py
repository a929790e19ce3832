"""The simulated mod_event_socket: the inbound ESL server voxgate connects to, and the command
handling both directions share (the outbound side is in outbound.py).

Replies and their wording follow mod_event_socket.c of FreeSWITCH 1.10 and the recorded sessions.
Like FreeSWITCH, a connection answers a command before it sends the events that command caused
(they wait in the listener's queue meanwhile), and the API event of an 'api' command comes last.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from controller.esl import protocol as esl
from controller.simulator.events import EVENT_NAMES, SimEvent

if TYPE_CHECKING:
    from controller.simulator.channel import SimChannel
    from controller.simulator.fake_freeswitch import FakeFreeSwitch

log = logging.getLogger(__name__)

FIRST_COMMAND_TIMEOUT = 25.0  # read_packet(listener, &ievent, 25) for an outbound session's 'connect'
MAX_COMMAND_LINE = 1024 * 1000  # CMD_BUFLEN

# What 'myevents' subscribes to (mod_event_socket.c); PLAYBACK_* and CUSTOM are not among them.
MYEVENTS = frozenset({
    "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DATA",
    "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_UUID", "CHANNEL_OUTGOING", "CHANNEL_PARK",
    "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE", "CHANNEL_UNBRIDGE", "CHANNEL_UNPARK",
    "DETECTED_SPEECH", "DTMF", "NOTALK", "TALK",
})


def apply_sendmsg(channel: SimChannel, headers: dict[str, str], body: bytes) -> None:
    """switch_ivr_parse_event(): what a sendmsg's call-command does to the channel."""
    command = headers.get("call-command", "").lower()
    if command == "execute":
        app = headers.get("execute-app-name", "")
        arg = headers.get("execute-app-arg") or (body.decode("utf-8", "replace") if body else None)
        loops = headers.get("loops", "1")
        channel.enqueue(app, arg, headers.get("event-uuid"), int(loops) if loops.isdigit() else 1)
    elif command == "hangup":
        channel.hangup(headers.get("hangup-cause"))
    else:
        log.warning("sendmsg call-command %r is not simulated", command)


class EslSession:
    """One Event Socket connection: framing, subscriptions, filters, api/bgapi/sendmsg and the rest.

    `channel` is the session the connection controls: the outbound socket's channel, or the one an
    inbound 'myevents <uuid>' picked. Such a connection says goodbye when its channel hangs up,
    or lingers if asked to.
    """

    full = True  # outbound 'socket' without 'full' allows only a few commands

    def __init__(self, switch: FakeFreeSwitch, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, channel: SimChannel | None = None) -> None:
        self.switch = switch
        self.channel = channel
        self.format = "plain"
        self.closed = asyncio.Event()
        self._reader = reader
        self._writer = writer
        self._enabled = False
        self._all = False
        self._names: set[str] = set()
        self._subclasses: set[str] = set()
        self._filters: list[tuple[str, str]] = []
        self._myevents = False
        self._linger: int | None = None
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._held: list[bytes | None] | None = None
        self._sent_close = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._commands = {
            "exit": self._exit, "...": self._exit, "filter": self._filter, "resume": self._resume,
            "connect": self._connect, "getvar": self._getvar, "myevents": self._myevents_command,
            "sendmsg": self._sendmsg, "api": self._api, "bgapi": self._bgapi, "linger": self._linger_command,
            "nolinger": self._nolinger, "event": self._event, "nixevent": self._nixevent,
            "noevents": self._noevents,
        }

    # ------------------------------------------------------------------ connection

    async def serve(self) -> None:
        """Run the connection until either side ends it."""
        self.switch.events.subscribe(self)
        writer = asyncio.create_task(self._write_loop())
        try:
            await self.begin()
            while not self._sent_close:
                command = await self._read_command()
                if command is None:
                    break
                await self._dispatch(*command)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            log.info("ESL connection dropped: %s", exc)
        finally:
            self.switch.events.unsubscribe(self)
            self._send(None)
            await writer
            for task in list(self._tasks):
                task.cancel()
            self.closed.set()

    async def begin(self) -> None:
        """What the switch sends first (inbound: the auth request)."""

    def close(self) -> None:
        """End the connection after what is queued, without a notice (the switch is stopping)."""
        self._send(None)

    def abort(self) -> None:
        """Drop the connection at once: nothing more is written, not even what is queued."""
        self._writer.transport.abort()
        self._send(None)

    async def _write_loop(self) -> None:
        try:
            while (data := await self._out.get()) is not None and not self._writer.is_closing():
                self._writer.write(data)
                await self._writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writer.close()

    def _send(self, data: bytes | None) -> None:
        """Queue bytes for the socket now (None: close after what is queued)."""
        if self._sent_close:
            return
        if data is None:
            self._sent_close = True
        self._out.put_nowait(data)

    def _emit(self, data: bytes | None) -> None:
        """Queue bytes behind the reply of the command being handled, if any."""
        if self._held is not None:
            self._held.append(data)
        else:
            self._send(data)

    async def _read_command(self, timeout: float | None = None) -> tuple[str, dict[str, str], bytes] | None:
        """One command: its line, 'Key: value' headers up to the blank line, a Content-Length body."""
        lines: list[str] = []
        while True:
            read = self._reader.readline()
            raw = await (asyncio.wait_for(read, timeout) if timeout and not lines else read)
            if not raw:
                return None
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if line:
                lines.append(line)
            elif lines:
                break
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if sep:
                headers.setdefault(key.strip().lower(), value.strip())
        length = int(headers.get("content-length", "0") or 0)
        body = await self._reader.readexactly(length) if length > 0 else b""
        return lines[0].strip(), headers, body

    async def _dispatch(self, line: str, headers: dict[str, str], body: bytes) -> None:
        self._held = []
        try:
            await self.command(line, headers, body)
        finally:
            held, self._held = self._held, None
            for data in held:
                self._send(data)

    async def command(self, line: str, headers: dict[str, str], body: bytes) -> None:
        verb, _, rest = line.partition(" ")
        handler = self._commands.get(verb.lower())
        if handler is None or (not self.full and verb.lower() not in _SINGLE_CHANNEL):
            self.reply("-ERR command not found")
            return
        await handler(rest.strip(), headers, body)

    def reply(self, text: str, extra: list[tuple[str, str]] | None = None) -> None:
        self._send(esl.command_reply(text, extra))

    def _disconnect_notice(self) -> bytes:
        extra = [("Controlled-Session-UUID", self.channel.uuid), ("Content-Disposition", "disconnect")] \
            if self.channel else None
        return esl.disconnect_notice(extra)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ events

    def deliver(self, event: SimEvent) -> None:
        if self._wants(event):
            self._emit(esl.event_json(list(event.headers), event.body) if self.format == "json"
                       else esl.event_plain(list(event.headers), event.body))
        if (self.channel is not None and event.name == "CHANNEL_HANGUP_COMPLETE"
                and event.unique_id == self.channel.uuid):
            self._channel_down()

    def _wants(self, event: SimEvent) -> bool:
        if not self._enabled:
            return False
        if self._all:
            send = True
        elif event.name in self._names:
            send = event.name != "CUSTOM" or not event.subclass or event.subclass in self._subclasses
        else:
            return False
        if send and self._filters:
            send = self._filtered(event)
        if send and self._myevents:
            uid = event.unique_id
            send = uid is not None and (self.channel is None or uid == self.channel.uuid)
            if self.channel is not None and event.get("Job-Owner-UUID") == self.channel.uuid:
                send = True  # the results of this connection's own bgapi jobs still come through
        return send

    def _filtered(self, event: SimEvent) -> bool:
        """The listener filters: '+'/'-' prefixes, '/regex/' values, otherwise case-insensitive equality."""
        send = False
        for name, value in self._filters:
            actual = event.get(name)
            if actual is None:
                continue
            stripped = value.lstrip("+- ")
            positive = value[:len(value) - len(stripped)].replace(" ", "")[-1:] != "-"
            if (send and positive) or not stripped:
                continue
            if value.startswith("/"):
                matched = re.search(stripped.strip("/"), actual) is not None
            else:
                matched = actual.lower() == stripped.lower()
            if matched:
                if not positive:
                    return False
                send = True
        return send

    def _channel_down(self) -> None:
        """The controlled channel is gone: linger notice, or goodbye (FreeSWITCH's HANDLE_DISCO)."""
        if self._linger is None:
            self._emit(self._disconnect_notice())
            self._emit(None)
            return
        self._emit(esl.disconnect_notice([
            ("Controlled-Session-UUID", self.channel.uuid), ("Content-Disposition", "linger"),
            ("Channel-Name", self.channel.name), ("Linger-Time", str(self._linger))], text=""))
        if self._linger >= 0:
            self._spawn(self._linger_then_close(self._linger))

    async def _linger_then_close(self, seconds: int) -> None:
        await self.switch.clock.sleep(seconds)
        self._emit(self._disconnect_notice())
        self._emit(None)

    # ------------------------------------------------------------------ commands

    async def _exit(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        self.reply("+OK bye")
        self._send(self._disconnect_notice())
        self._send(None)

    async def _filter(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        name, sep, value = rest.partition(" ")
        if name.lower() == "delete" and sep:
            name, _, value = value.partition(" ")
            if name.lower() == "all":
                self._filters.clear()
            else:
                self._filters = [(n, v) for n, v in self._filters
                                 if not (n.lower() == name.lower() and (not value or v == value))]
            self.reply(f"+OK filter deleted. [{name}][{value}]")
        elif sep:
            if name.lower() == "add":
                name, _, value = value.partition(" ")
            self._filters.append((name, value))
            self.reply(f"+OK filter added. [{name}]=[{value}]")
        else:
            self.reply("-ERR invalid syntax")

    async def _resume(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        if self.channel is None:
            self.reply("-ERR command not found")
            return
        self.channel.set_var("socket_resume", "true")
        self.reply("+OK")

    async def _connect(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        self.reply("-ERR command not found")

    async def _getvar(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        if self.channel is None:
            self.reply("-ERR command not found")
            return
        self.reply(self.channel.variables.get(rest, "") if rest else "")

    async def _myevents_command(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        if self._myevents:
            self.reply("-ERR aready enabled.")  # sic
            return
        words = rest.split()
        if self.channel is None:
            channel = self.switch.channels.get(words[0]) if words else None
            if channel is None:
                self.reply("-ERR invalid uuid")
                return
            self.channel = channel
        self._names |= MYEVENTS
        self._myevents = self._enabled = True
        if any(w.lower() == "json" for w in words):
            self.format = "json"
        elif any(w.lower() == "plain" for w in words):
            self.format = "plain"
        self.reply("+OK Events Enabled")

    async def _sendmsg(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        target_uuid = rest or headers.get("session-id", "")
        if self.channel is not None and target_uuid in ("", self.channel.uuid):
            target = self.channel
        else:
            target = self.switch.channels.get(target_uuid) if target_uuid else None
        if target is None:
            self.reply(f"-ERR invalid session id [{target_uuid}]")
            return
        apply_sendmsg(target, headers, body)
        self.reply("+OK")

    async def _api(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        if not rest:
            self.reply("-ERR command not found")
            return
        command, _, arg = rest.partition(" ")
        api_event = self._api_event(command, arg)
        output = await self.switch.api(command, arg)
        if output is None:
            output = f"-ERR {command} Command not found!\n"
        self._send(esl.api_response(output or "-ERR no reply\n"))
        self.switch.events.fire(api_event)

    async def _bgapi(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        if not rest:
            self.reply("-ERR command not found")
            return
        command, _, arg = rest.partition(" ")
        job_uuid = headers.get("job-uuid") or str(uuid.uuid4())
        self.reply(f"+OK Job-UUID: {job_uuid}", [("Job-UUID", job_uuid)])
        self.switch.spawn(self._background_job(job_uuid, command, arg))

    async def _background_job(self, job_uuid: str, command: str, arg: str) -> None:
        """api_exec for bgapi: the API event, then BACKGROUND_JOB with the output as its body."""
        api_event = self._api_event(command, arg)
        output = await self.switch.api(command, arg)
        if output is None:
            output = f"-ERR {command} Command not found!\n"
        self.switch.events.fire(api_event)
        headers = self.switch.events.head("BACKGROUND_JOB") + [("Job-UUID", job_uuid), ("Job-Command", command)]
        if arg:
            headers.append(("Job-Command-Arg", arg))
        if self.channel is not None:
            headers.append(("Job-Owner-UUID", self.channel.uuid))
        self.switch.events.fire(SimEvent("BACKGROUND_JOB", tuple(headers), output))

    def _api_event(self, command: str, arg: str) -> SimEvent:
        headers = self.switch.events.head("API") + [("API-Command", command)]
        if arg:
            headers.append(("API-Command-Argument", arg))
        return SimEvent("API", tuple(headers))

    async def _linger_command(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        if self.channel is None:
            self.reply("-ERR not controlling a session")
            return
        if rest:
            match = re.match(r"[+-]?\d+", rest)
            self._linger = int(match.group()) if match else 0
            self.reply(f"+OK will linger {self._linger} seconds")
        else:
            self._linger = -1
            self.reply("+OK will linger")

    async def _nolinger(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        if self.channel is None:
            self.reply("-ERR not controlling a session")
            return
        self._linger = None
        self.reply("+OK will not linger")

    async def _event(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        keys = 0
        custom = False
        for index, word in enumerate(rest.split(" ")):
            if index == 0 and word.lower() in ("plain", "json", "xml"):
                if word.lower() == "xml":
                    self.reply("-ERR xml events are not simulated")
                    return
                self.format = word.lower()
                continue
            if custom:
                if word:
                    self._subclasses.add(word)
            elif word.upper() in EVENT_NAMES:
                keys += 1
                name = word.upper()
                self._all |= name == "ALL"
                self._names.add(name)
                custom |= name == "CUSTOM"
        if not keys:
            self.reply("-ERR no keywords supplied")
            return
        self._enabled = True
        self.reply(f"+OK event listener enabled {self.format}")

    async def _nixevent(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        keys = 0
        custom = False
        for word in rest.split(" "):
            if custom:
                self._subclasses.discard(word)
            elif word.upper() in EVENT_NAMES:
                keys += 1
                name = word.upper()
                if name == "CUSTOM":
                    custom = True
                elif name == "ALL":
                    self._all = False
                    self._names.clear()
                else:
                    if self._all:
                        self._all = False
                        self._names = set(EVENT_NAMES) - {"ALL"}
                    self._names.discard(name)
        if not keys:
            self.reply("-ERR no keywords supplied")
            return
        self._enabled = True
        self.reply("+OK events nixed")

    async def _noevents(self, rest: str, headers: dict[str, str], body: bytes) -> None:
        if not self._enabled:
            self.reply("-ERR not listening for events")
            return
        self._enabled = self._all = self._myevents = False
        self._names.clear()
        self._subclasses.clear()
        self.reply("+OK no longer listening for events")


# What an outbound socket without 'full' may send.
_SINGLE_CHANNEL = frozenset({"exit", "...", "filter", "resume", "connect", "getvar", "myevents", "sendmsg"})


class InboundSession(EslSession):
    """A connection to the ESL port: auth/request, then 'auth <password>'."""

    def __init__(self, switch: FakeFreeSwitch, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, password: str) -> None:
        super().__init__(switch, reader, writer)
        self._password = password
        self._authed = False

    async def begin(self) -> None:
        self._send(esl.auth_request())

    async def command(self, line: str, headers: dict[str, str], body: bytes) -> None:
        verb, _, rest = line.partition(" ")
        if self._authed or verb.lower() in ("exit", "..."):
            await super().command(line, headers, body)
        elif verb.lower() == "auth" and rest:
            if rest == self._password:
                self._authed = True
                self.reply("+OK accepted")
            else:
                self.reply("-ERR invalid")
                self._send(esl.disconnect_notice())
                self._send(None)
        else:
            self.reply("-ERR command not found")


class EslServer:
    """The inbound Event Socket listener (mod_event_socket's 8021)."""

    def __init__(self, switch: FakeFreeSwitch, password: str, host: str, port: int) -> None:
        self.switch = switch
        self.password = password
        self.host = host
        self.port = port
        self.sessions: set[InboundSession] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=MAX_COMMAND_LINE)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.close()
        for session in list(self.sessions):
            await session.closed.wait()
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = InboundSession(self.switch, reader, writer, self.password)
        self.sessions.add(session)
        try:
            await session.serve()
        finally:
            self.sessions.discard(session)
