"""say(): text spoken with the call's TTS engine, streamed to the caller sentence by sentence."""

from __future__ import annotations

from collections.abc import AsyncIterator

from controller.agent.engines import EngineError, TextToSpeech
from controller.call import CommandFailed, PlayResult, PromptResult
from controller.verbs.line import Line, engines
from controller.verbs.listen import Ears
from controller.verbs.playout import prompt


async def say(line: Line, text: str, *, interruptible: bool = True, ears: Ears | None = None) -> PromptResult:
    """Speak `text`; the first sentence plays while the next ones are still being made."""
    tts = engines(line, "say").tts
    if not text.strip():
        return PromptResult(0, 0)

    async def start() -> PlayResult:
        try:
            return await line.media.play_stream(_speech(tts, text), tts.sample_rate)
        except EngineError as exc:
            raise CommandFailed(f"say: the TTS engine failed: {exc}") from exc

    return await prompt(line, start, line.media.flush, interruptible=interruptible, ears=ears)


async def _speech(tts: TextToSpeech, text: str) -> AsyncIterator[bytes]:
    async for chunk in tts.synthesize(text):
        if chunk.sample_rate != tts.sample_rate:
            raise EngineError(f"{tts.name} made {chunk.sample_rate} Hz audio, not its {tts.sample_rate} Hz")
        yield chunk.pcm
