"""Turn rows written per second into PostgreSQL by the record writer (journal on), and into SQLite.

A private PostgreSQL server (controller/records/localpg.py: durability off, as throw-away data)
and the writer exactly as voxgate runs it: bounded queue, batches, the fsync'd journal first.
Prints rows per second, and the ratio against the same writer without its journal.

    python bench/records.py [--turns 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.records import migrate  # noqa: E402
from controller.records.cdr import TurnRecord  # noqa: E402
from controller.records.localpg import PostgresCluster, find_postgres_bindir  # noqa: E402
from controller.records.store import RecordWriter  # noqa: E402

TARGET_PER_S = 2000
T0 = datetime(2026, 11, 24, tzinfo=UTC)


def turns(count: int, tag: str) -> list[TurnRecord]:
    """Realistic rows: ten turns a call, text, latencies, a small detail document."""
    return [TurnRecord("freeswitch", f"{tag}-{i // 10}", i % 10, "agent" if i % 2 else "caller",
                       "Order 45721 shipped on Monday and arrives by Thursday.", None,
                       T0 + timedelta(seconds=i), T0 + timedelta(seconds=i + 2), confidence=0.93,
                       stt_ms=270.0, llm_first_token_ms=271.0, tts_first_audio_ms=280.0, voice_to_voice_ms=530.0,
                       engines={"stt": "whisper", "llm": "grounded", "tts": "hibari"},
                       detail={"endpoint_ms": 255.0}) for i in range(count)]


async def rate(url: str, records: list[TurnRecord], journal: Path | None) -> float:
    writer = RecordWriter(url, journal_dir=journal, max_pending=len(records) + 1)
    writer.start()
    started = time.perf_counter()
    for record in records:
        writer.submit_turn(record)
    await writer.flush()
    elapsed = time.perf_counter() - started
    await writer.close()
    assert writer.written_turns == len(records)
    return len(records) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=20000)
    args = parser.parse_args()
    bindir = find_postgres_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found: apt-get install postgresql")
    cluster = PostgresCluster.create(bindir)
    try:
        with tempfile.TemporaryDirectory(prefix="voxgate-bench-records-") as tmp:
            sqlite = f"sqlite:///{tmp}/bench.sqlite3"
            for url in (cluster.url, sqlite):
                migrate.upgrade(url)
            print(f"record writer, {args.turns} turn rows each run (2 cores)")
            for name, url in (("postgresql", cluster.url), ("sqlite", sqlite)):
                plain = await rate(url, turns(args.turns, f"{name}-plain"), None)
                journaled = await rate(url, turns(args.turns, f"{name}-journal"), Path(tmp) / f"journal-{name}")
                verdict = "ok" if name != "postgresql" or journaled >= TARGET_PER_S else "MISSED"
                print(f"  {name:10}  with journal {journaled:8.0f} rows/s   without {plain:8.0f} rows/s   "
                      f"ratio {journaled / plain:.2f}" + (f"   target >= {TARGET_PER_S}/s: {verdict}"
                                                          if name == "postgresql" else ""))
    finally:
        cluster.destroy()


if __name__ == "__main__":
    asyncio.run(main())
