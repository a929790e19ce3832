"""One agent reply on its way to the caller: LLM tokens -> sentences -> TTS audio -> the call.

Two tasks per reply. The producer streams the model, cuts sentences and synthesises each
one while the model still talks; the player streams that audio to the media port as it
grows. Barge-in pauses the player (the PBX flushes), and the conversation then either
cancels the reply or resumes it from the start of the sentence that was cut.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar
from dataclasses import dataclass, field
from typing import Any

from controller.agent.engines import EngineError, LanguageModel, Message, TextToSpeech, ToolCall
from controller.agent.sentences import SentenceSplitter
from controller.agent.tools import CallAction, Tool, ToolOutcome, run_tool
from controller.call import MediaPort, PlayResult

log = logging.getLogger(__name__)


@dataclass
class Segment:
    """One sentence of the reply and its audio, which grows while TTS streams it."""

    text: str
    pcm: bytearray = field(default_factory=bytearray)
    complete: bool = False
    canned: bool = False  # filler or fallback: said, but not the model's words


@dataclass
class ReplyTimings:
    """Monotonic times of each stage's first output (None when it never came)."""

    llm_first_token: float | None = None
    tts_first_audio: float | None = None
    first_frame_sent: float | None = None
    fallback: str | None = None
    filler: bool = False


@dataclass(frozen=True, slots=True)
class ReplyLimits:
    max_chars: int
    banned: tuple[str, ...]
    dead_air_s: float
    engine_timeout_s: float
    max_tool_rounds: int


class Reply:
    """Produce and play one reply; pause, resume or cancel it on barge-in."""

    def __init__(self, *, llm: LanguageModel, tts: TextToSpeech, media: MediaPort, tools: dict[str, Tool],
                 messages: list[Message], limits: ReplyLimits, canned: Callable[[str], bytes | None],
                 start_at: float, scripted: str | None = None) -> None:
        self.llm, self.tts, self.media, self.tools = llm, tts, media, tools
        self.messages = messages  # the conversation; tool calls and results are appended to it
        self.limits = limits
        self._canned = canned
        self.start_at = start_at
        self._scripted = scripted
        self.segments: list[Segment] = []
        self.timings = ReplyTimings()
        self.tool_outcomes: list[ToolOutcome] = []
        self.action: CallAction | None = None
        self.false_interruptions = 0  # barge-ins that turned out to be noise or a backchannel
        self._grew = asyncio.Event()
        self._produced = False
        self._resume_at = 0  # segment the player starts from
        self._played: list[tuple[int, int]] = []  # (segment, ms of it the caller heard) per finished play
        self._producer: asyncio.Task[None] | None = None
        self._player: asyncio.Task[PlayResult] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._chars = 0
        self._cursor = 0  # the segment the player is on
        self._halted = False

    # ------------------------------------------------------------ control

    def start(self) -> None:
        self._producer = asyncio.create_task(self._produce())
        self._watchdog = asyncio.create_task(self._guard_dead_air())
        self._play()

    @property
    def audible(self) -> bool:
        """The caller has started hearing this reply."""
        return self.timings.first_frame_sent is not None

    @property
    def player(self) -> asyncio.Task[PlayResult] | None:
        return self._player

    @property
    def player_done(self) -> bool:
        return self._player is None or self._player.done()

    async def pause(self) -> float:
        """Barge-in: stop the audio at the PBX now (returns when the stop was sent); production goes on."""
        self._halted = True
        self._grew.set()
        await self.media.flush()
        stopped = time.monotonic()
        if self._player is not None:
            await asyncio.gather(self._player, return_exceptions=True)
        return stopped

    def resume(self) -> None:
        """After a false interruption: say the cut sentence again, then the rest."""
        if self._played:
            index, heard_ms = self._played[-1]
            whole = index < len(self.segments) and heard_ms >= self._ms(self.segments[index])
            self._resume_at = index + 1 if whole else index
        self._halted = False
        self._play()

    async def cancel(self) -> None:
        """Stop producing and playing (whatever is still running: also used to tidy up at the end)."""
        for task in (self._producer, self._watchdog, self._player):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*(t for t in (self._producer, self._watchdog, self._player) if t is not None),
                             return_exceptions=True)

    # ------------------------------------------------------------ what was said

    def text(self) -> str:
        return " ".join(s.text for s in self.segments if not s.canned)

    def heard_text(self) -> str:
        """The words the caller heard: whole sentences played, and the share of the cut one."""
        heard: dict[int, int] = {}
        for index, ms in self._played:
            heard[index] = max(heard.get(index, 0), ms)
        words: list[str] = []
        for index, segment in enumerate(self.segments):
            if segment.canned:
                continue
            total = self._ms(segment)
            ms = heard.get(index, 0)
            if total and ms >= total:
                words.extend(segment.text.split())
            elif ms > 0 and total:
                parts = segment.text.split()
                words.extend(parts[:int(len(parts) * ms / total)])
        return " ".join(words)

    def _ms(self, segment: Segment) -> int:
        return len(segment.pcm) * 1000 // (2 * self.tts.sample_rate)

    # ------------------------------------------------------------ producing

    async def _produce(self) -> None:
        try:
            if self._scripted is not None:
                await self._say(self._scripted)
            else:
                await self._converse()
        except (EngineError, asyncio.TimeoutError) as exc:
            reason = str(exc) or "timed out"
            log.warning("agent reply failed (%s): saying the fallback", reason)
            self.timings.fallback = reason
            self._add_canned("fallback")
        finally:
            self._produced = True
            self._grew.set()

    async def _converse(self) -> None:
        specs = [t.spec for t in self.tools.values()]
        for _ in range(self.limits.max_tool_rounds + 1):
            splitter = SentenceSplitter()
            calls: list[ToolCall] = []
            text = ""
            async for delta in _within(self.llm.stream(self.messages, specs), self.limits.engine_timeout_s):
                if self.timings.llm_first_token is None:
                    self.timings.llm_first_token = time.monotonic()
                if delta.tool_call is not None:
                    calls.append(delta.tool_call)
                    continue
                text += delta.text
                for sentence in splitter.feed(delta.text):
                    if not await self._speak(sentence):
                        return self._remember(text)
            for sentence in splitter.flush():
                await self._speak(sentence)
            if not calls:
                return self._remember(text)
            self.messages.append(Message("assistant", text, tool_calls=tuple(calls)))
            if await self._run_tools(calls):
                return

    def _remember(self, text: str) -> None:
        self.messages.append(Message("assistant", text.strip()))

    async def _run_tools(self, calls: list[ToolCall]) -> bool:
        """Run the calls; True when one of them ends the conversation (its words are then said)."""
        for call in calls:
            outcome = await run_tool(self.tools, call)
            self.tool_outcomes.append(outcome)
            self.messages.append(Message("tool", outcome.content(), tool_call_id=call.id, name=call.name))
            if outcome.action is not None and self.action is None:
                self.action = outcome.action
        if self.action is not None:
            if self.action.say:
                await self._speak(self.action.say)
            return True
        return False

    async def _speak(self, sentence: str) -> bool:
        """Guardrails, then TTS. False once the reply has said enough."""
        lowered = sentence.lower()
        if any(topic in lowered for topic in self.limits.banned):
            log.info("agent reply: dropped a sentence on a banned topic")
            return True
        if self._chars and self._chars + len(sentence) > self.limits.max_chars:
            return False
        self._chars += len(sentence)
        await self._say(sentence)
        return True

    async def _say(self, text: str) -> None:
        segment = Segment(text)
        self.segments.append(segment)
        async for chunk in _within(self.tts.synthesize(text), self.limits.engine_timeout_s):
            if self.timings.tts_first_audio is None:
                self.timings.tts_first_audio = time.monotonic()
            if chunk.sample_rate != self.tts.sample_rate:
                raise EngineError(f"TTS {self.tts.name} sent {chunk.sample_rate} Hz audio, "
                                  f"not its declared {self.tts.sample_rate} Hz")
            segment.pcm.extend(chunk.pcm)
            self._grew.set()
        segment.complete = True
        self._grew.set()

    def _add_canned(self, name: str) -> None:
        pcm = self._canned(name)
        if pcm is None:
            return
        for segment in self.segments:  # a sentence cut mid-synthesis ends where its audio ends
            segment.complete = True
        self.segments.append(Segment(name, bytearray(pcm), complete=True, canned=True))
        self._grew.set()

    async def _guard_dead_air(self) -> None:
        """Say a filler when nothing is audible `dead_air_s` after the caller stopped."""
        await asyncio.sleep(max(0.0, self.start_at + self.limits.dead_air_s - time.monotonic()))
        if self.audible or self._produced or any(s.pcm for s in self.segments):
            return
        pcm = self._canned("filler")
        if pcm is not None:
            self.timings.filler = True
            self.segments.insert(self._cursor, Segment("filler", bytearray(pcm), complete=True, canned=True))
            self._grew.set()

    # ------------------------------------------------------------ playing

    def _play(self) -> None:
        self._player = asyncio.create_task(self._run_player())

    async def _run_player(self) -> PlayResult:
        result = await self.media.play_stream(self._audio(), self.tts.sample_rate, self._on_first_frame)
        self._settle(result)
        return result

    def _on_first_frame(self, at: float) -> None:
        if self.timings.first_frame_sent is None:
            self.timings.first_frame_sent = at

    async def _audio(self) -> AsyncIterator[bytes]:
        """The reply's audio from the resume point, as it is produced; records each position."""
        self._cursor, offset = self._resume_at, 0
        while not self._halted:
            if self._cursor >= len(self.segments):
                if self._produced:
                    return
                await self._wait_growth()
                continue
            segment = self.segments[self._cursor]
            if offset < len(segment.pcm):
                chunk = bytes(segment.pcm[offset:])
                offset += len(chunk)
                yield chunk
            elif segment.complete:
                self._cursor, offset = self._cursor + 1, 0
            else:
                await self._wait_growth()

    async def _wait_growth(self) -> None:
        self._grew.clear()
        await self._grew.wait()

    def _settle(self, result: PlayResult) -> None:
        """Map a finished play's heard milliseconds onto the segments it covered."""
        left = result.played_ms
        for index in range(self._resume_at, len(self.segments)):
            ms = self._ms(self.segments[index])
            heard = min(ms, left)
            self._played.append((index, heard))
            left -= heard
            if heard < ms or left <= 0:
                break

    def annotate(self) -> dict[str, Any]:
        detail: dict[str, Any] = {}
        if self.tool_outcomes:
            detail["tool_calls"] = [o.detail() for o in self.tool_outcomes]
        if self.timings.fallback:
            detail["fallback"] = self.timings.fallback
        if self.timings.filler:
            detail["filler"] = True
        if self.false_interruptions:
            detail["false_interruptions"] = self.false_interruptions
        return detail


T = TypeVar("T")


async def _within(items: AsyncIterator[T], timeout_s: float) -> AsyncIterator[T]:
    """An engine's stream, failing with TimeoutError when it stalls for `timeout_s` between items."""
    iterator = aiter(items)
    while True:
        try:
            item = await asyncio.wait_for(anext(iterator), timeout_s)
        except StopAsyncIteration:
            return
        yield item
