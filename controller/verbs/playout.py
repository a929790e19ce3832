"""Playing a prompt the caller may cut short: a key or the start of speech stops its audio at once.

So does cancelling the verb: the audio is flushed at the PBX and the media port stays usable
for whatever plays next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from controller.call import CallGone, CommandFailed, PlayResult, PromptResult
from controller.verbs.line import Line, gone
from controller.verbs.listen import Ears

log = logging.getLogger(__name__)

STOP_WAIT_S = 2.0  # a stopped playback reports what was heard within this, or counts as unknown

Start = Callable[[], Awaitable[PlayResult]]
Stop = Callable[[], Awaitable[None]]


async def prompt(line: Line, start: Start, stop: Stop, *, interruptible: bool, ears: Ears | None = None) -> PromptResult:
    """Run the playback `start` makes until it ends, a key is pressed or the caller talks (when
    interruptible); `stop` cuts its audio. `ears` listens for speech (made here when not given).

    A key already waiting (typed ahead) skips the prompt; the key stays for the next reader.
    """
    if not interruptible:
        return await _watch(line, start, stop, {})
    if line.keypad.pending:
        return PromptResult(0, 0, "dtmf")
    if ears is None and line.agent_engines is not None:
        async with Ears(line) as own:
            return await prompt(line, start, stop, interruptible=True, ears=own)
    watchers: dict[str, Callable[[], Awaitable[object]]] = {"dtmf": line.keypad.pressed}
    if ears is not None and ears.has_vad:
        if ears.started.is_set():
            return PromptResult(0, 0, "speech")
        watchers["speech"] = ears.speech_started
    return await _watch(line, start, stop, watchers)


async def _watch(line: Line, start: Start, stop: Stop, watchers: dict[str, Callable[[], Awaitable[object]]]
                 ) -> PromptResult:
    if line.ended.is_set():
        raise gone(line)
    player = asyncio.ensure_future(start())
    tasks = {asyncio.ensure_future(watch()): name for name, watch in watchers.items()}
    ended = asyncio.ensure_future(line.ended.wait())
    try:
        done, _ = await asyncio.wait({player, ended, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        if player in done:
            return _played(line, player.result())
        if ended in done:
            raise gone(line)
        cause = next(name for task, name in tasks.items() if task in done)
        await quietly(stop)
        try:
            heard = await asyncio.wait_for(asyncio.shield(player), STOP_WAIT_S)
        except TimeoutError:
            return PromptResult(0, 0, cause)
        return PromptResult(heard.played_ms, heard.total_ms, cause)
    finally:
        for task in (*tasks, ended):
            task.cancel()
        if not player.done():  # cancelled, hung up, or the playback would not stop
            await quietly(stop)
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)


def _played(line: Line, result: PlayResult) -> PromptResult:
    if result.interrupted and (line.ended.is_set() or not line.media.connected):
        raise gone(line)
    return PromptResult(result.played_ms, result.total_ms, "stopped" if result.interrupted else None)


async def quietly(stop: Stop) -> None:
    """Stop the audio; on a call that is going away that may fail, and nothing is left to stop."""
    try:
        await stop()
    except (CallGone, CommandFailed, ConnectionError) as exc:
        log.debug("stopping playback: %s", exc)
