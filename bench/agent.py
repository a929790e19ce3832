"""The voice agent end to end: voice-to-voice latency, controller overhead, barge-in, false barge-ins.

voxgate (Controller, SQLite in a temp dir) and the simulated FreeSWITCH (FakeFreeSwitch) run in
this one process, as in `voxgate demo`; loop time is time.monotonic, so the simulator's view of
the call (when the caller spoke, when they heard the agent) and voxgate's TurnRecords share one
clock. Caller audio is the shared speech set (../shared/speech beside the repository), 8 kHz,
trimmed to its speech so "end of the caller's line" is the end of their voice.

  1. embedded engines (Whisper tiny.en, grounded model, hibari TTS, Silero VAD): voice-to-voice
     as voxgate records it and as the simulated caller hears it, flite and hibari voices;
  2. fixed-latency engines (STT 150 + LLM 300 + TTS 150 ms): what voxgate itself adds per turn;
  3. barge-in over a long reply, both audio fork generations: voxgate's flush and when the
     caller actually stops hearing the agent;
  4. false barge-ins: noise, DTMF and ring-back over a long reply, with the real Whisper.

    python bench/agent.py [--sections 1,2,3,4] [--lines 20] [--barge-ins 11]

Prints numbers only; exits 0 unless something crashes (targets missed are reported, not failed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from controller.agent.conversation import AgentConfig, Engines  # noqa: E402
from controller.agent.factory import build_engines, warm_up  # noqa: E402
from controller.agent.fixed import FixedLlm, FixedStt, FixedTts  # noqa: E402
from controller.agent.grounded import Intent  # noqa: E402
from controller.agent.sentences import SentenceSplitter  # noqa: E402
from controller.agent.turns import SpeechStarted, TurnSettings, VoiceTracker, looks_complete  # noqa: E402
from controller.agent.wer import word_errors  # noqa: E402
from controller.app import Controller  # noqa: E402
from controller.audio import Pcm, read_wav, resample, to_mono  # noqa: E402
from controller.config import Settings, load_settings  # noqa: E402
from controller.flows import FlowRegistry  # noqa: E402
from controller.records.migrate import upgrade  # noqa: E402
from controller.records.store import list_turns  # noqa: E402
from controller.simulator.caller import Hangup, Listen, Say, Step, Wait, WaitFor  # noqa: E402
from controller.simulator.fake_freeswitch import FakeFreeSwitch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEECH_DIR = ROOT.parent / "shared" / "speech"
RATE = 8000
SIM_PASSWORD = "bench-only-password"
WINDOW_S = 0.032  # Silero's window at 8 kHz
TRIM_DBFS = -50.0  # caller audio is trimmed to the 20 ms frames above this level

GREETING = "Hello, how can I help?"
SYSTEM_PROMPT = "You are a phone assistant. Answer in one short sentence."
# Section 1: the grounded model answers one intent and says its (short) fallback otherwise.
SHORT_FALLBACK = "Okay, got it."
THANKS = Intent("thanks", ("thank you very much for your help", "thank you"), reply="You're welcome.")
# Sections 2-4: fixed engines.
STT_S, LLM_S, TTS_S = 0.15, 0.30, 0.15
ENGINE_MS = (STT_S + LLM_S + TTS_S) * 1000
SHORT_REPLY = "Sure, let me check that for you. One moment."
LONG_REPLY = ("Let me look into that for you right now. Our store is open from nine to six, Monday to Saturday, "
              "and returns are accepted within thirty days.")  # ~8 s of FixedTts tone (60 ms per character)
NOISES = (("pink noise", "pinknoise", 5.0, 2.5), ("brown noise", "brownnoise", 5.0, 2.5),
          ("DTMF", "dtmf", 0.5, 2.5), ("ring-back", "ring", 0.0, 3.0))  # (label, file, from s, seconds)

V2V_TARGET = (700.0, 900.0)  # p50, p95
OVERHEAD_P95_TARGET = 20.0
BARGE_P95_TARGET = 200.0


# ---------------------------------------------------------------- the shared audio


@dataclass(frozen=True)
class Utterance:
    uid: str
    voice: str
    text: str
    pcm: Pcm  # 8 kHz mono, trimmed to its speech
    trimmed_ms: int


def _frames_db(samples: np.ndarray, frame: int) -> np.ndarray:
    usable = samples[: len(samples) // frame * frame].astype(np.float64).reshape(-1, frame)
    return 10 * np.log10(np.mean(usable * usable, axis=1) / 32768.0**2 + 1e-12)


def _load_8k(path: Path) -> Pcm:
    pcm = read_wav(path)
    mono = Pcm(to_mono(pcm.data, pcm.channels), pcm.sample_rate)
    return mono if mono.sample_rate == RATE else resample(mono, RATE)


def trim(pcm: Pcm) -> tuple[Pcm, int]:
    """The audio from its first to its last voiced 20 ms frame, and how many ms were cut."""
    samples = np.frombuffer(pcm.data, "<i2")
    frame = RATE // 50
    voiced = np.flatnonzero(_frames_db(samples, frame) > TRIM_DBFS)
    if not len(voiced):
        return pcm, 0
    kept = samples[voiced[0] * frame:(voiced[-1] + 1) * frame]
    return Pcm(kept.tobytes(), RATE), (len(samples) - len(kept)) * 1000 // RATE


def load_speech(voice: str) -> list[Utterance]:
    refs_path = SPEECH_DIR / "refs.tsv"
    if not refs_path.is_file():
        raise SystemExit(f"bench/agent.py: the shared speech set is missing: no {refs_path}\n"
                         f"  (expected {SPEECH_DIR} beside the repository, with refs.tsv, flite/8k, hibari/8k, noise/)")
    utterances = []
    for line in refs_path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        uid, text = line.split("\t", 1)
        path = SPEECH_DIR / voice / "8k" / f"{uid}.wav"
        if not path.is_file():
            raise SystemExit(f"bench/agent.py: missing {path}")
        pcm, cut = trim(_load_8k(path))
        utterances.append(Utterance(uid, voice, text.strip(), pcm, cut))
    return utterances


def load_noise(name: str, start_s: float, seconds: float) -> Pcm:
    path = SPEECH_DIR / "noise" / f"{name}_8000.wav"
    if not path.is_file():
        raise SystemExit(f"bench/agent.py: missing {path}")
    data = _load_8k(path).data
    begin = int(start_s * RATE) * 2
    return Pcm(data[begin:begin + int(seconds * RATE) * 2], RATE)


# ---------------------------------------------------------------- numbers


@dataclass
class Row:
    section: str
    metric: str
    values: list[float]
    target: str = ""
    verdict: str = ""


SUMMARY: list[Row] = []


def stats(values: Sequence[float]) -> tuple[int, float, float, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return len(arr), float(np.percentile(arr, 50)), float(np.percentile(arr, 95)), float(arr.max())


def show(label: str, values: Sequence[float], unit: str = "ms", digits: int = 0) -> str:
    s = stats(values)
    if s is None:
        return f"    {label:<52} (no samples)"
    n, p50, p95, top = s
    return (f"    {label:<52} n={n:<3} p50 {p50:8.{digits}f}  p95 {p95:8.{digits}f}  max {top:8.{digits}f} {unit}")


def judge(values: Sequence[float], p50_max: float | None, p95_max: float | None) -> str:
    s = stats(values)
    if s is None:
        return "no data"
    _, p50, p95, _ = s
    ok = (p50_max is None or p50 <= p50_max) and (p95_max is None or p95 <= p95_max)
    return "ok" if ok else "MISSED"


def record(section: str, metric: str, values: Sequence[float], *, p50_max: float | None = None,
           p95_max: float | None = None) -> None:
    target = " ".join(t for t in (f"p50<={p50_max:g}" if p50_max is not None else "",
                                  f"p95<={p95_max:g}" if p95_max is not None else "") if t)
    verdict = judge(values, p50_max, p95_max) if target else ""
    SUMMARY.append(Row(section, metric, list(values), target, verdict))
    line = show(metric, values)
    if target:
        line += f"   target {target}: {verdict}"
    print(line, flush=True)


def caller_latencies(caller_speech: list[tuple[float, float]], agent_speech: list[list[float]]) -> list[float]:
    """End of each caller line -> start of the first agent audio the caller hears after it (ms).

    Only replies that begin before the caller's next line count (a missing reply is skipped)."""
    out = []
    for index, (_, end) in enumerate(caller_speech):
        next_start = caller_speech[index + 1][0] if index + 1 < len(caller_speech) else float("inf")
        heard = next((a for a, _ in agent_speech if a > end), None)
        if heard is not None and heard < next_start:
            out.append((heard - end) * 1000)
    return out


def agent_replies(turns: list[dict]) -> list[dict]:
    return [t for t in turns if t["speaker"] == "agent" and t["voice_to_voice_ms"] is not None]


def exchanges(turns: list[dict]) -> list[tuple[str, dict]]:
    """(what the caller said, the agent's reply to it) for every reply to a caller turn."""
    out, said = [], ""
    for turn in turns:
        if turn["speaker"] == "caller":
            said = turn["text"]
        elif turn["voice_to_voice_ms"] is not None:
            out.append((said, turn))
    return out


def held_open(pairs: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Replies whose caller turn did not end at the first pause: the transcript looked unfinished
    (voxgate's looks_complete), so the conversation waited for the long pause."""
    return [(said, t) for said, t in pairs if not looks_complete(said)]


class LoopLag:
    """Event-loop stalls while a section runs (voxgate, the simulator and the bench share the loop)."""

    def __init__(self) -> None:
        self.stalls: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            late = (time.monotonic() - before - 0.01) * 1000
            if late > 20:
                self.stalls.append(late)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        print(f"  event loop: {len(self.stalls)} stalls > 20 ms"
              + (f", worst {max(self.stalls):.0f} ms" if self.stalls else ""), flush=True)


def percentile_note() -> str:
    return "(percentiles: numpy linear interpolation over the samples; all times in ms)"


# ---------------------------------------------------------------- voxgate + simulator in one process


@dataclass
class CallRun:
    uuid: str
    generation: str
    caller_speech: list[tuple[float, float]]
    agent_speech: list[list[float]]
    turns: list[dict]
    script_error: str | None
    outcome: str | None
    wall_s: float


@dataclass
class Bench:
    tmp: Path
    database_url: str
    base_env: dict[str, str] = field(default_factory=dict)

    def settings(self, mode: str) -> Settings:
        return load_settings({**self.base_env, "VOXGATE_AUDIO_FORK_MODE": mode})

    async def run_calls(self, engines: Engines, config: AgentConfig, scripts: Sequence[list[Step]], *,
                        mode: str = "streaming", timeout_s: float = 240.0) -> list[CallRun]:
        """Start voxgate with one agent flow, place each scripted call in turn, read the turns back."""
        settings = self.settings(mode)
        outcomes: dict[str, str] = {}
        flows = FlowRegistry()

        @flows.register("bench-agent")
        async def bench_agent(call) -> str:
            await call.answer()
            result = await call.agent(config)
            outcomes[call.info.uuid] = result.reason
            if not call.ended.is_set():
                try:
                    await call.hangup()
                except Exception:  # noqa: BLE001 - the caller may have gone in the meantime
                    pass
            return result.reason

        controller = Controller(settings, flows, engines=engines)
        await controller.start()
        generation = "classic" if mode == "classic" else "jambonz"
        sim = FakeFreeSwitch(password=SIM_PASSWORD, tmp_dir=self.tmp, generation=generation)
        await sim.start()
        runs: list[CallRun] = []
        try:
            for script in scripts:
                started = time.monotonic()
                channel = await sim.place_call(script, destination="5000", variables={"voxgate_flow": "bench-agent"},
                                               outbound_socket=(settings.bind_host, controller.outbound.port))
                await asyncio.wait_for(channel.ended.wait(), timeout_s)
                for _ in range(200):  # until voxgate has finished the call and its records
                    if channel.uuid not in controller.calls:
                        break
                    await asyncio.sleep(0.05)
                await controller.writer.flush()
                turns = await asyncio.to_thread(list_turns, self.database_url, channel.uuid)
                runs.append(CallRun(channel.uuid, generation, list(channel.caller_speech),
                                    [list(a) for a in channel.agent_speech], turns,
                                    str(channel.script_error) if channel.script_error else None,
                                    outcomes.get(channel.uuid), time.monotonic() - started))
        finally:
            await sim.stop()
            await controller.stop()
        for run in runs:
            note = f"; caller script: {run.script_error}" if run.script_error else ""
            print(f"    call {run.uuid[:8]} ({run.generation}): {len(run.turns)} turns, agent ended "
                  f"'{run.outcome}', {run.wall_s:.0f} s{note}", flush=True)
        return runs


def opening() -> list[Step]:
    return [WaitFor("answer", timeout=15), Listen(silence=0.7, timeout=15)]


def fixed_stt(lines: Sequence[Utterance]) -> FixedStt:
    """FixedStt that answers, for the caller's n-th utterance, the text of the n-th line they say."""
    texts = [u.text for u in lines]
    return FixedStt(lambda n: texts[n % len(texts)], latency_s=STT_S)


def first_sentence_gaps(reply: str) -> int:
    """Token gaps FixedLlm spends before voxgate's sentence splitter releases the first sentence."""
    splitter = SentenceSplitter()
    for index, word in enumerate(reply.split(" ")):
        if splitter.feed(word if index == 0 else " " + word):
            return index
    return len(reply.split(" ")) - 1


# ---------------------------------------------------------------- section 1: embedded engines


async def section_embedded(bench: Bench, engines: Engines, lines: int) -> None:
    print("\n== 1. voice-to-voice, embedded engines "
          f"({engines.stt.name} / {engines.llm.name} / {engines.tts.name} / {engines.vad.name}), audio fork: streaming")
    config = AgentConfig(system_prompt=SYSTEM_PROMPT, greeting=GREETING, intents=(THANKS,), fallback=SHORT_FALLBACK)
    voices = {voice: load_speech(voice)[:lines] for voice in ("flite", "hibari")}
    scripts = []
    for utterances in voices.values():
        steps = opening()
        for u in utterances:
            steps += [Say(u.pcm), Listen(silence=0.6, timeout=20), Wait(0.2)]
        scripts.append([*steps, Hangup()])
    runs = await bench.run_calls(engines, config, scripts)
    every: dict[str, list[float]] = {k: [] for k in ("v2v", "stt", "llm", "tts", "endpoint", "caller")}
    for (voice, utterances), run in zip(voices.items(), runs, strict=True):
        replies = agent_replies(run.turns)
        caller_turns = [t for t in run.turns if t["speaker"] == "caller"]
        lat = caller_latencies(run.caller_speech, run.agent_speech)
        print(f"  {voice}: {len(utterances)} lines said, {len(caller_turns)} caller turns, "
              f"{len(replies)} agent replies, "
              f"{len(lat)} replies heard by the caller")
        if len(caller_turns) == len(utterances):
            errors = [word_errors(u.text, t["text"]) for u, t in zip(utterances, caller_turns, strict=True)]
            wrong = [(u.text, t["text"]) for (e, _), u, t in zip(errors, utterances, caller_turns, strict=True) if e]
            print(f"    transcripts: WER {sum(e for e, _ in errors) / max(1, sum(n for _, n in errors)):.1%}"
                  + (f", e.g. {wrong[0][0]!r} -> {wrong[0][1]!r}" if wrong else ""))
        parts = {
            "v2v": [t["voice_to_voice_ms"] for t in replies],
            "stt": [t["stt_ms"] for t in replies if t["stt_ms"] is not None],
            "llm": [t["llm_first_token_ms"] for t in replies if t["llm_first_token_ms"] is not None],
            "tts": [t["tts_first_audio_ms"] for t in replies if t["tts_first_audio_ms"] is not None],
            "endpoint": [t["detail"]["endpoint_ms"] for t in replies
                         if (t["detail"] or {}).get("endpoint_ms") is not None],
            "caller": lat,
        }
        print(show("voice-to-voice (voxgate)", parts["v2v"]))
        print(show("caller-side (simulator)", parts["caller"]))
        for key, values in parts.items():
            every[key] += values
    print("  both voices:")
    record("1 embedded", "voice-to-voice (voxgate: speech end->1st frame)", every["v2v"],
           p50_max=V2V_TARGET[0], p95_max=V2V_TARGET[1])
    record("1 embedded", "caller-side (speech end->agent audio heard)", every["caller"],
           p50_max=V2V_TARGET[0], p95_max=V2V_TARGET[1])
    record("1 embedded", "endpoint_ms (speech end->pause noticed)", every["endpoint"])
    record("1 embedded", "stt_ms (speech end->final transcript)", every["stt"])
    record("1 embedded", "llm_first_token_ms", every["llm"])
    record("1 embedded", "tts_first_audio_ms", every["tts"])
    all_replies = [t for run in runs for t in agent_replies(run.turns)]
    stages = {
        "transcribe (stt_ms - endpoint_ms)": [t["stt_ms"] - t["detail"]["endpoint_ms"] for t in all_replies],
        "model (llm - stt)": [t["llm_first_token_ms"] - t["stt_ms"] for t in all_replies
                              if t["llm_first_token_ms"] is not None],
        "synthesise (tts - llm)": [t["tts_first_audio_ms"] - t["llm_first_token_ms"] for t in all_replies
                                   if t["tts_first_audio_ms"] is not None and t["llm_first_token_ms"] is not None],
        "to the PBX (v2v - tts)": [t["voice_to_voice_ms"] - t["tts_first_audio_ms"] for t in all_replies
                                   if t["tts_first_audio_ms"] is not None],
    }
    print("  where the time goes (per reply):")
    for label, values in stages.items():
        print(show(label, values))
    gap = [c - v for c, v in _paired_caller_v2v(runs)]
    if gap:
        print(show("caller-side minus voxgate v2v", gap))
    pairs = [pair for run in runs for pair in exchanges(run.turns)]
    held = held_open(pairs)
    print(f"  caller turns held open past the first pause (transcript looked unfinished): {len(held)}"
          + "".join(f"\n    {said!r}: voice-to-voice {t['voice_to_voice_ms']:.0f} ms, endpoint_ms recorded "
                    f"{t['detail']['endpoint_ms']:.0f}, transcript at {t['stt_ms']:.0f}" for said, t in held))
    if held:
        ended = [t for said, t in pairs if looks_complete(said)]
        print(show("voice-to-voice, turns ended at the 1st pause", [t["voice_to_voice_ms"] for t in ended]))
        print(show("transcribe, turns ended at the 1st pause", [t["stt_ms"] - t["detail"]["endpoint_ms"]
                                                                for t in ended]))


def _paired_caller_v2v(runs: list[CallRun]) -> list[tuple[float, float]]:
    """(caller-side, voxgate v2v) for replies matched in order, when both views count the same replies."""
    pairs = []
    for run in runs:
        replies = agent_replies(run.turns)
        lat = caller_latencies(run.caller_speech, run.agent_speech)
        if len(replies) == len(lat):
            pairs += [(c, t["voice_to_voice_ms"]) for c, t in zip(lat, replies, strict=True)]
    return pairs


def _norm(text: str) -> str:
    return " ".join("".join(ch for ch in text.lower() if ch.isalnum() or ch in " '").split())


# ---------------------------------------------------------------- section 2: fixed engines, overhead


async def section_overhead(bench: Bench, vad: Any, lines: int) -> None:
    utterances = load_speech("flite")[:lines]
    gaps = first_sentence_gaps(SHORT_REPLY)
    token_gap_s = 0.01
    print(f"\n== 2. controller overhead, fixed engines (STT {STT_S * 1000:.0f} + LLM {LLM_S * 1000:.0f} + "
          f"TTS {TTS_S * 1000:.0f} ms; real Silero VAD), flite caller, audio fork: streaming")
    print(f"  FixedStt answers the text of the line actually said (1st: {utterances[0].text!r}); "
          f"FixedLlm {SHORT_REPLY!r} (token gap {token_gap_s * 1000:.0f} ms: the splitter releases the first "
          f"sentence after {gaps} gaps = {gaps * token_gap_s * 1000:.0f} ms); "
          "FixedTts at 10 ms/char to keep calls short")
    engines = Engines(stt=fixed_stt(utterances),
                      llm=FixedLlm(SHORT_REPLY, first_token_s=LLM_S, token_gap_s=token_gap_s),
                      tts=FixedTts(first_audio_s=TTS_S, ms_per_char=10), vad=vad)
    config = AgentConfig(system_prompt=SYSTEM_PROMPT, greeting=GREETING)
    steps = opening()
    for u in utterances:
        steps += [Say(u.pcm), Listen(silence=0.4, timeout=20), Wait(0.2)]
    runs = await bench.run_calls(engines, config, [[*steps, Hangup()]])
    replies = [t for run in runs for t in agent_replies(run.turns)]
    interrupted = sum(1 for t in replies if t["interrupted"])
    print(f"  {len(utterances)} lines said, {len(replies)} agent replies ({interrupted} interrupted)")
    endpoint = [t["detail"]["endpoint_ms"] for t in replies]
    v2v = [t["voice_to_voice_ms"] for t in replies]
    overhead = [v - e - ENGINE_MS for v, e in zip(v2v, endpoint, strict=True)]
    net = [o - gaps * token_gap_s * 1000 for o in overhead]
    ratio = [v / (e + ENGINE_MS) for v, e in zip(v2v, endpoint, strict=True)]
    print(show("voice-to-voice", v2v))
    record("2 fixed", "endpoint_ms", endpoint)
    record("2 fixed", "overhead = v2v - endpoint - 600", overhead, p95_max=OVERHEAD_P95_TARGET)
    record("2 fixed", f"overhead net of FixedLlm's {gaps} token gaps", net, p95_max=OVERHEAD_P95_TARGET)
    print(show("ratio v2v / (endpoint + 600)  [baseline]", ratio, unit="x", digits=3))
    SUMMARY.append(Row("2 fixed", "ratio v2v / (endpoint + 600)", ratio))
    caller = [c for run in runs for c in caller_latencies(run.caller_speech, run.agent_speech)]
    record("2 fixed", "caller-side (speech end->agent audio heard)", caller)
    print("  where voxgate's time goes (per reply, engine latencies subtracted):")
    stages = {
        "endpoint -> final transcript, minus 150": [t["stt_ms"] - t["detail"]["endpoint_ms"] - STT_S * 1000
                                                    for t in replies],
        "transcript -> 1st token, minus 300": [t["llm_first_token_ms"] - t["stt_ms"] - LLM_S * 1000 for t in replies],
        f"1st token -> 1st audio, minus 150+{gaps * token_gap_s * 1000:.0f}":
            [t["tts_first_audio_ms"] - t["llm_first_token_ms"] - TTS_S * 1000 - gaps * token_gap_s * 1000
             for t in replies],
        "1st audio -> 1st frame to the PBX": [t["voice_to_voice_ms"] - t["tts_first_audio_ms"] for t in replies],
    }
    for label, values in stages.items():
        print(show(label, values))
    print(show("caller-side minus voxgate v2v", [c - v for c, v in _paired_caller_v2v(runs)]))
    pairs = [pair for run in runs for pair in exchanges(run.turns)]
    held = held_open(pairs)
    if held:
        print(f"  caller turns held open past the first pause (transcript looked unfinished): {len(held)}"
              + "".join(f"\n    {said!r}: voice-to-voice {t['voice_to_voice_ms']:.0f} ms, endpoint_ms recorded "
                        f"{t['detail']['endpoint_ms']:.0f}, transcript at {t['stt_ms']:.0f}" for said, t in held))
        ended = [t for said, t in pairs if looks_complete(said)]
        record("2 fixed", "overhead net of token gaps, turns ended at 1st pause",
               [t["voice_to_voice_ms"] - t["detail"]["endpoint_ms"] - ENGINE_MS - gaps * token_gap_s * 1000
                for t in ended], p95_max=OVERHEAD_P95_TARGET)


# ---------------------------------------------------------------- section 3: barge-in


async def section_barge_in(bench: Bench, vad: Any, barge_ins: int, wait_s: float) -> None:
    utterances = load_speech("flite")
    barging = sorted(utterances[1:], key=lambda u: u.pcm.duration)  # short lines first: barge-ins are short
    print(f"\n== 3. barge-in over a long reply (~{len(LONG_REPLY) * 60 / 1000:.0f} s of FixedTts), fixed engines, "
          f"flite caller talks {wait_s:.1f} s after their previous line\n"
          f"  (the agent starts ~endpoint + 600 ms + token gaps after a line; barge-in guard "
          f"{AgentConfig('').barge_in.guard_ms:.0f} ms after its first frame)")
    engines = Engines(stt=fixed_stt(utterances), llm=FixedLlm(LONG_REPLY, first_token_s=LLM_S),
                      tts=FixedTts(first_audio_s=TTS_S), vad=vad)
    config = AgentConfig(system_prompt=SYSTEM_PROMPT, greeting=GREETING)
    voxgate_ms: list[float] = []
    heard_ms: list[float] = []
    for mode in ("streaming", "classic"):
        steps = [*opening(), Say(utterances[0].pcm)]
        for k in range(barge_ins):
            steps += [Wait(wait_s), Say(barging[k % len(barging)].pcm)]
        runs = await bench.run_calls(engines, config, [[*steps, Wait(1.0), Hangup()]], mode=mode)
        for run in runs:
            replies = [t for t in run.turns if t["speaker"] == "agent"]
            cut = [t["barge_in_ms"] for t in replies if t["interrupted"] and t["barge_in_ms"] is not None]
            stops, outside = [], 0
            for start, _ in run.caller_speech[1:]:  # every line after the first talks over a reply
                playing = next((a for a in run.agent_speech if a[0] <= start <= a[1]), None)
                if playing is None:
                    outside += 1
                else:
                    stops.append((playing[1] - start) * 1000)
            print(f"  {run.generation} ({mode}): {barge_ins} lines over the reply, {len(cut)} replies interrupted, "
                  f"{len(stops)} lines began while the caller heard the agent ({outside} did not)")
            print(show("barge_in_ms (voxgate: onset -> flush sent)", cut))
            print(show("caller-side (speech start -> agent silent)", stops))
            heard = [t for t in replies if t["interrupted"]]
            if heard:
                print(f"    e.g. heard before the cut: {heard[0]['heard_text']!r}")
            voxgate_ms += cut
            heard_ms += stops
    print("  both generations:")
    record("3 barge-in", "barge_in_ms (voxgate: onset->flush sent)", voxgate_ms, p95_max=BARGE_P95_TARGET)
    record("3 barge-in", "caller-side (speech start->agent silent)", heard_ms, p95_max=BARGE_P95_TARGET)


# ---------------------------------------------------------------- section 4: false barge-ins


class ProbedVad:
    """The real VAD, with every window's probability kept (monotonic time, probability)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.windows: list[tuple[float, float]] = []

    async def open(self, sample_rate: int) -> _ProbedStream:
        return _ProbedStream(await self.inner.open(sample_rate), self.windows)


class _ProbedStream:
    def __init__(self, inner: Any, windows: list[tuple[float, float]]) -> None:
        self.inner = inner
        self.windows = windows
        self.window_ms = inner.window_ms

    def push(self, pcm: bytes) -> list[float]:
        probabilities = self.inner.push(pcm)
        now = time.monotonic()
        self.windows.extend((now, p) for p in probabilities)
        return probabilities

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def tracker_view(windows: list[tuple[float, float]], settings: TurnSettings) -> tuple[float, int]:
    """Replay windows through a fresh VoiceTracker: the longest candidate run (p >= onset, then
    >= offset) in ms, and how many times it would have declared speech."""
    tracker = VoiceTracker(settings, WINDOW_S)
    longest = run = 0.0
    onsets = 0
    for at, p in windows:
        run = (run + WINDOW_S * 1000) if p >= (settings.offset if run else settings.onset) else 0.0
        longest = max(longest, run)
        if isinstance(tracker.push(p, at), SpeechStarted):
            onsets += 1
            tracker.end()
    return longest, onsets


async def section_false_barge_in(bench: Bench, stt: Any, vad: Any, wait_s: float) -> None:
    utterances = load_speech("flite")
    noises = [(label, load_noise(name, start, seconds)) for label, name, start, seconds in NOISES]
    turn = TurnSettings()
    print(f"\n== 4. false barge-ins: {', '.join(f'{label} ({p.duration:.1f} s)' for label, p in noises)} "
          f"played over a long reply; {stt.name} STT, fixed LLM/TTS, Silero VAD "
          f"(onset p>={turn.onset:g} for {turn.min_speech_ms:.0f} ms)")
    probe = ProbedVad(vad)
    engines = Engines(stt=stt, llm=FixedLlm(LONG_REPLY, first_token_s=LLM_S), tts=FixedTts(first_audio_s=TTS_S),
                      vad=probe)
    config = AgentConfig(system_prompt=SYSTEM_PROMPT, greeting=GREETING)
    steps = opening()
    kinds: list[str] = []  # what each caller_speech span is: a line or a noise label
    for index in range(0, len(noises), 2):
        steps += [Say(utterances[index].pcm), Wait(wait_s)]
        kinds.append("line")
        for offset, (label, pcm) in enumerate(noises[index:index + 2]):
            steps += ([Wait(0.5)] if offset else []) + [Say(pcm)]
            kinds.append(label)
        steps += [Listen(silence=0.6, timeout=25)]
    clock_offset = time.time() - time.monotonic()  # wall = monotonic + offset, as voxgate's records
    runs = await bench.run_calls(engines, config, [[*steps, Hangup()]])
    run = runs[0]
    agent = [t for t in run.turns if t["speaker"] == "agent"]
    interrupted = [t for t in agent if t["interrupted"]]
    pauses = max([(t["detail"] or {}).get("false_interruptions", 0) for t in agent], default=0)

    def span_of(turn_row: dict) -> str:
        at = turn_row["started_at"].timestamp() - clock_offset
        for kind, (start, end) in zip(kinds, run.caller_speech, strict=False):
            if start - 0.1 <= at <= end + 0.3:
                return kind
        return "elsewhere"

    caller_turns = [(span_of(t), t["text"]) for t in run.turns if t["speaker"] == "caller"]
    noise_turns = [(kind, text) for kind, text in caller_turns if kind != "line"]
    print(f"  {len(kinds) - kinds.count('line')} noises played; per noise, what the caller heard and what the VAD saw:")
    for kind, (start, end) in zip(kinds, run.caller_speech, strict=False):
        if kind == "line":
            continue
        over = any(a[0] <= start <= a[1] for a in run.agent_speech)
        windows = [(t, p) for t, p in probe.windows if start + 0.02 <= t <= end + 0.1]
        top = max((p for _, p in windows), default=0.0)
        run_ms, onsets = tracker_view(windows, turn)
        print(f"    {kind:<12} over agent audio: {'yes' if over else 'NO '}  VAD max p {top:.2f}, longest "
              f"candidate run {run_ms:3.0f} ms (speech needs {turn.min_speech_ms:.0f}), speech onsets {onsets}")
    print(f"  agent turns interrupted (target 0): {len(interrupted)}"
          + (f"  <- heard {[t['heard_text'] for t in interrupted]}" if interrupted else ""))
    print(f"  pauses (false interruptions: the reply stopped, then resumed): {pauses}")
    print(f"  caller turns: {len(caller_turns)} ({[text for _, text in caller_turns]}); "
          f"taken from noise: {len(noise_turns)}" + (f" {noise_turns}" if noise_turns else ""))
    SUMMARY.append(Row("4 false barge-in", "interrupted turns / pauses / turns from noise",
                       [len(interrupted), pauses, len(noise_turns)], "interrupted=0",
                       "ok" if not interrupted else "MISSED"))


# ---------------------------------------------------------------- main


def print_summary(started: float) -> None:
    print(f"\n== summary ({time.monotonic() - started:.0f} s) {percentile_note()}")
    print(f"  {'section':<17} {'metric':<54} {'n':>3} {'p50':>7} {'p95':>7} {'max':>7}  target")
    for row in SUMMARY:
        if row.section.startswith("4"):
            a, b, c = row.values
            print(f"  {row.section:<17} {row.metric:<54} {'':>3} {a:>7} {b:>7} {c:>7}  {row.target} {row.verdict}")
            continue
        s = stats(row.values)
        if s is None:
            print(f"  {row.section:<17} {row.metric:<54}   0  (no samples)  {row.target} {row.verdict}")
            continue
        n, p50, p95, top = s
        digits = 2 if row.metric.startswith("ratio") else 0
        print(f"  {row.section:<17} {row.metric:<54} {n:>3} {p50:>7.{digits}f} {p95:>7.{digits}f} {top:>7.{digits}f}  "
              f"{row.target} {row.verdict}".rstrip())


async def main_async(args: argparse.Namespace) -> None:
    started = time.monotonic()
    sections = {int(s) for s in args.sections.split(",") if s.strip()}
    load_speech("flite")  # fail early and clearly when the shared audio is missing
    with tempfile.TemporaryDirectory(prefix="voxgate-bench-agent-") as tmp:
        database_url = f"sqlite:///{tmp}/bench.sqlite3"
        await asyncio.to_thread(upgrade, database_url)
        bench = Bench(Path(tmp), database_url, {
            "VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0", "VOXGATE_DATABASE_URL": database_url,
            "VOXGATE_JOURNAL_DIR": str(Path(tmp) / "journal"),
            "VOXGATE_TOKEN_SECRET": "bench-token-secret-0123456789", "VOXGATE_INSTANCE_ID": "bench",
            "VOXGATE_PRELOAD_ENGINES": "false", "VOXGATE_LOG_LEVEL": "WARNING"})
        print("voxgate agent benchmark: voxgate + simulated FreeSWITCH in one process, SQLite in a temp dir, "
              f"caller audio from {SPEECH_DIR} (8 kHz, trimmed to speech at {TRIM_DBFS:g} dBFS)")
        embedded = build_engines(bench.settings("streaming"))
        await warm_up(embedded, progress=lambda text: print(f"  {text}", flush=True))
        if 1 in sections:
            with LoopLag():
                await section_embedded(bench, embedded, args.lines)
        if 2 in sections:
            with LoopLag():
                await section_overhead(bench, embedded.vad, args.lines)
        if 3 in sections:
            with LoopLag():
                await section_barge_in(bench, embedded.vad, args.barge_ins, args.barge_wait)
        if 4 in sections:
            with LoopLag():
                await section_false_barge_in(bench, embedded.stt, embedded.vad, args.noise_wait)
    print_summary(started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default="1,2,3,4", help="which sections to run, e.g. 1,3")
    parser.add_argument("--lines", type=int, default=20, help="caller lines per call in sections 1 and 2 (max 20)")
    parser.add_argument("--barge-ins", type=int, default=11, help="barge-ins per audio fork generation")
    parser.add_argument("--barge-wait", type=float, default=1.5,
                        help="seconds after a line before talking over the reply "
                             "(endpoint + 600 ms of engines + margin)")
    parser.add_argument("--noise-wait", type=float, default=2.0,
                        help="seconds after a line before the noise (section 4)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="    [%(levelname)s %(name)s] %(message)s")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
