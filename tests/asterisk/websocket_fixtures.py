"""Loaders for the chan_websocket traffic recorded from a real Asterisk 22.10.1.

tests/fixtures/asterisk/chan_websocket_scenarios.json is trimmed from
../shared/fixtures/asterisk/chan_websocket.json: every TEXT/CLOSE frame and handshake exactly as
on the wire, BINARY frames summarised, the app's own log, and the caller-side timeline of ws_flow.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

FIXTURE = Path(__file__).parent.parent / "fixtures" / "asterisk" / "chan_websocket_scenarios.json"
FROM_ASTERISK = "asterisk->app"
TO_ASTERISK = "app->asterisk"


@cache
def data() -> dict:
    return json.loads(FIXTURE.read_text())


def scenario(name: str) -> dict:
    return data()["scenarios"][name]


def connected_scenarios() -> list[str]:
    """The scenarios where Asterisk reached the app (all but ws_refused)."""
    return [name for name, s in data()["scenarios"].items() if "handshake" in s]


def texts(name: str, direction: str = FROM_ASTERISK) -> list[str]:
    """One direction's TEXT frames as on the wire, in order."""
    return [f["bytes_or_text"] for f in scenario(name)["wire"]
            if f.get("opcode") == "TEXT" and f["dir"] == direction]


def close_codes(name: str) -> list[tuple[str, int]]:
    """(direction, code) of each CLOSE frame on the wire."""
    return [(f["dir"], int(f["bytes_or_text"][:4], 16)) for f in scenario(name)["wire"]
            if f.get("opcode") == "CLOSE"]


def app_log(name: str) -> list[dict]:
    """What the app saw and sent (t_ms since it saw the connection), without the audio it received."""
    return scenario(name)["app_log"]


def flow_timeline() -> list[dict]:
    """ws_flow again, timed at the caller's leg (ms since the AMI Originate)."""
    return data()["caller_timing"]["wswire_flow"]["timeline"]


def externalmedia_log() -> list[dict]:
    """The ARI externalMedia websocket (Asterisk as the server): texts both ways, the app's BINARY sends."""
    return data()["externalmedia_websocket"]["messages"]
