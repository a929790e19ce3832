"""The embedded default language model: a grounded dialogue manager, no weights, no network.

It answers from what the agent grounds every model in (the flow's intents, tools and the
knowledge facts the agent adds to the conversation) and never invents anything: a matched
intent calls its tool (asking for a missing slot first), a matched fact is read out, anything
else gets the flow's fallback. It streams word by word like a model, so the rest of the
pipeline is exercised exactly as with a hosted LLM.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from controller.agent.engines import LanguageModel, LlmDelta, Message, ToolCall, ToolSpec
from controller.agent.knowledge import keywords

KNOWLEDGE = "knowledge"
_UNCOVERED = "\x00uncovered"  # no intent or fact answers this: the fallback (or the small model) does  # Message.name of the system message that carries the facts for this turn
_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "to": "2", "too": "2", "three": "3",
                "four": "4", "for": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "ate": "8",
                "nine": "9"}
_TOKEN = re.compile(r"[a-z]+|\d+")


@dataclass(frozen=True, slots=True)
class Intent:
    """Something callers ask for. `tool` is called with `slot` (digits heard) when it needs one;
    `ask` requests the slot; `reply` answers directly when there is no tool."""

    name: str
    examples: tuple[str, ...]
    tool: str | None = None
    slot: str | None = None
    ask: str = ""
    reply: str = ""


def spoken_digits(text: str) -> str:
    """The longest run of digits in text, spoken ("four five seven") or written ("45-7")."""
    best = run = ""
    for token in _TOKEN.findall(text.lower().replace("-", " ")):
        digit = token if token.isdigit() else _DIGIT_WORDS.get(token)
        if digit is None:
            best, run = max(best, run, key=len), ""
        else:
            run += digit
    return max(best, run, key=len)


class GroundedModel:
    """Intents and facts first; what neither covers goes to `then` (a small model), else the fallback."""

    name = "grounded"
    calls_tools = True

    def __init__(self, intents: list[Intent], fallback: str, min_match: float = 0.5,
                 then: LanguageModel | None = None) -> None:
        self.intents = intents
        self.fallback = fallback
        self.then = then
        self.min_match = min_match
        self._examples = [(intent, set(keywords(ex))) for intent in intents for ex in intent.examples]

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LlmDelta]:
        decision = self._decide(messages, {t.name for t in tools})
        if isinstance(decision, ToolCall):
            yield LlmDelta(tool_call=decision)
            return
        if decision is _UNCOVERED:
            if self.then is not None:
                async for delta in self.then.stream(messages, tools):
                    yield delta
                return
            decision = self.fallback
        for index, word in enumerate(decision.split(" ")):
            yield LlmDelta(text=word if index == 0 else " " + word)

    def _decide(self, messages: list[Message], tools: set[str]) -> str | ToolCall:
        last = messages[-1] if messages else Message("user")
        if last.role == "tool":
            return _reply_from_tool(last.content)
        heard = last.content
        pending = self._pending(messages)
        if pending is not None and (call := self._call(pending, heard, tools, len(messages))) is not None:
            return call
        intent = self._match(heard)
        if intent is not None:
            if intent.tool and intent.tool in tools:
                return self._call(intent, heard, tools, len(messages)) or intent.ask or _UNCOVERED
            if intent.reply:
                return intent.reply
        facts = next((m.content for m in reversed(messages) if m.role == "system" and m.name == KNOWLEDGE), "")
        return facts.splitlines()[0] if facts else _UNCOVERED

    def _pending(self, messages: list[Message]) -> Intent | None:
        """The intent whose slot question the agent asked last."""
        asked = next((m.content for m in reversed(messages[:-1]) if m.role == "assistant"), "")
        return next((i for i in self.intents if i.ask and i.ask == asked.strip()), None)

    def _match(self, heard: str) -> Intent | None:
        words = set(keywords(heard))
        best, score = None, 0.0
        for intent, example in self._examples:
            overlap = len(words & example) / max(len(example), 1)
            if overlap > score:
                best, score = intent, overlap
        return best if score >= self.min_match else None

    def _call(self, intent: Intent, heard: str, tools: set[str], n: int) -> ToolCall | None:
        if not intent.tool or intent.tool not in tools:
            return None
        arguments: dict[str, str] = {}
        if intent.slot:
            digits = spoken_digits(heard)
            if len(digits) < 3:
                return None
            arguments[intent.slot] = digits
        return ToolCall(f"call_{n}", intent.tool, arguments)


def _reply_from_tool(content: str) -> str:
    try:
        result = json.loads(content)
    except ValueError:
        return content
    if isinstance(result, dict):
        if result.get("error"):
            return "Sorry, I couldn't do that just now."
        return str(result.get("say") or result.get("answer") or "Done.")
    return str(result)
