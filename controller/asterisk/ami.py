"""Sans-I/O Asterisk Manager Interface (AMI): bytes in, typed messages out; actions in, bytes out.

Framing as Asterisk 22 sends it (see tests/fixtures/asterisk): one banner line, then blocks of
"Key: value" CRLF lines, each ended by an empty line. On top of the codec sit the pieces the
call-control layer needs: async Originate and its outcome, Cdr records, list actions, login,
and the call key events are routed by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo

MAX_MESSAGE = 64 * 1024
BANNER_PREFIX = "Asterisk Call Manager"
_BANNER = BANNER_PREFIX.encode()

_EOL = b"\r\n"
_END = b"\r\n\r\n"
# Asterisk <= 13 answered Command with a raw body ended by this marker, not with Output: headers.
_LEGACY_FIRST_LINE = b"Response: Follows"
_LEGACY_END = b"--END COMMAND--\r\n\r\n"
_LEGACY_HEADERS = frozenset({"privilege", "actionid"})
# Values Asterisk puts where a channel id is missing: VarSet of a global ("none"), failed originate.
_NO_ID = frozenset({"", "none", "<unknown>"})
_UNSAFE_IN_LINE = ("\r", "\n", "\x00")
_CDR_TIME = "%Y-%m-%d %H:%M:%S"


class AmiProtocolError(ValueError):
    """Asterisk sent bytes that are not AMI (or not the AMI this module understands)."""


class AmiLoginError(Exception):
    """Asterisk refused the Login; it closes the connection right after saying so."""


# ---------------------------------------------------------------- messages (Asterisk -> voxgate)


class _Fields:
    """Lookup over the ordered (key, value) pairs of a message: keys compare case-insensitively."""

    __slots__ = ()
    fields: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of `key` (Asterisk's own astman_get_header also takes the first)."""
        key = key.lower()
        for k, v in self.fields:
            if k.lower() == key:
                return v
        return default

    def get_all(self, key: str) -> tuple[str, ...]:
        """Every value of a repeated key (Output:, Variable:, ChanVariable:), in wire order."""
        key = key.lower()
        return tuple(v for k, v in self.fields if k.lower() == key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None


@dataclass(frozen=True, slots=True)
class Banner:
    """The greeting line sent on accept, e.g. 'Asterisk Call Manager/11.0.0' (AMI version, not Asterisk's)."""

    product: str
    version: str


@dataclass(frozen=True, slots=True)
class AmiResponse(_Fields):
    """The reply to one action: Success, Error, Goodbye (Logoff) or legacy Follows.

    `fields` holds every line in wire order, the Response line included; `output` holds the
    CLI lines of a Command reply (one "Output:" line each, a blank CLI line being "").
    """

    response: str
    action_id: str | None
    message: str
    fields: tuple[tuple[str, str], ...]
    output: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.response.lower() in ("success", "goodbye", "follows")

    @property
    def starts_list(self) -> bool:
        """True when item events and a ...Complete event follow (CoreShowChannels, Status, ...)."""
        return (self.get("EventList") or "").lower() == "start"


@dataclass(frozen=True, slots=True)
class AmiEvent(_Fields):
    """An event; `fields` holds every line in wire order, the Event line included."""

    name: str
    fields: tuple[tuple[str, str], ...]

    @property
    def action_id(self) -> str | None:
        """Set on replies to an action (list items, OriginateResponse) and on a UserEvent that had one."""
        return self.get("ActionID")

    @property
    def uniqueid(self) -> str | None:
        """The channel's Uniqueid, None when absent or a placeholder ('none', '<unknown>')."""
        return _present(self.get("Uniqueid"))

    @property
    def linkedid(self) -> str | None:
        return _present(self.get("Linkedid"))


AmiMessage = Banner | AmiResponse | AmiEvent


def _present(value: str | None) -> str | None:
    return None if value is None or value.lower() in _NO_ID else value


class AmiParser:
    """Incremental AMI framer: feed() byte chunks of any size, then take messages().

    A malformed message (a line without ':', a block that is neither Response nor Event) is
    dropped and reported by AmiProtocolError once the rest of the chunk has been parsed: the
    blank line still frames the stream, so the parser stays usable and nothing parsed is lost.
    A message longer than `max_message` means the framing itself is gone: the parser is then
    dead and every later feed() raises.
    A banner line is accepted at any message boundary, not only first: harmless, and it lets
    one parser read the fixture's back-to-back connections.
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self.max_message = max_message
        self._buf = bytearray()
        self._searched = 0  # bytes of the current block already searched for its terminator
        self._ready: list[AmiMessage] = []
        self._dead: str | None = None

    def feed(self, data: bytes) -> None:
        if self._dead is not None:
            raise AmiProtocolError(f"AMI parser is dead after an earlier error: {self._dead}")
        self._buf += data
        errors: list[str] = []
        self._drain(errors)
        if errors:
            more = f" (and {len(errors) - 1} more malformed messages)" if len(errors) > 1 else ""
            raise AmiProtocolError(errors[0] + more)

    def messages(self) -> list[AmiMessage]:
        out, self._ready = self._ready, []
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def dead(self) -> bool:
        return self._dead is not None

    def _drain(self, errors: list[str]) -> None:
        buf = self._buf
        while buf:
            if buf.startswith(_EOL):  # a stray empty line between messages frames nothing
                del buf[:2]
                continue
            eol = buf.find(_EOL)
            if eol < 0:
                self._check_size(len(buf))
                return
            first = bytes(buf[:eol])
            if b":" not in first and first.startswith(_BANNER):
                product, _, version = first.decode("ascii", "replace").partition("/")
                self._ready.append(Banner(product, version))
                del buf[: eol + 2]
                continue
            legacy = first == _LEGACY_FIRST_LINE
            terminator = _LEGACY_END if legacy else _END
            end = buf.find(terminator, max(0, self._searched - len(terminator) + 1))
            if end < 0:
                self._searched = len(buf)
                self._check_size(len(buf))
                return
            self._check_size(end + len(terminator))
            block = bytes(buf[:end])
            del buf[: end + len(terminator)]
            self._searched = 0
            try:
                self._ready.append(_parse_legacy(block) if legacy else _parse_block(block))
            except AmiProtocolError as exc:
                errors.append(str(exc))

    def _check_size(self, size: int) -> None:
        if size > self.max_message:
            self._dead = f"an AMI message is longer than {self.max_message} bytes; the framing is lost"
            self._buf.clear()
            raise AmiProtocolError(self._dead)


def _parse_block(block: bytes) -> AmiResponse | AmiEvent:
    pairs: list[tuple[str, str]] = []
    for line in block.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep or not key:
            raise AmiProtocolError(f"AMI line is not 'Key: value': {line[:80]!r}")
        # The separator is ": "; strip only that space, CLI output keeps its own indentation.
        pairs.append((key, value[1:] if value.startswith(" ") else value))
    return message_from_fields(pairs)


def _parse_legacy(block: bytes) -> AmiResponse:
    """Response: Follows, Privilege/ActionID headers, then raw CLI lines (bare LF) up to the marker."""
    lines = [line.removesuffix("\r") for line in block.decode("utf-8", "replace").split("\n")]
    pairs = [("Response", "Follows")]
    rest = 1
    for line in lines[1:]:
        key, sep, value = line.partition(": ")
        if not sep or key.lower() not in _LEGACY_HEADERS:
            break
        pairs.append((key, value))
        rest += 1
    output = lines[rest:]
    if output and output[-1] == "":  # the body's own final newline
        output.pop()
    return AmiResponse("Follows", _first(pairs, "actionid"), "", tuple(pairs), tuple(output))


def _first(pairs: Sequence[tuple[str, str]], lower_key: str) -> str | None:
    return next((v for k, v in pairs if k.lower() == lower_key), None)


def message_from_fields(pairs: Sequence[tuple[str, str]]) -> AmiResponse | AmiEvent:
    """A message from its (key, value) lines; the first line says which kind it is.

    Only the first line counts: an OriginateResponse event also has a Response: line.
    """
    if not pairs:
        raise AmiProtocolError("empty AMI message")
    kind, first = pairs[0]
    fields = tuple(pairs)
    if kind.lower() == "event":
        return AmiEvent(first, fields)
    if kind.lower() == "response":
        return AmiResponse(first, _first(fields, "actionid"), _first(fields, "message") or "", fields,
                           tuple(v for k, v in fields if k.lower() == "output"))
    raise AmiProtocolError(f"AMI message starts with {kind!r}, not Response or Event")


def message_from_headers(headers: Mapping[str, str | Sequence[str]]) -> AmiResponse | AmiEvent:
    """A message from a header mapping such as a panoramisk Message.

    List values become repeated keys (their position among other keys is lost); the key
    "content" is skipped, it is panoramisk's body slot and never an Asterisk 22 header.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in headers.items():
        if key == "content":
            continue
        if isinstance(value, str):
            pairs.append((key, value))
        else:
            pairs.extend((key, v) for v in value)
    kind = next((i for i, (k, _) in enumerate(pairs) if k.lower() in ("event", "response")), 0)
    return message_from_fields(pairs[kind:kind + 1] + pairs[:kind] + pairs[kind + 1:])


# ---------------------------------------------------------------- actions (voxgate -> Asterisk)

FieldValue = str | int | bool | None | Sequence[str] | Mapping[str, str]


def _line(text: str, what: str) -> str:
    if any(c in text for c in _UNSAFE_IN_LINE):
        raise ValueError(f"{what} must be one line (CR/LF would inject AMI headers): {text[:60]!r}")
    return text


def _header(key: str, value: str) -> str:
    if not key or any(c in key for c in ": \t"):
        raise ValueError(f"bad AMI header name {key!r}")
    return f"{_line(key, 'header name')}: {_line(value, f'value of {key}')}\r\n"


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    raise TypeError(f"AMI header values are str, int or bool, not {type(value).__name__}")


def _escape_variable(text: str) -> str:
    # Asterisk splits every Variable: header on commas (AST_STANDARD_APP_ARGS), honouring quotes,
    # () and [] nesting and eating backslashes: escape each of those to pass the text whole.
    return "".join("\\" + c if c in '\\",()[]' else c for c in text)


def _variable(name: str, value: str) -> str:
    if not name or "=" in name:
        raise ValueError(f"bad channel variable name {name!r}")
    return f"{_escape_variable(name)}={_escape_variable(_scalar(value))}"


def action(name: str, action_id: str, fields: Mapping[str, FieldValue] | None = None) -> bytes:
    """One action: Action, ActionID, then `fields` in order, as the recorded client sent them.

    A sequence repeats its key once per item; a mapping becomes one "Key: name=value" line per
    item (the Originate Variable form), escaped so Asterisk keeps commas in values; None is
    left out; bools are true/false.
    """
    if not action_id:
        raise ValueError("an AMI action needs an ActionID: replies and events are matched by it")
    lines = [_header("Action", name), _header("ActionID", action_id)]
    for key, value in (fields or {}).items():
        if key.lower() in ("action", "actionid"):
            raise ValueError(f"{key} is given by the name and action_id arguments")
        if value is None:
            continue
        if isinstance(value, Mapping):
            lines.extend(_header(key, _variable(k, v)) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            lines.extend(_header(key, _scalar(v)) for v in value)
        else:
            lines.append(_header(key, _scalar(value)))
    return ("".join(lines) + "\r\n").encode("utf-8")


def login_action(action_id: str, username: str, secret: str, events: str | None = None) -> bytes:
    """Login; `events` is "on", "off" or a class list ("call,cdr,dtmf"), None leaves the user's default."""
    return action("Login", action_id, {"Username": username, "Secret": secret, "Events": events})


def check_login(response: AmiResponse) -> None:
    """Raise AmiLoginError unless the Login's Response accepted it.

    A refusal ("Authentication failed") comes about a second late, then Asterisk closes the
    socket; until the real Response arrives the session is not authenticated (actions get
    "Permission denied").
    """
    if response.response.lower() != "success":
        raise AmiLoginError(f"AMI login refused: {response.message or response.response}")


def originate_action(
    action_id: str,
    channel: str,
    *,
    context: str | None = None,
    exten: str | None = None,
    priority: int | str | None = None,
    application: str | None = None,
    data: str | None = None,
    caller_id: str | None = None,
    timeout_ms: int | None = None,
    account: str | None = None,
    channel_id: str | None = None,
    other_channel_id: str | None = None,
    variables: Mapping[str, str] | None = None,
) -> bytes:
    """An Originate that is always Async: only an async one reports its end in an OriginateResponse.

    A synchronous Originate answers only once the call is up or failed, with no OriginateResponse
    (and panoramisk then waits forever). Give either context+exten (priority 1 by default) or an
    application. channel_id/other_channel_id fix the Uniqueids of the two legs up front, so the
    call's events can be routed before the OriginateResponse, which comes only at answer.
    """
    if application is None and (context is None or exten is None):
        raise ValueError("Originate needs context and exten, or an application")
    if application is not None and (context is not None or exten is not None or priority is not None):
        raise ValueError("Originate takes an application or a context/exten/priority, not both")
    if data is not None and application is None:
        raise ValueError("Originate data is the application's argument; give the application")
    if application is None and priority is None:
        priority = 1
    return action("Originate", action_id, {
        "Channel": channel, "Context": context, "Exten": exten, "Priority": priority,
        "Application": application, "Data": data, "CallerID": caller_id, "Timeout": timeout_ms,
        "Async": True, "Account": account, "ChannelId": channel_id, "OtherChannelId": other_channel_id,
        "Variable": dict(variables) if variables else None,
    })


# ---------------------------------------------------------------- call-control helpers

# Reason is the last control frame seen while dialling (frame.h, enum ast_control_frame_type);
# 0 means none at all: the channel could not even be created (e.g. unknown technology).
ORIGINATE_REASONS: dict[int, str] = {
    0: "failed",
    1: "hangup",  # the far end hung up (rejected) before answering
    2: "no_answer",  # local ring, then the Timeout ran out
    3: "no_answer",  # remote ringing, then the Timeout ran out
    4: "answered",
    5: "busy",
    8: "congestion",
}


@dataclass(frozen=True, slots=True)
class OriginateOutcome:
    """How an async Originate ended, read from its OriginateResponse event."""

    action_id: str | None
    answered: bool
    result: str  # answered | failed | hangup | no_answer | busy | congestion
    reason: int | None
    channel: str
    uniqueid: str | None  # None when no channel was ever created


def originate_outcome(event: AmiEvent) -> OriginateOutcome:
    """Read Response and Reason yourself: panoramisk reports every event, a Failure too, as success."""
    if event.name != "OriginateResponse":
        raise ValueError(f"not an OriginateResponse event: {event.name}")
    raw = event.get("Reason") or ""
    reason = int(raw) if raw.isdigit() else None
    answered = (event.get("Response") or "").lower() == "success"
    if answered:
        result = "answered"
    elif reason is not None and reason != 4:  # a Failure is never "answered", whatever Reason says
        result = ORIGINATE_REASONS.get(reason, "failed")
    else:
        result = "failed"
    return OriginateOutcome(event.action_id, answered, result, reason, event.get("Channel") or "",
                            event.uniqueid)


@dataclass(frozen=True, slots=True)
class CdrRecord:
    """One Cdr event (cdr_manager, default mapping): one per channel, Local halves included.

    It can arrive before or after the Hangup event of its channel. Text fields missing from the event
    read as "" (panoramisk drops a last header whose value is empty, e.g. UserField).
    """

    account_code: str
    source: str
    destination: str
    destination_context: str
    caller_id: str
    channel: str
    destination_channel: str
    last_application: str
    last_data: str
    start: datetime
    answer: datetime | None  # None when the call was never answered
    end: datetime
    duration: int
    billable_seconds: int
    disposition: str  # ANSWERED, NO ANSWER, BUSY, FAILED, CONGESTION
    ama_flags: str
    unique_id: str
    user_field: str

    @classmethod
    def from_event(cls, event: AmiEvent, tz: tzinfo = timezone.utc) -> CdrRecord:
        """`tz` is the Asterisk host's local zone: cdr_manager prints times in it, with no offset."""
        if event.name != "Cdr":
            raise ValueError(f"not a Cdr event: {event.name}")

        def text(key: str) -> str:
            return event.get(key) or ""

        def number(key: str) -> int:
            try:
                return int(text(key))
            except ValueError:
                raise AmiProtocolError(f"Cdr {key} is not a number: {text(key)!r}") from None

        def when(key: str) -> datetime | None:
            if not text(key):
                return None
            try:
                return datetime.strptime(text(key), _CDR_TIME).replace(tzinfo=tz)
            except ValueError:
                raise AmiProtocolError(f"Cdr {key} is not {_CDR_TIME}: {text(key)!r}") from None

        start, end = when("StartTime"), when("EndTime")
        if start is None or end is None:
            raise AmiProtocolError("Cdr event without StartTime/EndTime")
        return cls(text("AccountCode"), text("Source"), text("Destination"), text("DestinationContext"),
                   text("CallerID"), text("Channel"), text("DestinationChannel"), text("LastApplication"),
                   text("LastData"), start, when("AnswerTime"), end, number("Duration"),
                   number("BillableSeconds"), text("Disposition"), text("AMAFlags"), text("UniqueID"),
                   text("UserField"))


@dataclass(frozen=True, slots=True)
class CallKey:
    """What an event is routed by: the channel's Uniqueid and the call's Linkedid (if the event has it)."""

    uniqueid: str
    linkedid: str | None


def call_key(event: AmiEvent) -> CallKey | None:
    """The channel an event is about, or None (DeviceStateChange, global VarSet, failed originate).

    Falls back to the Dest* channel (DialBegin/DialEnd of an originated leg has no caller) and
    the LocalOne* channel (LocalBridge). Cdr and OriginateResponse carry no Linkedid.
    """
    for prefix in ("", "Dest", "LocalOne"):
        uniqueid = _present(event.get(prefix + "Uniqueid"))
        if uniqueid is not None:
            return CallKey(uniqueid, _present(event.get(prefix + "Linkedid")))
    return None


@dataclass(frozen=True, slots=True)
class AmiList:
    """A finished list action: its Response, the item events, and the closing ...Complete event."""

    response: AmiResponse
    events: tuple[AmiEvent, ...]
    complete: AmiEvent | None  # None when the Response refused the action: no list follows

    @property
    def action_id(self) -> str | None:
        return self.response.action_id

    @property
    def ok(self) -> bool:
        return self.response.ok and self.complete is not None


@dataclass(slots=True)
class _PendingList:
    response: AmiResponse | None = None
    events: list[AmiEvent] = field(default_factory=list)
    complete: AmiEvent | None = None


class ListCollector:
    """Gathers the replies of list actions (CoreShowChannels, Status, ...) by ActionID.

    Responses and events are not ordered relative to each other, so item events (which do come
    before their ...Complete event) may precede the "EventList: start" Response: expect() the
    ActionID before sending the action, feed() every message, and take finished() lists.
    """

    def __init__(self) -> None:
        self._pending: dict[str, _PendingList] = {}
        self._finished: list[AmiList] = []

    def expect(self, action_id: str) -> None:
        if action_id in self._pending:
            raise ValueError(f"a list action with ActionID {action_id!r} is already pending")
        self._pending[action_id] = _PendingList()

    def cancel(self, action_id: str) -> None:
        """Forget a pending list (its action timed out); later messages for it are not claimed."""
        self._pending.pop(action_id, None)

    def __contains__(self, action_id: object) -> bool:
        return action_id in self._pending

    def feed(self, message: AmiMessage) -> bool:
        """True when the message belongs to a pending list (the caller need not dispatch it further)."""
        if isinstance(message, Banner) or message.action_id not in self._pending:
            return False
        action_id = message.action_id
        pending = self._pending[action_id]
        if isinstance(message, AmiResponse):
            pending.response = message
        elif _completes_list(message):
            pending.complete = message
        else:
            pending.events.append(message)
        response = pending.response
        if response is not None and (pending.complete is not None or not response.starts_list):
            del self._pending[action_id]
            self._finished.append(AmiList(response, tuple(pending.events), pending.complete))
        return True

    def finished(self) -> list[AmiList]:
        out, self._finished = self._finished, []
        return out


def _completes_list(event: AmiEvent) -> bool:
    # EventList: Complete since Asterisk 13; the name suffix covers older ...Complete events.
    return (event.get("EventList") or "").lower() == "complete" or event.name.endswith("Complete")
