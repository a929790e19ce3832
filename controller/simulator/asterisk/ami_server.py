"""The fake Asterisk's Manager Interface: TCP server, sessions, login, event delivery, framing.

Bytes as Asterisk 22.10.1 sent them (tests/fixtures/asterisk/ami_session_*): the banner line
"Asterisk Call Manager/11.0.0" with no empty line after it, then "Key: value" CRLF blocks ended by
an empty line. A session handles its actions one at a time, as manager.c's session thread does.
A refused Login is answered a second late and the connection closed; any action but Login,
Logoff and Challenge before login gets "Permission denied".

Responses are written as soon as an action is handled; events come from the PBX through a
queue (Asterisk's stasis), so an event an action caused follows its response and may follow the
response to the next action too, as recorded. The call-control actions live in actions.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.simulator.asterisk.channel import Fields

if TYPE_CHECKING:
    from controller.simulator.asterisk.fake_asterisk import FakeAsterisk

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
LOGIN_FAILURE_DELAY = 1.0  # manager.c sleep(1) before "Authentication failed"
MAX_MESSAGE = 64 * 1024
EVENT_CLASSES = frozenset({"system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
                           "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security",
                           "message"})
_UNAUTHENTICATED = frozenset({"login", "logoff", "challenge"})


class AmiClosed(Exception):
    """The session ends after what has been written (Logoff, refused Login)."""


@dataclass(frozen=True, slots=True)
class Action:
    """One action as manager.c reads it: keys compare case-insensitively, the first value counts."""

    headers: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        return self.get("Action")

    @property
    def action_id(self) -> str:
        return self.get("ActionID")

    def get(self, key: str) -> str:
        """astman_get_header(): the first value, "" when absent."""
        key = key.lower()
        return next((v for k, v in self.headers if k.lower() == key), "")

    def get_all(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self.headers if k.lower() == key]


def parse_action(block: bytes) -> Action:
    """A block of "Key: value" lines (its empty line removed); leading spaces of a value go."""
    headers = []
    for line in block.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep and key:
            headers.append((key.strip(), value.lstrip(" ")))
    return Action(tuple(headers))


def render(fields: Sequence[tuple[str, str]]) -> bytes:
    return ("".join(f"{key}: {value}\r\n" for key, value in fields) + "\r\n").encode("utf-8")


def response(action: Action, status: str, *rest: tuple[str, str]) -> Fields:
    """Response first, ActionID second (when the action had one), then the rest."""
    head = [("Response", status)]
    if action.action_id:
        head.append(("ActionID", action.action_id))
    return [*head, *rest]


def error(action: Action, message: str) -> Fields:
    return response(action, "Error", ("Message", message))


def event_classes(mask: str, default: frozenset[str]) -> frozenset[str]:
    """An Events/EventMask value: on, off, or a class list ('call,cdr'); anything else is off."""
    value = mask.strip().lower()
    if value in ("on", "yes", "true", "all"):
        return EVENT_CLASSES
    if value in ("off", "no", "false"):
        return frozenset()
    if not value:
        return default
    return frozenset(c.strip() for c in value.split(",")) & EVENT_CLASSES


Handler = Callable[["AmiSession", Action], Awaitable[list[Fields]]]


class AmiSession:
    """One manager connection."""

    def __init__(self, server: AmiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.pbx = server.pbx
        self.username = ""
        self.authenticated = False
        self.classes: frozenset[str] = frozenset()
        self.opened = time.time()
        self._reader = reader
        self._writer = writer
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._handlers: dict[str, Handler] = {"login": AmiSession._login, "logoff": AmiSession._logoff,
                                              "events": AmiSession._events, "ping": AmiSession._ping}

    async def serve(self) -> None:
        writing = asyncio.ensure_future(self._write_loop())
        self._out.put_nowait(BANNER)
        try:
            while True:
                block = await self._reader.readuntil(b"\r\n\r\n")
                await self._handle(parse_action(block[:-4]))
        except AmiClosed:
            pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            log.debug("AMI connection ended: %s", exc)
        finally:
            self.authenticated = False
            self.server.sessions.discard(self)
            self._out.put_nowait(None)
            await writing

    def deliver(self, fields: Fields) -> None:
        """An event from the PBX: queued behind whatever the session is writing now."""
        if self.authenticated and _event_class(fields) in self.classes:
            data = render(fields)
            asyncio.get_running_loop().call_soon(self._out.put_nowait, data)

    def close(self) -> None:
        self._writer.close()

    async def _handle(self, action: Action) -> None:
        name = action.name.lower()
        if not name:
            self._send(error(action, "Missing action in request"))
            return
        if not self.authenticated and name not in _UNAUTHENTICATED:
            self._send(error(action, "Permission denied"))
            return
        handler = self._handlers.get(name) or self.server.actions.get(name)
        if handler is None:
            self._send(error(action, f"Invalid/unknown command: {action.name}. "
                                     f"Use Action: ListCommands to show available commands."))
            self._bad_format(action)
            return
        for message in await handler(self, action):
            self._send(message)

    def _send(self, fields: Fields) -> None:
        self._out.put_nowait(render(fields))

    async def _write_loop(self) -> None:
        while (data := await self._out.get()) is not None:
            if not self._writer.is_closing():
                self._writer.write(data)
        if not self._writer.is_closing():
            self._writer.close()

    # ------------------------------------------------------------------ session actions

    async def _login(self, action: Action) -> list[Fields]:
        if self.authenticated:
            return [response(action, "Success", ("Message", "Already authenticated"))]
        if (action.get("Username"), action.get("Secret")) != (self.server.username, self.server.secret):
            await self.pbx.clock.sleep(LOGIN_FAILURE_DELAY)
            self._send(error(action, "Authentication failed"))
            raise AmiClosed
        self.username = action.get("Username")
        self.classes = event_classes(action.get("Events"), EVENT_CLASSES)
        self.authenticated = True
        self.server.sessions.add(self)
        self.server.logged_in.set()
        return [response(action, "Success", ("Message", "Authentication accepted"))]

    async def _logoff(self, action: Action) -> list[Fields]:
        self._send(response(action, "Goodbye", ("Message", "Thanks for all the fish.")))
        raise AmiClosed

    async def _events(self, action: Action) -> list[Fields]:
        self.classes = event_classes(action.get("EventMask"), frozenset())
        return [response(action, "Success", ("Events", "On" if self.classes else "Off"))]

    async def _ping(self, action: Action) -> list[Fields]:
        return [response(action, "Success", ("Ping", "Pong"), ("Timestamp", f"{self.pbx.clock.now():.6f}"))]

    def _bad_format(self, action: Action) -> None:
        """The security event manager.c raises for an unknown action."""
        local = self._writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        remote = self._writer.get_extra_info("peername") or ("127.0.0.1", 0)
        self.pbx.publish([
            ("Event", "RequestBadFormat"), ("Privilege", "security,all"), ("EventTV", _tv(self.pbx.clock.now())),
            ("Severity", "Error"), ("Service", "AMI"), ("EventVersion", "1"), ("SessionID", f"0x{id(self):x}"),
            ("LocalAddress", f"IPV4/TCP/{local[0]}/{local[1]}"), ("RemoteAddress", f"IPV4/TCP/{remote[0]}/{remote[1]}"),
            ("RequestType", f"Action: {action.name}"), ("SessionTV", _tv(self.opened)), ("AccountID", self.username),
        ])


def _event_class(fields: Fields) -> str:
    privilege = next((v for k, v in fields if k == "Privilege"), "")
    return privilege.split(",")[0].lower()


def _tv(epoch: float) -> str:
    """EventTV: '2026-11-23T22:22:10.339+0000'."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}+0000"


class AmiServer:
    """Listens for manager connections; publish() hands an event to every logged-in session."""

    def __init__(self, pbx: FakeAsterisk, username: str, secret: str, actions: dict[str, Handler],
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.pbx = pbx
        self.username = username
        self.secret = secret
        self.actions = actions
        self.host = host
        self.port = port
        self.sessions: set[AmiSession] = set()
        self.logged_in = asyncio.Event()
        self._all: set[AmiSession] = set()
        self._serving: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=MAX_MESSAGE)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every connection (its session then ends on the EOF)."""
        if self._server is not None:
            self._server.close()
        for session in list(self._all):
            session.close()
        if self._serving:
            await asyncio.wait(list(self._serving), timeout=1.0)

    def publish(self, fields: Fields) -> None:
        for session in list(self.sessions):
            session.deliver(fields)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = AmiSession(self, reader, writer)
        task = asyncio.current_task()
        self._all.add(session)
        self._serving.add(task)
        try:
            await session.serve()
        finally:
            self._all.discard(session)
            self._serving.discard(task)
