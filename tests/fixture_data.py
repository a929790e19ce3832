"""Loaders for the recorded FreeSWITCH traffic in tests/fixtures (copied from ../shared/fixtures)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


@cache
def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def esl_sessions(name: str) -> list[dict]:
    return load(f"freeswitch/{name}")["sessions"]


def received_stream(session: dict) -> bytes:
    """Every byte FreeSWITCH sent in one session, concatenated as on the wire."""
    return b"".join(e["bytes_or_text"].encode() for e in session["entries"] if e["dir"] == "<<<")


def received_chunks(session: dict) -> list[bytes]:
    return [e["bytes_or_text"].encode() for e in session["entries"]
            if e["dir"] == "<<<" and e["kind"] != "EOF"]


def sent_commands(session: dict) -> list[bytes]:
    return [e["bytes_or_text"].encode() for e in session["entries"] if e["dir"] == ">>>"]


def audio_fork_scenarios(classic: bool = False) -> dict[str, dict]:
    data = load("freeswitch/audio_fork_ws_classic.json" if classic else "freeswitch/audio_fork_ws.json")
    return {s["name"]: s for s in data["scenarios"]}
