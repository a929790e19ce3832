"""A sans-I/O parser for Server-Sent Events (text/event-stream).

Follows the WHATWG HTML Living Standard, "Server-sent events", section 9.2.6 "Interpreting an
event stream": lines end in CRLF, LF or CR; a blank line dispatches the event; `data` lines
are joined with LF; lines starting with a colon are comments; one space after the colon is
dropped; the last event ID persists from event to event. Bytes go in as they arrive from the
socket, in chunks of any size, and complete events come out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOM = "\ufeff"
_EOL = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None


class SseParser:
    """Turns a byte stream into events; keeps partial lines between feeds."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip_lf = False  # the last chunk ended in CR: a LF starting the next one belongs to it
        self._first_line = True
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None

    def feed(self, data: bytes) -> list[SseEvent]:
        """Every event completed by these bytes, in order."""
        if not data:
            return []
        if self._skip_lf and data[:1] == b"\n":
            data = data[1:]
        self._buffer += data
        events: list[SseEvent] = []
        for line in self._take_lines():
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _take_lines(self) -> list[str]:
        """Complete lines from the buffer; UTF-8 is decoded per line so a split character is safe."""
        buffer = self._buffer
        lines: list[str] = []
        start = 0
        for end in _EOL.finditer(buffer):
            lines.append(buffer[start:end.start()].decode("utf-8", errors="replace"))
            start = end.end()
        # A CR ending the buffer may be the first half of a CRLF split across feeds.
        self._skip_lf = buffer.endswith(b"\r")
        del buffer[:start]
        return lines

    def _line(self, line: str) -> SseEvent | None:
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(_BOM)
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self._field(name, value)
        return None

    def _field(self, name: str, value: str) -> None:
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # "retry" and unknown fields are ignored: the caller does its own reconnecting.

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SseEvent(event=event or "message", data="\n".join(data), id=self._last_id)
