"""The dashboard in a real headless Chromium: sign in through the form, see the live, recent and daily
figures of calls placed through the simulator, open a conversation, sign out; and check the screenshots
a person would see (right size, not blank, the charts drawn in their colours)."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np

from controller.records.store import list_turns
from tests.api.conftest import TOKEN
from tests.dashboard.cdp import Chromium, Page, read_png
from tests.dashboard.conftest import AGENT_CALL, AGENT_CALLER, FINISHED, GREETING, HEARD, REPLY, write_history

WIDTH, HEIGHT = 1280, 900
CALLS_BLUE, CONTAINED_GREEN, P95_RED, STT_VIOLET = (0x25, 0x63, 0xEB), (0x16, 0xA3, 0x4A), (0xDC, 0x26, 0x26), \
    (0x8B, 0x5C, 0xF6)
RENDERED = "['live', 'recent', 'daily'].every((part) => document.body && document.body.dataset[part] === 'ok')"


async def test_a_manager_signs_in_and_sees_live_recent_and_daily_figures_and_a_conversation(board, tmp_path):
    await write_history(board.database_url)  # four calls over earlier days
    agent, finished = await asyncio.gather(
        board.place(AGENT_CALL, flow="agent", caller_id_number=AGENT_CALLER, destination="5000"),
        board.place(FINISHED, caller_id_number="15551230043", destination="7001"))
    held = await board.place(caller_id_number="15551230042", destination="7000")
    await board.live(held.uuid)
    await board.stored(finished.uuid)
    agent_cdr = await board.stored(agent.uuid, timeout=60)
    spoken = [t for t in list_turns(board.database_url, agent.uuid) if t["speaker"] == "agent"]
    assert [t["text"] for t in spoken] == [GREETING, REPLY], agent.script_error
    assert spoken[1]["voice_to_voice_ms"] > 0  # a reply to the caller: timed

    started = time.perf_counter()
    async with Chromium(WIDTH, HEIGHT) as browser:
        page = await browser.new_page()
        await page.navigate(board.root)
        await page.wait_for("document.querySelector('input[name=token]') !== null")
        assert await page.evaluate("document.getElementById('live') === null")  # the form, and no data
        await page.click("#token")
        await page.insert_text(TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for(RENDERED)
        assert await page.evaluate("location.pathname") == "/dashboard" and TOKEN not in await page.evaluate(
            "location.href")
        assert await page.evaluate("document.cookie") == ""  # HttpOnly: the session is out of the script's reach

        live = await page.evaluate("document.getElementById('live').innerText")
        assert "15551230042" in live and "7000" in live and "hold" in live and "talking" in live
        assert await page.evaluate("document.getElementById('live-count').textContent") == "1"
        recent = await page.evaluate("document.getElementById('recent').innerText")
        assert AGENT_CALLER in recent and "15551230043" in recent and agent_cdr["outcome"] in recent
        assert "15551230042" not in recent  # still live: no record yet
        totals = await page.evaluate("[...document.querySelectorAll('#totals b')].map((b) => b.textContent)")
        assert totals[0] == "6"  # 4 earlier + the agent call + the finished one
        bars = await page.evaluate("[...document.querySelectorAll('#chart-calls rect.calls title')]"
                                   ".map((t) => t.textContent)")
        assert len(bars) == 3 and bars[-1].endswith(": 2 calls")  # five days ago, two days ago, today
        assert await page.evaluate("document.querySelectorAll('#chart-latency circle.p95').length") == 3

        overview = await _screenshot(page, tmp_path / "dashboard.png")
        assert _count(overview, await page.box("#chart-calls"), CALLS_BLUE) > 300
        assert _count(overview, await page.box("#chart-outcomes"), CONTAINED_GREEN) > 300
        assert _count(overview, await page.box("#chart-latency"), P95_RED) > 20

        await page.click(f'a[href="#/call/{agent.uuid}"]')
        await page.wait_for("document.body.dataset.call === 'ok'")
        transcript = await page.evaluate("document.getElementById('transcript').innerText")
        for said in (GREETING, HEARD, REPLY):
            assert said in transcript
        rows = await page.evaluate("[...document.querySelectorAll('#latency tbody tr')]"
                                   ".map((tr) => [...tr.cells].map((td) => td.textContent))")
        assert [row[2:6] for row in rows] == [
            [_ms(t[key]) for key in ("stt_ms", "llm_first_token_ms", "tts_first_audio_ms", "voice_to_voice_ms")]
            for t in spoken]  # the greeting's row has none: it answers nobody
        conversation = await _screenshot(page, tmp_path / "call.png")
        assert _count(conversation, await page.box("#transcript"), STT_VIOLET) > 10  # the latency waterfalls

        await page.evaluate("location.hash = '#/'")
        await page.wait_for("document.getElementById('live-count').textContent === '1'")
        await board.post(f"/live-calls/{held.uuid}/hangup")
        await page.wait_for("document.getElementById('live-count').textContent === '0'", timeout=10)  # refreshed

        await page.click("header button[type=submit]")  # sign out
        await page.wait_for("document.querySelector('input[name=token]') !== null")
        assert await page.evaluate("document.getElementById('live') === null")
    print(f"\nbrowser part: {time.perf_counter() - started:.2f} s; screenshots: {tmp_path / 'dashboard.png'}, "
          f"{tmp_path / 'call.png'}")


async def _screenshot(page: Page, path) -> np.ndarray:
    """Capture, keep the file for a person to look at, and check it is a real picture of the page."""
    png = await page.screenshot()
    path.write_bytes(png)
    image = read_png(png)[..., :3]
    assert image.shape == (HEIGHT, WIDTH, 3)
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"{len(colours)} colours: a blank page?"
    background = np.all(image == image[HEIGHT - 1, WIDTH - 1], axis=-1).mean()
    assert background < 0.9, f"{background:.0%} of the page is one colour"
    return image


def _count(image: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> int:
    """Pixels of exactly `colour` inside the box (a chart's fills are drawn unblended inside their shapes)."""
    left, top, right, bottom = box
    assert 0 <= left < right <= WIDTH and 0 <= top < bottom <= HEIGHT, f"{box} is not on screen"
    return int(np.all(image[top:bottom, left:right] == colour, axis=-1).sum())


def _ms(value: float | None) -> str:
    """As the page writes it (JavaScript's Math.round)."""
    return "–" if value is None else str(math.floor(value + 0.5))

