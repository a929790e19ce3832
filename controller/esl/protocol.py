"""Sans-I/O Event Socket (ESL) codec: bytes in, frames and events out; commands in, bytes out.

Both directions live here: voxgate parses what FreeSWITCH sends and encodes commands,
and the PBX simulator encodes frames exactly as FreeSWITCH 1.10 does (see tests/fixtures/esl).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import unquote

MAX_HEADER_BLOCK = 256 * 1024
MAX_BODY = 16 * 1024 * 1024

# switch_url_encode()'s unsafe set (switch_utils.c); everything else passes through.
_URL_UNSAFE = frozenset('\r\n "#%&+:;<=>?@[\\]^`{|}')


class EslProtocolError(ValueError):
    """The peer sent bytes that are not ESL; the connection cannot be trusted any more."""


@dataclass(frozen=True, slots=True)
class EslFrame:
    """One ESL message: the outer header block and its Content-Length body."""

    headers: dict[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def ok(self) -> bool:
        """True for +OK replies (command/reply or api/response)."""
        if self.content_type == "api/response":
            return not self.text.startswith("-")
        return self.reply_text.startswith("+OK")


@dataclass(frozen=True, slots=True)
class EslEvent:
    """A decoded FreeSWITCH event (plain or json); header values are url-decoded."""

    headers: dict[str, str]
    body: str | None = None
    fmt: str = "plain"

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass", "")

    @property
    def unique_id(self) -> str:
        return self.headers.get("Unique-ID", "") or self.headers.get("Caller-Unique-ID", "")

    @property
    def kind(self) -> str:
        """The routing key: the subclass for CUSTOM events, otherwise the event name."""
        return self.subclass if self.name == "CUSTOM" else self.name

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.headers.get(key, default)

    def variable(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(f"variable_{name}", default)

    def json_body(self) -> object | None:
        """The body parsed as JSON, or None when there is no body or it is not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class EslParser:
    """Incremental ESL framer: feed() bytes, then take frames from frames().

    Frames are a header block ended by a blank line plus an optional Content-Length body.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: tuple[dict[str, str], int] | None = None
        self._ready: list[EslFrame] = []

    def feed(self, data: bytes) -> None:
        self._buf += data
        self._drain()

    def frames(self) -> list[EslFrame]:
        out, self._ready = self._ready, []
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _drain(self) -> None:
        while True:
            if self._pending is None:
                end = self._buf.find(b"\n\n")
                if end < 0:
                    if len(self._buf) > MAX_HEADER_BLOCK:
                        raise EslProtocolError(f"ESL header block exceeds {MAX_HEADER_BLOCK} bytes")
                    return
                block = bytes(self._buf[:end])
                del self._buf[: end + 2]
                if not block.strip():
                    continue  # stray blank lines between frames
                headers = parse_header_block(block.decode("utf-8", errors="replace"))
                length = _content_length(headers)
                self._pending = (headers, length)
            headers, length = self._pending
            if len(self._buf) < length:
                return
            body = bytes(self._buf[:length])
            del self._buf[:length]
            self._pending = None
            self._ready.append(EslFrame(headers, body))


def _content_length(headers: dict[str, str]) -> int:
    raw = headers.get("Content-Length")
    if raw is None:
        return 0
    try:
        length = int(raw)
    except ValueError:
        raise EslProtocolError(f"bad Content-Length {raw!r}") from None
    if not 0 <= length <= MAX_BODY:
        raise EslProtocolError(f"Content-Length {length} out of range")
    return length


def parse_header_block(block: str, decode: bool = False) -> dict[str, str]:
    """'Key: value' lines to a dict (first occurrence wins, as FreeSWITCH's own lookup does)."""
    headers: dict[str, str] = {}
    for line in block.split("\n"):
        if not line:
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            key, sep, value = line.partition(":")
            if not sep:
                raise EslProtocolError(f"ESL header line without a colon: {line[:80]!r}")
        if decode:
            value = unquote(value)
        headers.setdefault(key.strip(), value)
    return headers


def parse_event(frame: EslFrame) -> EslEvent | None:
    """The event a frame carries, or None for replies, responses and notices.

    Handles text/event-plain (url-encoded headers, optional inner body), text/event-json
    ("_body"), and the outbound 'connect' reply whose header block is a CHANNEL_DATA event.
    """
    ctype = frame.content_type
    if ctype == "text/event-plain":
        return _parse_plain_event(frame.text)
    if ctype == "text/event-json":
        try:
            data = json.loads(frame.body)
        except ValueError as exc:
            raise EslProtocolError(f"text/event-json body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EslProtocolError("text/event-json body is not an object")
        body = data.pop("_body", None)
        return EslEvent({k: str(v) for k, v in data.items()}, body, "json")
    if ctype == "command/reply" and "Event-Name" in frame.headers:
        return EslEvent({k: unquote(v) for k, v in frame.headers.items()}, None, "plain")
    return None


def _parse_plain_event(text: str) -> EslEvent:
    head, sep, rest = text.partition("\n\n")
    headers = parse_header_block(head, decode=True)
    body: str | None = None
    if "Content-Length" in headers:
        length = _content_length(headers)
        raw = rest.encode("utf-8")
        if len(raw) < length:
            raise EslProtocolError("event body shorter than its inner Content-Length")
        body = raw[:length].decode("utf-8", errors="replace")
    return EslEvent(headers, body, "plain")


def connect_reply_headers(frame: EslFrame) -> dict[str, str]:
    """The channel data of an outbound 'connect' reply, url-decoded."""
    if frame.content_type != "command/reply" or "Event-Name" not in frame.headers:
        raise EslProtocolError("not an outbound connect reply (no channel data)")
    return {k: unquote(v) for k, v in frame.headers.items()}


# ---------------------------------------------------------------- commands (voxgate -> FreeSWITCH)


def _check_line(text: str, what: str) -> str:
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} must be one line (a newline would inject ESL commands): {text[:60]!r}")
    return text


def encode_command(line: str, headers: dict[str, str] | None = None) -> bytes:
    """One ESL command: a line, optional headers, a blank line."""
    parts = [_check_line(line, "ESL command")]
    for key, value in (headers or {}).items():
        parts.append(f"{_check_line(key, 'header name')}: {_check_line(value, 'header value')}")
    return ("\n".join(parts) + "\n\n").encode("utf-8")


def auth(password: str) -> bytes:
    return encode_command(f"auth {password}")


def api(command: str) -> bytes:
    return encode_command(f"api {command}")


def bgapi(command: str, job_uuid: str) -> bytes:
    return encode_command(f"bgapi {command}", {"Job-UUID": job_uuid})


def subscribe(names: list[str], fmt: str = "plain") -> bytes:
    """'event <fmt> ...' with CUSTOM moved last: every word after CUSTOM is read as a subclass."""
    if fmt not in ("plain", "json", "xml"):
        raise ValueError(f"event format must be plain, json or xml, not {fmt!r}")
    plain = [n for n in names if not _is_subclass(n) and n != "CUSTOM"]
    subclasses = [n for n in names if _is_subclass(n)]
    words = plain + (["CUSTOM", *subclasses] if subclasses or "CUSTOM" in names else [])
    return encode_command(f"event {fmt} {' '.join(words)}")


def _is_subclass(name: str) -> bool:
    return "::" in name


def sendmsg(app: str, arg: str | None = None, uuid: str | None = None,
            event_uuid: str | None = None, lock: bool = False) -> bytes:
    """sendmsg execute <app> [arg]: run a dialplan application on a channel."""
    headers = {"call-command": "execute", "execute-app-name": app}
    if arg is not None:
        headers["execute-app-arg"] = arg
    if event_uuid:
        headers["event-uuid"] = event_uuid
    if lock:
        headers["event-lock"] = "true"
    return encode_command(f"sendmsg {uuid}" if uuid else "sendmsg", headers)


def sendmsg_hangup(cause: str = "NORMAL_CLEARING", uuid: str | None = None) -> bytes:
    return encode_command(f"sendmsg {uuid}" if uuid else "sendmsg",
                          {"call-command": "hangup", "hangup-cause": cause})


# ---------------------------------------------------------------- frames (FreeSWITCH -> voxgate), for the simulator

DISCONNECT_TEXT = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def url_encode(value: str) -> str:
    """switch_url_encode(): the unsafe set and non-ASCII bytes as %XX, the rest verbatim."""
    out = []
    for ch in value:
        if ch in _URL_UNSAFE or ord(ch) < 32 or ord(ch) > 126:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def encode_frame(headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """A raw frame with headers in the given order (FreeSWITCH's order is part of the wire)."""
    text = "".join(f"{k}: {v}\n" for k, v in headers)
    return (text + "\n").encode("utf-8") + body


def auth_request() -> bytes:
    return encode_frame([("Content-Type", "auth/request")])


def command_reply(reply_text: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    return encode_frame([("Content-Type", "command/reply"), ("Reply-Text", reply_text), *(extra or [])])


def api_response(text: str) -> bytes:
    body = text.encode("utf-8")
    return encode_frame([("Content-Type", "api/response"), ("Content-Length", str(len(body)))], body)


def disconnect_notice(extra: list[tuple[str, str]] | None = None, text: str = DISCONNECT_TEXT) -> bytes:
    body = text.encode("utf-8")
    return encode_frame([("Content-Type", "text/disconnect-notice"), *(extra or []),
                         ("Content-Length", str(len(body)))], body)


def event_plain(headers: list[tuple[str, str]], body: str | None = None) -> bytes:
    """A text/event-plain frame: url-encoded headers, then an inner Content-Length body if any."""
    lines = "".join(f"{k}: {url_encode(v)}\n" for k, v in headers)
    if body is not None:
        raw = body.encode("utf-8")
        inner = (lines + f"Content-Length: {len(raw)}\n\n").encode("utf-8") + raw
    else:
        inner = (lines + "\n").encode("utf-8")
    return encode_frame([("Content-Length", str(len(inner))), ("Content-Type", "text/event-plain")], inner)


def event_json(headers: list[tuple[str, str]], body: str | None = None) -> bytes:
    """A text/event-json frame (cJSON unformatted; duplicate keys are kept, as FreeSWITCH sends them)."""
    items = [f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in headers]
    if body is not None:
        items.append(f'"Content-Length":"{len(body.encode("utf-8"))}"')
        items.append(f'"_body":{json.dumps(body, ensure_ascii=False)}')
    raw = ("{" + ",".join(items) + "}").encode("utf-8")
    return encode_frame([("Content-Length", str(len(raw))), ("Content-Type", "text/event-json")], raw)


def connect_reply(channel_data: list[tuple[str, str]]) -> bytes:
    """The outbound 'connect' reply: CHANNEL_DATA headers (url-encoded) then the reply headers."""
    lines = [(k, url_encode(v)) for k, v in channel_data]
    lines += [("Content-Type", "command/reply"), ("Reply-Text", "%2BOK%0A"),
              ("Socket-Mode", "async"), ("Control", "full")]
    return encode_frame(lines)


_QUOTE_RE = re.compile(r"\s")


def quote_arg(text: str) -> str:
    """Quote an API argument that contains spaces: FreeSWITCH splits API args on spaces."""
    if "'" in text and _QUOTE_RE.search(text):
        raise ValueError("an API argument cannot contain both a space and a single quote")
    return f"'{text}'" if _QUOTE_RE.search(text) else text


__all__ = [
    "EslEvent", "EslFrame", "EslParser", "EslProtocolError", "api", "api_response", "auth",
    "auth_request", "bgapi", "command_reply", "connect_reply", "connect_reply_headers",
    "disconnect_notice", "encode_command", "encode_frame", "event_json", "event_plain",
    "parse_event", "parse_header_block", "quote_arg", "sendmsg", "sendmsg_hangup", "subscribe",
    "url_encode",
]
