"""Word error rate and speed of the embedded speech-to-text (WhisperStt) on the shared speech set.

Every utterance of every voice (flite, hibari, espeak) is fed in 20 ms frames, as a call would
feed it, then committed with result(final=True). Prints per voice: WER over all words, CPU
seconds spent transcribing per second of audio (process time, so all model threads count),
and the median and 95th-percentile latency of the final result after the last frame: what a
caller waits, on top of end-of-turn detection, before the agent knows what was said.

    python bench/wer.py [SPEECH_DIR] [--16k]

SPEECH_DIR defaults to ../shared/speech beside the repository (README.md and refs.tsv there).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.agent.wer import word_errors  # noqa: E402
from controller.agent.whisper import WhisperStt  # noqa: E402
from controller.audio import Pcm, frame_bytes, read_wav  # noqa: E402

VOICES = ("flite", "hibari", "espeak")
DEFAULT_SPEECH = Path(__file__).resolve().parents[2] / "shared" / "speech"


@dataclass
class Score:
    errors: int = 0
    words: int = 0
    audio_s: float = 0.0
    cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)


def load_refs(folder: Path) -> dict[str, str]:
    lines = (folder / "refs.tsv").read_text().splitlines()
    return dict(line.split("\t", 1) for line in lines if line.strip())


async def run_one(stt: WhisperStt, pcm: Pcm) -> tuple[str, float, float]:
    """(text, CPU seconds, wall seconds) of the final result after feeding 20 ms frames."""
    stream = await stt.open(pcm.sample_rate)
    size = frame_bytes(pcm.sample_rate)
    for i in range(0, len(pcm.data), size):
        await stream.feed(pcm.data[i : i + size])
    cpu, wall = time.process_time(), time.perf_counter()
    heard = await stream.result(final=True)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await stream.close()
    return heard.text, cpu, wall


async def score_voice(stt: WhisperStt, folder: Path, refs: dict[str, str]) -> Score:
    score = Score()
    for utt, ref in sorted(refs.items()):
        pcm = read_wav(folder / f"{utt}.wav")
        text, cpu, wall = await run_one(stt, pcm)
        errors, words = word_errors(ref, text)
        score.errors += errors
        score.words += words
        score.audio_s += pcm.duration
        score.cpu_s += cpu
        score.latencies.append(wall)
        if errors:
            score.misses.append(f"    {utt} {errors}/{words}: {text!r}")
    return score


def p95(values: list[float]) -> float:
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, round(0.95 * (len(ranked) - 1)))]


def print_table(rate: int, rows: dict[str, Score]) -> None:
    print(f"\n{rate // 1000} kHz input (resampled to 16 kHz inside WhisperStt)")
    print(f"{'voice':<8} {'utts':>4} {'words':>5} {'WER %':>6} {'CPU s/audio s':>13} {'final p50 ms':>12} {'p95 ms':>6}")
    for voice, s in rows.items():
        wer_pct, cpu = 100 * s.errors / s.words, s.cpu_s / s.audio_s
        p50, p95_ms = 1000 * statistics.median(s.latencies), 1000 * p95(s.latencies)
        print(f"{voice:<8} {len(s.latencies):>4} {s.words:>5} {wer_pct:>6.1f} {cpu:>13.3f} {p50:>12.0f} {p95_ms:>6.0f}")
    for voice, s in rows.items():
        if s.misses:
            print(f"  {voice} misses:")
            print("\n".join(s.misses))


async def main(speech: Path, rates: list[int]) -> None:
    refs = load_refs(speech)
    stt = WhisperStt()
    started = time.perf_counter()
    await stt.load()
    print(f"model loaded in {time.perf_counter() - started:.2f} s; {len(refs)} utterances per voice")
    await run_one(stt, read_wav(speech / VOICES[0] / "8k" / f"{min(refs)}.wav"))  # warm-up, not scored
    for rate in rates:
        rows = {voice: await score_voice(stt, speech / voice / f"{rate // 1000}k", refs) for voice in VOICES}
        print_table(rate, rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("speech", nargs="?", type=Path, default=DEFAULT_SPEECH, help="the shared speech folder")
    parser.add_argument("--16k", dest="wide", action="store_true", help="also score the 16 kHz recordings")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    if not (args.speech / "refs.tsv").is_file():
        sys.exit(f"no speech set at {args.speech} (expected refs.tsv and voice folders)")
    asyncio.run(main(args.speech, [8000, 16000] if args.wide else [8000]))
