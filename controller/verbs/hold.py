"""Music on hold: a loop played by voxgate through the media port, in the background, until unhold.

Nothing changes at the PBX: the caller stays connected and voxgate plays the music. A verb that
speaks while the call is held pauses the music, which picks up where it was afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from controller.audio import Pcm
from controller.call import CommandFailed
from controller.verbs.line import Line
from controller.verbs.music import hold_music
from controller.verbs.play import Source, load_audio
from controller.verbs.playout import quietly

CHUNK_S = 1.0
LEAD_S = 1.0  # music handed to the port ahead of real time; a stop flushes it
RESTART_S = 0.2  # the music was cut by something else (a flush): start it again after this


async def hold_audio(music: Source | None, sample_rate: int) -> Pcm:
    """The music to loop: the built-in tune at the call's rate, or a WAV (file or URL) voxgate can read."""
    if music is None:
        return await asyncio.to_thread(hold_music, sample_rate)
    pcm = await load_audio(music)
    if pcm is None:
        raise CommandFailed(f"hold music must be a WAV file or http(s) URL voxgate can read: {music}")
    if len(pcm.data) < 2:
        raise ValueError("hold music is empty")
    return pcm


class HoldMusic:
    """One call's music on hold; stop() ends it, pause()/resume() make room for other audio."""

    def __init__(self, line: Line, music: Pcm) -> None:
        self._line = line
        self._music = music
        self._pos = 0
        self._pauses = 0
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    @property
    def playing(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"hold-{self._line.info.uuid}")

    async def stop(self) -> None:
        self._stopped = True
        await self._halt()

    async def pause(self) -> None:
        self._pauses += 1
        await self._halt()

    def resume(self) -> None:
        self._pauses -= 1
        if self._pauses == 0 and not self._stopped and not self._line.ended.is_set():
            self.start()

    async def _halt(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await quietly(self._line.media.flush)

    async def _loop(self) -> None:
        media = self._line.media
        while not self._line.ended.is_set():
            await media.play_stream(self._chunks(), self._music.sample_rate)
            if not media.connected:
                return
            await asyncio.sleep(RESTART_S)

    async def _chunks(self) -> AsyncIterator[bytes]:
        """The loop, endlessly, a second at a time, never more than LEAD_S ahead of real time."""
        data = self._music.data
        step = int(CHUNK_S * self._music.sample_rate) * 2
        started, sent = time.monotonic(), 0.0
        while True:
            ahead = sent - (time.monotonic() - started)
            if ahead > LEAD_S:
                await asyncio.sleep(ahead - LEAD_S)
            chunk = bytearray()
            while len(chunk) < step:
                piece = data[self._pos:self._pos + step - len(chunk)]
                chunk += piece
                self._pos = (self._pos + len(piece)) % len(data)
            yield bytes(chunk)
            sent += CHUNK_S
