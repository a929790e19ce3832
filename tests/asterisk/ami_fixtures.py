"""Loaders for the recorded AMI traffic in tests/fixtures/asterisk (trimmed from ../shared/fixtures)."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures" / "asterisk"


@cache
def rx_bytes() -> bytes:
    """Every byte Asterisk sent, both connections back to back."""
    return (FIXTURES / "ami_session_rx.bytes").read_bytes()


@cache
def tx_bytes() -> bytes:
    """Every byte the recording client sent."""
    return (FIXTURES / "ami_session_tx.bytes").read_bytes()


@cache
def index() -> list[dict]:
    return json.loads((FIXTURES / "ami_session_index.json").read_text())["messages"]


def _split(data: bytes, direction: str) -> list[tuple[dict, bytes]]:
    out, pos = [], 0
    for item in index():
        if item["dir"] == direction:
            out.append((item, data[pos:pos + item["len"]]))
            pos += item["len"]
    assert pos == len(data), "index does not cover the byte file"
    return out


def received() -> list[tuple[dict, bytes]]:
    """(index item, exact bytes) for each message Asterisk sent, in wire order."""
    return _split(rx_bytes(), "<<<")


def sent() -> list[bytes]:
    """The exact bytes of each action the client sent, in order."""
    return [raw for _, raw in _split(tx_bytes(), ">>>")]


def cdr_csv_rows() -> list[list[str]]:
    """Master.csv rows (cdr_csv, usegmtime=yes) for the calls of the session, comments dropped."""
    text = (FIXTURES / "ami_cdr_master_csv.txt").read_text()
    return list(csv.reader(line for line in text.splitlines() if line and not line.startswith("#")))


@cache
def panoramisk() -> dict:
    return json.loads((FIXTURES / "ami_panoramisk_samples.json").read_text())["results"]
