"""The asyncio AMI client: one Asterisk Manager session, kept logged in, with typed actions and events.

Mirrors controller.esl.client.InboundClient: a runner task connects, logs in, awaits
`on_connected` (voxgate resyncs live channels there) and reconnects with backoff; events go to
`on_event` in wire order; actions are matched to their replies by ActionID.

What is taken from panoramisk 1.4 and why not more (tests/fixtures/asterisk/ami_panoramisk_samples.json):
- Used: `panoramisk.ami_protocol.AMIProtocol` is the asyncio protocol on the socket; it owns the
  transport and its idempotent close(). Its data_received and send are replaced.
- Framing is controller.asterisk.ami.AmiParser, not panoramisk's: panoramisk decodes each TCP read
  with errors="ignore" (non-ASCII, and any UTF-8 character split across reads, vanish), strip()s
  each block (an empty last header such as "BridgeId: " is lost), keeps headers in a dict (order
  and the position of repeated keys are lost, Output is str or list by line count) and hands any
  message carrying a pending ActionID to that action, so an event that overtakes its Response (list
  items, a UserEvent's echo) resolves the action with the wrong message.
- Actions are our own bytes (ami.action / originate_action): panoramisk sorts headers, writes a dict
  Variable as its Python repr, does not refuse CR/LF in values, and treats a synchronous Originate
  as a list it waits on forever; ours is always Async and its OriginateResponse is read with
  originate_outcome (panoramisk calls a Failure a success).
- Manager is not used: connect() returns before the Login reply and a refusal only shows as
  authenticated=False; it reconnects at a fixed whole-second delay with no backoff, even after a
  refused login (re-sending a wrong secret forever); create_connection has no timeout; unanswered
  actions are replayed on the next session (a second Originate or Hangup); its Ping never checks
  for the Pong, so a dead peer is never noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal, TypeVar

from panoramisk.ami_protocol import AMIProtocol

from controller.asterisk import ami

log = logging.getLogger(__name__)

EventHandler = Callable[[ami.AmiEvent], None]
_T = TypeVar("_T")


class AmiError(RuntimeError):
    """An AMI action could not be carried out."""


class AmiLoginError(AmiError, ami.AmiLoginError):
    """Asterisk refused the Login (wrong user or secret, or an ACL); retrying will not help."""


class AmiTimeout(AmiError, TimeoutError):
    """No reply (or no connection) within the time allowed."""


class AmiConnectionLost(AmiError, ConnectionError):
    """The session is down: the action was not sent, or its reply will never come."""


class AmiActionError(AmiError):
    """Asterisk answered an action with Response: Error (no such channel, bad arguments, ...)."""

    def __init__(self, action: str, response: ami.AmiResponse) -> None:
        super().__init__(f"AMI {action} refused: {response.message or response.response}")
        self.action = action
        self.response = response


class AmiState(enum.Enum):
    """Where the client is: before start(), (re)connecting, logged in, or stopped for good."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    STOPPED = "stopped"


class _Secret:
    """Keeps the AMI secret out of reprs, logs and tracebacks' locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if any(c in value for c in "\r\n\x00"):
            raise ValueError("the AMI secret must be a single line")  # never echo the value
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


class _Session(AMIProtocol):
    """One TCP connection: panoramisk's protocol keeps the transport; AmiParser frames the bytes."""

    def __init__(self, on_message: Callable[[ami.AmiMessage], None],
                 on_lost: Callable[[_Session], None]) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._parser = ami.AmiParser()
        self.authenticated = False
        self.close_reason = ""
        self.gone = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed(data)
        except ami.AmiProtocolError as exc:
            log.warning("AMI: unreadable message dropped: %s", exc)
            if self._parser.dead:
                self.close("AMI framing lost")
        for message in self._parser.messages():
            self._on_message(message)

    @property
    def usable(self) -> bool:
        return self.authenticated and not self.closed

    def write(self, data: bytes) -> None:
        if self.closed:
            raise AmiConnectionLost(f"AMI connection is closed ({self.close_reason})")
        self.transport.write(data)

    def close(self, reason: str = "closed by voxgate") -> None:
        self.close_reason = self.close_reason or reason
        super().close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.close_reason = self.close_reason or (str(exc) if exc else "closed by Asterisk")
        self.gone.set()
        self._on_lost(self)


def _discard(future: asyncio.Future) -> None:
    """A waiter that gave up: cancel its future, or mark its exception seen so asyncio stays quiet."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


async def _wait(future: asyncio.Future[_T], timeout: float | None, what: str) -> _T:
    try:
        async with asyncio.timeout(timeout):
            return await future
    except TimeoutError:
        raise AmiTimeout(f"no {what} within {timeout:g} s") from None


class AmiClient:
    """A logged-in AMI session to one Asterisk that survives restarts of either side.

    Every event reaches `on_event` in wire order, whatever its type, except the items of a list
    this client is collecting (those come back from list()); OriginateResponse events reach both
    originate() and `on_event`. An exception in `on_event` is logged, not raised.
    """

    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 on_event: EventHandler,
                 on_connected: Callable[[], Awaitable[None]] | None = None,
                 events: str = "on",
                 connect_timeout: float = 10.0,
                 action_timeout: float = 10.0,
                 backoff: tuple[float, float] = (0.5, 30.0),
                 ping_interval: float | None = 20.0) -> None:
        """`events` is the Login Events value ("on" or a class list such as "call,cdr,dtmf,user").

        connect_timeout bounds TCP connect plus Login (a refusal arrives ~1 s late);
        action_timeout bounds each reply; ping_interval (None: off) sends Ping and reconnects
        when no Pong comes within action_timeout.
        """
        self._host, self._port, self._username = host, port, username
        self._secret = _Secret(secret)
        self._on_event = on_event
        self._on_connected = on_connected
        self._events = events
        self._connect_timeout = connect_timeout
        self._action_timeout = action_timeout
        self._backoff = backoff
        self._ping_interval = ping_interval
        self._ids = itertools.count(1)
        self._session: _Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._last_error = "not tried yet"
        self._replies: dict[str, asyncio.Future[ami.AmiResponse]] = {}
        self._originates: dict[str, asyncio.Future[ami.AmiEvent]] = {}
        self._list_waiters: dict[str, asyncio.Future[ami.AmiList]] = {}
        self._lists = ami.ListCollector()

    def __repr__(self) -> str:
        return f"<AmiClient {self._username}@{self._where} {self.state.value}>"

    @property
    def _where(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def connected(self) -> bool:
        """True while a session is logged in (actions can be sent)."""
        return self._session is not None and self._session.usable

    @property
    def state(self) -> AmiState:
        if self._stopped:
            return AmiState.STOPPED
        if self.connected:
            return AmiState.CONNECTED
        return AmiState.CONNECTING if self._task is not None else AmiState.IDLE

    # ------------------------------------------------------------ lifecycle

    async def start(self, timeout: float | None = 30.0) -> None:
        """Return once logged in and the first on_connected() has run; keep reconnecting afterwards.

        Connection failures are retried with backoff for up to `timeout` seconds (None: forever),
        then AmiTimeout. A refused Login raises AmiLoginError at once: retrying a wrong secret only
        trips Asterisk's brute-force delay.
        """
        if self._task is not None or self._stopped:
            raise RuntimeError("AmiClient.start() may be called once")
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = self._task = asyncio.create_task(self._run(started), name=f"ami-{self._where}")
        await asyncio.wait({started, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            return
        if task.done():
            self._stopped = True
            task.result()  # AmiLoginError
        await self.stop(0)
        raise AmiTimeout(f"AMI {self._where} not available within {timeout:g} s: {self._last_error}")

    async def stop(self, timeout: float = 2.0) -> None:
        """Log off (waiting at most `timeout` for Goodbye), close, stop reconnecting; pending actions fail."""
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        session = self._session
        if session is not None and session.usable and timeout > 0:
            action_id = self._next_id()
            with contextlib.suppress(AmiError):
                await self._exchange(session, action_id, ami.action("Logoff", action_id), timeout,
                                     "reply to Logoff")
        if session is not None:
            session.close()
        self._fail_pending("AMI client stopped")

    async def _run(self, started: asyncio.Future[None]) -> None:
        delay = self._backoff[0]
        while not self._stopped:  # also ends a loop whose cancellation a racing connect attempt swallowed
            try:
                session = await self._open()
            except AmiLoginError as exc:
                if not started.done():
                    raise
                self._last_error = str(exc)
                log.error("%s; retrying in %.1f s", exc, self._backoff[1])
                delay = self._backoff[1]
            except (OSError, AmiError) as exc:
                self._last_error = str(exc) or type(exc).__name__
                log.warning("AMI %s not available (%s); retrying in %.2g s", self._where,
                            self._last_error, delay)
            else:
                delay = self._backoff[0]
                await self._serve(session, started)
                log.warning("AMI connection to %s lost (%s); reconnecting", self._where,
                            session.close_reason)
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _open(self) -> _Session:
        """Connect and log in within connect_timeout; the session is closed again on any failure."""
        loop = asyncio.get_running_loop()
        session: _Session | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, session = await loop.create_connection(
                    lambda: _Session(self._receive, self._lost), self._host, self._port)
                self._session = session
                await self._login(session)
        except TimeoutError:
            if session is not None:
                session.close("login timed out")
            raise AmiTimeout(f"AMI {self._where}: not connected and logged in within "
                             f"{self._connect_timeout:g} s") from None
        except BaseException:
            if session is not None:
                session.close("login failed")
            raise
        return session

    async def _login(self, session: _Session) -> None:
        action_id = self._next_id()
        data = ami.login_action(action_id, self._username, self._secret.reveal(), self._events)
        response = await self._exchange(session, action_id, data, None, "reply to Login")
        try:
            ami.check_login(response)
        except ami.AmiLoginError:
            raise AmiLoginError(f"Asterisk {self._where} refused the AMI login of {self._username!r}: "
                                f"{response.message or response.response}") from None
        session.authenticated = True

    async def _serve(self, session: _Session, started: asyncio.Future[None]) -> None:
        log.info("AMI logged in to %s as %s", self._where, self._username)
        pinger = asyncio.create_task(self._keepalive(session)) if self._ping_interval else None
        try:
            if self._on_connected is not None:
                try:
                    await self._on_connected()
                except AmiError as exc:
                    log.warning("AMI on_connected did not finish: %s", exc)
                except Exception:
                    log.exception("AMI on_connected failed")
            if not started.done():
                started.set_result(None)
            await session.gone.wait()
        finally:
            if pinger is not None:
                pinger.cancel()

    async def _keepalive(self, session: _Session) -> None:
        """Ping; a missing Pong means a dead peer TCP has not noticed yet: close to reconnect."""
        assert self._ping_interval is not None
        while True:
            await asyncio.sleep(self._ping_interval)
            action_id = self._next_id()
            try:
                await self._exchange(session, action_id, ami.action("Ping", action_id),
                                     self._action_timeout, "Pong")
            except AmiTimeout:
                log.warning("AMI %s: no Pong within %.1f s; reconnecting", self._where, self._action_timeout)
                session.close("no reply to Ping")
                return
            except AmiConnectionLost:
                return

    # ------------------------------------------------------------ incoming

    def _receive(self, message: ami.AmiMessage) -> None:
        if isinstance(message, ami.Banner):
            return
        if self._lists.feed(message):
            for done in self._lists.finished():
                _resolve(self._list_waiters, done.action_id, done)
            return
        if isinstance(message, ami.AmiResponse):
            _resolve(self._replies, message.action_id, message)
            return
        if message.name == "OriginateResponse":
            _resolve(self._originates, message.action_id, message)
        try:
            self._on_event(message)
        except Exception:
            log.exception("AMI on_event failed on %s", message.name)

    def _lost(self, session: _Session) -> None:
        if session is self._session:
            self._session = None
            self._last_error = session.close_reason
            self._fail_pending(f"AMI connection to {self._where} lost: {session.close_reason}")

    def _fail_pending(self, reason: str) -> None:
        for waiters in (self._replies, self._originates, self._list_waiters):
            for future in waiters.values():
                if not future.done():
                    future.set_exception(AmiConnectionLost(reason))
        self._lists = ami.ListCollector()

    # ------------------------------------------------------------ actions

    def _next_id(self) -> str:
        return f"voxgate-{next(self._ids)}"

    def _live(self) -> _Session:
        session = self._session
        if session is None or not session.usable:
            raise AmiConnectionLost(f"AMI {self._where} is not connected ({self._last_error})")
        return session

    async def _exchange(self, session: _Session, action_id: str, data: bytes, timeout: float | None,
                        what: str) -> ami.AmiResponse:
        future: asyncio.Future[ami.AmiResponse] = asyncio.get_running_loop().create_future()
        self._replies[action_id] = future
        try:
            session.write(data)
            return await _wait(future, timeout, what)
        finally:
            self._replies.pop(action_id, None)
            _discard(future)

    async def send(self, name: str, fields: Mapping[str, ami.FieldValue] | None = None, *,
                   timeout: float | None = None) -> ami.AmiResponse:
        """Send one action and return its Response, Success or Error alike."""
        session = self._live()
        action_id = self._next_id()
        return await self._exchange(session, action_id, ami.action(name, action_id, fields),
                                    timeout or self._action_timeout, f"reply to {name}")

    async def list(self, name: str, fields: Mapping[str, ami.FieldValue] | None = None, *,
                   timeout: float | None = None) -> ami.AmiList:
        """A list action (CoreShowChannels, Status, ...): its Response, items and Complete event.

        The ActionID is registered before sending: items may overtake the Response.
        """
        session = self._live()
        action_id = self._next_id()
        future: asyncio.Future[ami.AmiList] = asyncio.get_running_loop().create_future()
        self._lists.expect(action_id)
        self._list_waiters[action_id] = future
        try:
            session.write(ami.action(name, action_id, fields))
            return await _wait(future, timeout or self._action_timeout, f"complete {name} list")
        finally:
            self._list_waiters.pop(action_id, None)
            self._lists.cancel(action_id)
            _discard(future)

    async def originate(self, channel: str, *, context: str | None = None, exten: str | None = None,
                        priority: int | str | None = None, application: str | None = None,
                        data: str | None = None, caller_id: str | None = None,
                        ring_timeout: float | None = None, account: str | None = None,
                        channel_id: str | None = None, other_channel_id: str | None = None,
                        variables: Mapping[str, str] | None = None,
                        timeout: float = 60.0) -> ami.OriginateOutcome:
        """Originate (always Async) and wait up to `timeout` s for its OriginateResponse.

        That event comes at answer or failure, after the call's first events: give channel_id /
        other_channel_id to route those from the start, and to hang up a call still ringing
        when this raises AmiTimeout. `ring_timeout` is Asterisk's own dial timeout (seconds).
        """
        session = self._live()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        action_id = self._next_id()
        raw = ami.originate_action(
            action_id, channel, context=context, exten=exten, priority=priority,
            application=application, data=data, caller_id=caller_id,
            timeout_ms=None if ring_timeout is None else round(ring_timeout * 1000), account=account,
            channel_id=channel_id, other_channel_id=other_channel_id, variables=variables)
        ended: asyncio.Future[ami.AmiEvent] = loop.create_future()
        self._originates[action_id] = ended  # before sending: it may overtake the Response
        try:
            response = await self._exchange(session, action_id, raw, min(timeout, self._action_timeout),
                                            "reply to Originate")
            _require_ok("Originate", response)
            event = await _wait(ended, max(0.0, deadline - loop.time()), f"OriginateResponse for {channel}")
        finally:
            self._originates.pop(action_id, None)
            _discard(ended)
        return ami.originate_outcome(event)

    async def _command(self, name: str, fields: Mapping[str, ami.FieldValue],
                       timeout: float | None = None) -> ami.AmiResponse:
        response = await self.send(name, fields, timeout=timeout)
        _require_ok(name, response)
        return response

    async def hangup(self, channel: str, cause: int | None = None) -> None:
        """Hang up `channel`; `cause` is a Q.850 code (16 normal clearing)."""
        await self._command("Hangup", {"Channel": channel, "Cause": cause})

    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1) -> None:
        await self._command("Redirect", {"Channel": channel, "Context": context, "Exten": exten,
                                         "Priority": priority})

    async def bridge(self, channel1: str, channel2: str, *, tone: bool = False) -> None:
        """Bridge two channels (Tone: no plays nothing to channel2 first); both leave their applications."""
        await self._command("Bridge", {"Channel1": channel1, "Channel2": channel2, "Tone": "yes" if tone else "no"})

    async def setvar(self, channel: str | None, name: str, value: str) -> None:
        """Set a channel variable (or a global one with channel None)."""
        await self._command("Setvar", {"Channel": channel, "Variable": name, "Value": value})

    async def getvar(self, channel: str | None, name: str) -> str | None:
        """A channel variable or function value; None when unset (Asterisk sends unset and empty alike)."""
        response = await self._command("Getvar", {"Channel": channel, "Variable": name})
        return response.get("Value") or None

    async def play_dtmf(self, channel: str, digit: str, duration_ms: int | None = None) -> None:
        """Send one DTMF digit; Asterisk replies only after playing it, so the wait grows by its duration."""
        if len(digit) != 1:
            raise ValueError(f"PlayDTMF sends one digit, not {digit!r}")
        await self._command("PlayDTMF", {"Channel": channel, "Digit": digit, "Duration": duration_ms},
                            timeout=self._action_timeout + (duration_ms or 0) / 1000)

    async def mute_audio(self, channel: str, direction: Literal["in", "out", "all"], state: bool) -> None:
        await self._command("MuteAudio", {"Channel": channel, "Direction": direction,
                                          "State": "on" if state else "off"})

    async def core_show_channels(self) -> list[ami.AmiEvent]:
        """One CoreShowChannel event per live channel (Uniqueid, Linkedid, Channel, state, app)."""
        result = await self.list("CoreShowChannels")
        _require_ok("CoreShowChannels", result.response)
        return list(result.events)


def _resolve(waiters: Mapping[str, asyncio.Future[_T]], action_id: str | None, value: _T) -> None:
    future = waiters.get(action_id) if action_id is not None else None
    if future is not None and not future.done():
        future.set_result(value)


def _require_ok(action: str, response: ami.AmiResponse) -> None:
    if not response.ok:
        raise AmiActionError(action, response)
