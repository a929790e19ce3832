"""The call as the verbs see it (its audio, engines, keys and end), and waiting on it without outliving it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

from controller.call import CallGone, CallInfo, CommandFailed, MediaPort, PlayResult

if TYPE_CHECKING:
    from controller.agent.conversation import Engines
    from controller.verbs.keys import Keypad


class Line(Protocol):
    """What a verb needs of a call; AdapterCall provides it."""

    info: CallInfo
    media: MediaPort
    agent_engines: Engines | None
    keypad: Keypad
    hangup_cause: str

    @property
    def ended(self) -> asyncio.Event: ...

    async def play_file(self, path: str) -> PlayResult: ...

    async def stop_playback(self) -> None: ...


def gone(line: Line) -> CallGone:
    return CallGone(line.hangup_cause or "call ended")


def engines(line: Line, verb: str) -> Engines:
    """The call's AI engines, or a clear error naming the verb that needed them."""
    if line.agent_engines is None:
        raise CommandFailed(f"{verb} needs the call's AI engines, and none are configured")
    return line.agent_engines


async def first_of(line: Line, waits: dict[str, Awaitable[object]], timeout: float | None) -> str | None:
    """The name of the first of `waits` to finish (in the given order on a tie); None after `timeout`.

    CallGone as soon as the call ends. Whatever has not finished is cancelled.
    """
    tasks = {asyncio.ensure_future(waitable): name for name, waitable in waits.items()}
    ended = asyncio.ensure_future(line.ended.wait())
    try:
        if line.ended.is_set():
            raise gone(line)
        done, _ = await asyncio.wait({*tasks, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*tasks, ended):
            task.cancel()
    for task, name in tasks.items():
        if task in done:
            task.result()
            return name
    if ended in done:
        raise gone(line)
    return None
