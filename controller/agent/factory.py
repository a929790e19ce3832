"""Engines from settings, and their warm-up: models load once, off the event loop, before calls."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from controller.agent.conversation import AgentConfig, Engines
from controller.agent.grounded import GroundedModel
from controller.config import Settings

log = logging.getLogger(__name__)

def build_engines(settings: Settings) -> Engines:
    """The configured engines, not loaded yet (hosted clients connect per call)."""
    return Engines(stt=_stt(settings), llm=_llm(settings), tts=_tts(settings), vad=_vad())


def _stt(settings: Settings):
    if settings.stt == "deepgram":
        from controller.agent.deepgram import DeepgramStt

        assert settings.deepgram_api_key is not None  # load_settings insists
        return DeepgramStt(settings.deepgram_api_key, url=settings.deepgram_url)
    from controller.agent.whisper import WhisperStt

    return WhisperStt()


def _llm(settings: Settings):
    if settings.llm == "openai":
        from controller.agent.openai_chat import OpenAIChatModel

        return OpenAIChatModel(settings.openai_base_url, settings.openai_model, settings.openai_api_key)
    if settings.llm == "llama":
        from controller.agent.llama import LlamaModel

        return LlamaModel()
    return GroundedModel([], AgentConfig.dont_know)  # each conversation adds its flow's intents


def _tts(settings: Settings):
    if settings.tts == "openai":
        from controller.agent.openai_speech import OpenAISpeechTts

        return OpenAISpeechTts(settings.openai_base_url, settings.openai_api_key, model=settings.openai_tts_model,
                               voice=settings.openai_tts_voice)
    from controller.agent.hibari_tts import HibariTts

    return HibariTts()


def _vad():
    from controller.agent.silero import SileroVad

    return SileroVad()


async def warm_up(engines: Engines, progress: Callable[[str], None] = log.info) -> None:
    """Load every embedded model now, saying what is happening (the first load takes seconds)."""
    for kind in ("stt", "llm", "tts", "vad"):
        engine = getattr(engines, kind)
        load = getattr(engine, "prewarm", None) or getattr(engine, "load", None)
        if load is None:
            continue
        progress(f"loading {kind} engine {engine.name}...")
        started = time.monotonic()
        await load()
        progress(f"  {engine.name} ready in {time.monotonic() - started:.1f} s")
