"""Loaders for the AudioSocket traffic recorded from a real Asterisk 22.10.1.

tests/fixtures/asterisk/audiosocket_*.json are trimmed from ../shared/fixtures/asterisk/
audiosocket.json: the frames recorded in full, in wire order, with the server's notes.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures" / "asterisk"
FROM_ASTERISK = "asterisk->server"
TO_ASTERISK = "server->asterisk"
FILES = ("audiosocket_app.json", "audiosocket_channel.json", "audiosocket_control.json")


@cache
def _load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def scenario(name: str) -> dict:
    for file in FILES:
        scenarios = _load(file)["scenarios"]
        if name in scenarios:
            return scenarios[name]
    raise KeyError(f"no AudioSocket scenario {name!r} in {FILES}")


def wire_measurement(name: str) -> dict:
    return _load("audiosocket_control.json")["wire_measurements"][name]


def frames(name: str, direction: str = FROM_ASTERISK) -> list[dict]:
    """The recorded frames of one direction, each with its complete bytes under 'raw'."""
    return [dict(f, raw=bytes.fromhex(f["bytes_or_text"])) for f in scenario(name)["frames"]
            if f["dir"] == direction]


def stream(name: str, direction: str = FROM_ASTERISK) -> bytes:
    """One direction's recorded frames concatenated as on the wire."""
    return b"".join(f["raw"] for f in frames(name, direction))


def notes(name: str) -> list[tuple[float, str]]:
    return [(f["t_ms"], f["bytes_or_text"]) for f in scenario(name)["frames"] if f["dir"] == "meta"]
