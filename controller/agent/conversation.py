"""The voice agent on one call: listen, decide the caller is done, reply, yield to barge-in.

One listener task turns caller frames into voice events (VAD -> VoiceTracker) and feeds the
recogniser while the caller talks. The conversation loop takes a caller turn (a pause ends it
when the transcript looks complete, a long pause ends it anyway), then plays a Reply while
watching for barge-in. Every turn becomes a TurnRecord with its latencies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from controller import prompts
from controller.agent.engines import (
    EngineError, LanguageModel, Message, SpeechToText, TextToSpeech, VadStream, VoiceActivityDetector,
)
from controller.agent.grounded import KNOWLEDGE, GroundedModel, Intent
from controller.agent.knowledge import Knowledge
from controller.agent.recognizer import Recognizer
from controller.agent.reply import Reply, ReplyLimits
from controller.agent.tools import EndCall, Tool, TransferCall
from controller.agent.turns import (
    SpeechEnded, SpeechPaused, SpeechStarted, TurnSettings, VoiceEvent, VoiceTracker, looks_complete, words_of,
)
from controller.audio import Resampler
from controller.call import Call
from controller.records.cdr import TurnRecord

log = logging.getLogger(__name__)

PREROLL_FRAMES = 15  # 300 ms of audio before the VAD fired, so the first syllable reaches STT
BACKCHANNELS = frozenset({"mhm", "mm", "hmm", "uh huh", "uh-huh", "mm-hmm", "okay", "ok", "yeah", "yes", "right",
                          "sure", "yep", "alright", "i see"})


@dataclass(frozen=True, slots=True)
class BargeIn:
    """When caller speech interrupts the agent. A pause (flush) comes first; words decide the rest."""

    enabled: bool = True
    guard_ms: float = 200.0        # caller speech this soon after agent audio starts does not interrupt
    classify_ms: float = 700.0     # this much caller speech counts as a real interruption without a pause
    backchannel_interrupts: bool = False
    backchannels: frozenset[str] = BACKCHANNELS
    resume_after_false: bool = True


@dataclass(frozen=True)
class AgentConfig:
    """Everything a flow sets for its agent; the defaults suit a phone line."""

    system_prompt: str
    greeting: str = ""
    tools: tuple[Tool, ...] = ()
    knowledge: Knowledge | None = None
    turn: TurnSettings = TurnSettings()
    barge_in: BargeIn = BargeIn()
    max_reply_chars: int = 360
    banned_topics: tuple[str, ...] = ()
    refusal: str = "Sorry, I can't help with that topic."
    filler: str = "One moment please."
    fallback: str = "Sorry, I'm having trouble right now. Could you say that again?"
    dont_know: str = "Sorry, I don't know that one. I can connect you to a colleague if you like."
    dead_air_s: float = 1.5        # nothing audible this long after the caller stopped: say the filler
    engine_timeout_s: float = 6.0  # an engine silent this long mid-reply: say the fallback
    idle_timeout_s: float = 20.0   # caller silent this long: the conversation ends
    max_turns: int = 40
    max_tool_rounds: int = 3
    intents: tuple[Intent, ...] = ()  # for the embedded grounded model; other models get tools + knowledge


@dataclass(frozen=True, slots=True)
class Engines:
    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    vad: VoiceActivityDetector

    def names(self) -> dict[str, str]:
        return {"stt": self.stt.name, "llm": self.llm.name, "tts": self.tts.name, "vad": self.vad.name}


@dataclass
class AgentResult:
    """How the conversation ended: end_call | transfer | caller_hangup | idle | max_turns | media_lost."""

    reason: str
    transfer_to: str | None = None
    turns: list[TurnRecord] = field(default_factory=list)
    barge_ins: int = 0
    false_interruptions: int = 0


@dataclass(frozen=True, slots=True)
class _CallerTurn:
    text: str
    confidence: float | None
    onset_at: float
    speech_end_at: float
    endpoint_at: float  # when the pause that ended the turn was noticed
    final_at: float


class _MediaEnded(Exception):
    pass


class Conversation:
    """Runs one agent conversation on a call; `on_turn` sees each TurnRecord as it is made."""

    def __init__(self, call: Call, config: AgentConfig, engines: Engines,
                 on_turn: Callable[[TurnRecord], None] | None = None) -> None:
        self.call = call
        self.config = config
        self.engines = engines
        self.on_turn = on_turn
        self.result = AgentResult("caller_hangup")
        self.messages: list[Message] = [Message("system", config.system_prompt)]
        self._tools = {t.spec.name: t.on(call) for t in config.tools}
        self._llm = engines.llm
        grounded = isinstance(engines.llm, GroundedModel)
        if grounded or (config.intents and not engines.llm.calls_tools):
            # the flow's intents decide first; a small model only gets what they do not cover
            self._llm = GroundedModel(list(config.intents), config.dont_know, then=None if grounded else engines.llm)
        self._events: asyncio.Queue[VoiceEvent | None] = asyncio.Queue()
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_FRAMES)
        self._capturing = False
        self._held: list[bytes] = []  # audio of a pause, fed to STT only if the caller goes on
        self._canned: dict[str, bytes] = {}
        self._stt: Recognizer | None = None
        self._vad: VadStream | None = None
        self._tracker = VoiceTracker(config.turn, 0.032)
        self._carry = ""  # caller words of a turn whose reply was abandoned when they went on talking
        self._pending_onset = 0.0  # onset of the caller speech that arrived during a reply
        self._endpoint_at = 0.0

    # ------------------------------------------------------------ the conversation

    async def run(self) -> AgentResult:
        rate = self.call.media.sample_rate
        self._vad = await self.engines.vad.open(rate)
        self._tracker = VoiceTracker(self.config.turn, self._vad.window_ms / 1000)
        self._stt = Recognizer(self.engines.stt, rate, self.call.info.uuid)
        await self._stt.open()
        listener = asyncio.create_task(self._listen())
        self.result.reason = ""
        try:
            await self._prepare_canned()
            if self.config.greeting:
                await self._agent_turn(None, scripted=self.config.greeting)
            while not self.result.reason:
                if len(self.result.turns) >= self.config.max_turns * 2:
                    self.result.reason = "max_turns"
                    break
                heard = await self._caller_turn()
                if heard is not None:
                    await self._agent_turn(heard)
        except _MediaEnded:
            self.result.reason = "caller_hangup" if self.call.ended.is_set() else "media_lost"
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await self._stt.close()
            self._vad.close()
        return self.result

    async def _prepare_canned(self) -> None:
        """Filler and fallback audio made now: when they are needed an engine may be the thing that failed."""
        for name, text in (("filler", self.config.filler), ("fallback", self.config.fallback),
                           ("refusal", self.config.refusal)):
            try:
                pcm = bytearray()
                async for chunk in self.engines.tts.synthesize(text):
                    pcm.extend(chunk.pcm)
                self._canned[name] = bytes(pcm)
            except EngineError as exc:
                log.warning("call %s: could not pre-render the %s (%s)", self.call.info.uuid, name, exc)
        if "fallback" not in self._canned:
            sorry, rate = prompts.load("sorry")
            self._canned["fallback"] = Resampler(rate, self.engines.tts.sample_rate).convert(sorry)

    # ------------------------------------------------------------ listening

    async def _listen(self) -> None:
        assert self._vad is not None
        try:
            async for frame in self.call.media.frames():
                self._preroll.append(frame.pcm)
                if self._capturing:
                    await self._capture(frame.pcm)
                for probability in self._vad.push(frame.pcm):
                    event = self._tracker.push(probability, frame.received)
                    if event is not None:
                        await self._on_voice(event)
        finally:
            self._events.put_nowait(None)

    async def _capture(self, pcm: bytes) -> None:
        """Feed the recogniser; during a pause hold the audio back, so the draft transcript made
        at the pause is also the final one (the recogniser's cache hits) unless speech resumes."""
        if self._tracker.paused:
            self._held.append(pcm)
            return
        if self._held:
            for held in self._held:
                await self._stt.feed(held)
            self._held.clear()
        await self._stt.feed(pcm)

    async def _on_voice(self, event: VoiceEvent) -> None:
        if isinstance(event, SpeechStarted):
            if not self._capturing:
                self._capturing = True
                for pcm in self._preroll:
                    await self._stt.feed(pcm)
        self._events.put_nowait(event)

    async def _next_event(self, timeout: float | None) -> VoiceEvent | None:
        """The next voice event; None on timeout; _MediaEnded when the caller's audio stopped."""
        try:
            event = await asyncio.wait_for(self._events.get(), timeout)
        except asyncio.TimeoutError:
            return None
        if event is None:
            self._events.put_nowait(None)  # every later wait sees the end too
            raise _MediaEnded
        return event

    async def _caller_turn(self) -> _CallerTurn | None:
        """Wait for the caller to say something and finish; None when they stay silent too long."""
        assert self._stt is not None
        while True:
            if self._tracker.paused:  # the pause came while we were busy (judging a barge-in)
                event: VoiceEvent | None = SpeechPaused(self._tracker.last_voiced_at)
            else:
                timeout = None if self._tracker.speaking else self.config.idle_timeout_s
                event = await self._next_event(timeout)
            if event is None:
                self.result.reason = "idle"
                return None
            if not isinstance(event, SpeechPaused | SpeechEnded):
                continue
            self._endpoint_at = time.monotonic()
            draft = await self._stt.result(final=False)
            if self._tracker.speaking and not self._tracker.paused:
                continue  # they went on talking while we looked
            if not draft.text.strip():
                self._drop_utterance()
                failure = self._stt.take_failure()
                if failure is not None:  # the caller said something we lost: ask again
                    await self._agent_turn(None, scripted=self.config.fallback, fallback=f"stt: {failure}")
                continue
            if isinstance(event, SpeechEnded) or looks_complete(draft.text):
                return await self._commit(event.speech_end_at)
            if not await self._resumes_within(self.config.turn.long_pause_ms - self.config.turn.pause_ms):
                self._endpoint_at = time.monotonic()  # the long pause ended this turn
                return await self._commit(event.speech_end_at)

    async def _resumes_within(self, ms: float) -> bool:
        deadline = time.monotonic() + ms / 1000
        while (left := deadline - time.monotonic()) > 0:
            event = await self._next_event(left)
            if event is None:
                return False
            if not isinstance(event, SpeechPaused | SpeechEnded):
                return True
        return False

    async def _commit(self, speech_end_at: float) -> _CallerTurn:
        assert self._stt is not None
        final = await self._stt.result(final=True)
        final_at = time.monotonic()
        self._capturing = False
        self._held.clear()
        self._tracker.end()
        text = f"{self._carry} {final.text}".strip() if self._carry else final.text.strip()
        self._carry = ""
        endpoint_at = max(self._endpoint_at, speech_end_at)
        turn = _CallerTurn(text, final.confidence, self._tracker.onset_at, speech_end_at, endpoint_at, final_at)
        self._record(TurnRecord(
            pbx=self.call.info.pbx, call_uuid=self.call.info.uuid, seq=len(self.result.turns), speaker="caller",
            text=text, heard_text=None, started_at=_wall(turn.onset_at), ended_at=_wall(speech_end_at),
            confidence=final.confidence, engines={"stt": self.engines.stt.name}))
        return turn

    def _drop_utterance(self) -> None:
        assert self._stt is not None
        self._stt.clear()
        self._capturing = False
        self._held.clear()
        self._tracker.end()

    # ------------------------------------------------------------ replying

    async def _agent_turn(self, heard: _CallerTurn | None, scripted: str | None = None,
                          fallback: str | None = None) -> None:
        started = time.monotonic()
        if heard is not None:
            scripted = self._screen(heard.text)
        reply = Reply(llm=self._llm, tts=self.engines.tts, media=self.call.media, tools=self._tools,
                      messages=self.messages, limits=self._limits(), canned=self._canned.get,
                      start_at=heard.speech_end_at if heard else started, scripted=scripted)
        if scripted is not None:
            self.messages.append(Message("assistant", scripted))
        reply.timings.fallback = fallback
        barge_in_ms = None
        reply.start()
        while not await self._played_or_onset(reply):
            if not reply.audible:
                # the caller went on talking before we said anything: their turn goes on
                self._carry = heard.text if heard is not None else ""
                await reply.cancel()
                self._forget_exchange()
                return
            if not await self._barges_in(reply):
                continue
            onset = self._pending_onset
            stopped = await reply.pause()
            if await self._is_real_interruption():
                barge_in_ms = (stopped - onset) * 1000
                self.result.barge_ins += 1
                await reply.cancel()
                break
            self.result.false_interruptions += 1
            reply.false_interruptions += 1
            self._drop_utterance()
            if not self.config.barge_in.resume_after_false:
                await reply.cancel()
                break
            reply.resume()
        await reply.cancel()  # the dead-air watchdog, or production the caller no longer needs
        self._finish_reply(reply, heard, started, barge_in_ms)

    async def _played_or_onset(self, reply: Reply) -> bool:
        """True when the reply has played out; False when caller speech started first."""
        while True:
            player = reply.player
            assert player is not None
            getter = asyncio.ensure_future(self._events.get())
            done, _ = await asyncio.wait({player, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                return True
            event = getter.result()
            if event is None:
                self._events.put_nowait(None)
                await reply.cancel()
                raise _MediaEnded
            if isinstance(event, SpeechStarted):
                self._pending_onset = event.onset_at
                return False

    async def _barges_in(self, reply: Reply) -> bool:
        """Caller speech interrupts once the guard window after the agent's first audio has passed;
        speech that began inside the window interrupts if it is still going when the window ends."""
        settings = self.config.barge_in
        if not settings.enabled:
            return False
        guard_end = (reply.timings.first_frame_sent or 0.0) + settings.guard_ms / 1000
        if guard_end > time.monotonic():
            await asyncio.sleep(guard_end - time.monotonic())
        return self._tracker.speaking and not self._tracker.paused and not reply.player_done

    async def _is_real_interruption(self) -> bool:
        """Listen until the caller pauses (or has talked long enough), then judge by their words."""
        assert self._stt is not None
        limit = self.config.barge_in.classify_ms / 1000
        deadline = self._pending_onset + limit
        while self._tracker.speaking and not self._tracker.paused:
            event = await self._next_event(max(deadline - time.monotonic(), 0.0))
            if event is None or isinstance(event, SpeechPaused | SpeechEnded):
                break
        draft = await self._stt.result(final=False)
        words = " ".join(words_of(draft.text))
        if not words:
            return False
        settings = self.config.barge_in
        return settings.backchannel_interrupts or words not in settings.backchannels

    def _forget_exchange(self) -> None:
        """Drop the abandoned exchange; the caller's words come back with their next turn."""
        while self.messages and self.messages[-1].role != "user":
            self.messages.pop()
        if self.messages and self.messages[-1].role == "user":
            self.messages.pop()

    def _screen(self, text: str) -> str | None:
        """Guardrail before the model: banned topics get the refusal; otherwise ground the question."""
        lowered = text.lower()
        if any(topic in lowered for topic in self.config.banned_topics):
            self.messages.append(Message("user", text))
            return self.config.refusal
        self.messages[:] = [m for m in self.messages if m.name != KNOWLEDGE]
        if self.config.knowledge is not None:
            facts = self.config.knowledge.search(text)
            if facts:
                self.messages.append(Message("system", "\n".join(f.answer for _, f in facts), name=KNOWLEDGE))
        self.messages.append(Message("user", text))
        return None

    def _limits(self) -> ReplyLimits:
        c = self.config
        return ReplyLimits(c.max_reply_chars, tuple(t.lower() for t in c.banned_topics), c.dead_air_s,
                           c.engine_timeout_s, c.max_tool_rounds)

    def _finish_reply(self, reply: Reply, heard: _CallerTurn | None, started: float,
                      barge_in_ms: float | None) -> None:
        t = reply.timings
        base = heard.speech_end_at if heard is not None else None

        def since(at: float | None) -> float | None:
            return round((at - base) * 1000, 1) if at is not None and base is not None else None

        detail = reply.annotate()
        if heard is not None:
            detail["endpoint_ms"] = since(heard.endpoint_at)
        interrupted = barge_in_ms is not None
        self._record(TurnRecord(
            pbx=self.call.info.pbx, call_uuid=self.call.info.uuid, seq=len(self.result.turns), speaker="agent",
            text=reply.text(), heard_text=reply.heard_text(), started_at=_wall(t.first_frame_sent or started),
            ended_at=datetime.now(UTC), interrupted=interrupted,
            stt_ms=since(heard.final_at) if heard is not None else None,
            llm_first_token_ms=since(t.llm_first_token), tts_first_audio_ms=since(t.tts_first_audio),
            voice_to_voice_ms=since(t.first_frame_sent), barge_in_ms=round(barge_in_ms, 1) if interrupted else None,
            engines=self.engines.names(), detail=detail))
        if interrupted:
            self._remember_heard(reply.heard_text())
        action = reply.action
        if isinstance(action, EndCall) and not interrupted:
            self.result.reason = "end_call"
        elif isinstance(action, TransferCall):
            self.result.reason, self.result.transfer_to = "transfer", action.destination

    def _remember_heard(self, heard: str) -> None:
        """The model's memory of an interrupted reply is what the caller heard of it."""
        for index in range(len(self.messages) - 1, -1, -1):
            message = self.messages[index]
            if message.role == "user":
                break
            if message.role == "assistant" and not message.tool_calls:
                self.messages[index] = Message("assistant", heard)
                return
        self.messages.append(Message("assistant", heard))

    def _record(self, turn: TurnRecord) -> None:
        self.result.turns.append(turn)
        if self.on_turn is not None:
            self.on_turn(turn)


def _wall(monotonic_at: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=time.monotonic() - monotonic_at)
