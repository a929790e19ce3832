"""A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol, and a PNG reader.

Chromium starts with --remote-debugging-port=0 and says on stderr where its DevTools WebSocket
listens; CDP is JSON over that WebSocket (`websockets`): commands with ids, answers with the same id,
events without. Pages are attached in flat mode, so one connection drives every page by session id.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import struct
import tempfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

START_TIMEOUT_S = 30
COMMAND_TIMEOUT_S = 30
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--mute-audio", "--hide-scrollbars",
         "--force-device-scale-factor=1")


class CdpError(RuntimeError):
    """Chromium answered a command with an error, or did not answer."""


def chromium_path() -> str:
    """The browser, or an error that says how to get it: a missing browser fails the test, never skips it."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("chromium is not installed: `make deps` installs it (apt-get install chromium)")
    return path


class Chromium:
    """One headless Chromium process with a throw-away profile: `async with Chromium(1280, 900) as browser`."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._profile = tempfile.mkdtemp(prefix="voxgate-chromium-")
        self._process: asyncio.subprocess.Process | None = None
        self._socket: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.log: list[bytes] = []  # the browser's stderr, for a failing test's message

    async def __aenter__(self) -> Chromium:
        self._process = await asyncio.create_subprocess_exec(
            chromium_path(), *FLAGS, f"--user-data-dir={self._profile}",
            f"--window-size={self.width},{self.height}", "about:blank",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            url = await asyncio.wait_for(self._devtools_url(), START_TIMEOUT_S)
        except (TimeoutError, CdpError):
            await self._stop()
            raise CdpError("chromium did not start:\n" + b"".join(self.log).decode(errors="replace")) from None
        self._tasks.append(asyncio.create_task(self._drain_stderr()))
        self._socket = await connect(url, max_size=None, ping_interval=None)
        self._tasks.append(asyncio.create_task(self._read()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        await self._stop()

    async def new_page(self) -> Page:
        """A new tab of exactly width x height CSS pixels at scale 1, attached in flat mode."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Emulation.setDeviceMetricsOverride",
                        {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        return page

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   session: str | None = None) -> dict[str, Any]:
        """One command; its result, or CdpError with Chromium's message."""
        assert self._socket is not None, "Chromium is not started"
        command_id = next(self._ids)
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future = self._waiting[command_id] = asyncio.get_running_loop().create_future()
        await self._socket.send(json.dumps(message))
        try:
            answer = await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
        except TimeoutError:
            raise CdpError(f"{method}: no answer in {COMMAND_TIMEOUT_S} s") from None
        finally:
            self._waiting.pop(command_id, None)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    async def _devtools_url(self) -> str:
        assert self._process is not None and self._process.stderr is not None
        while line := await self._process.stderr.readline():
            self.log.append(line)
            found = _LISTENING.search(line)
            if found:
                return found.group(1).decode()
        raise CdpError("chromium exited before its DevTools endpoint was up")

    async def _drain_stderr(self) -> None:
        """Keep reading: a full pipe would stall the browser."""
        assert self._process is not None and self._process.stderr is not None
        while line := await self._process.stderr.readline():
            self.log.append(line)

    async def _read(self) -> None:
        assert self._socket is not None
        async for raw in self._socket:
            message = json.loads(raw)
            future = self._waiting.get(message.get("id"))  # events carry no id: nothing here waits for one
            if future is not None and not future.done():
                future.set_result(message)

    async def _stop(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        shutil.rmtree(self._profile, ignore_errors=True)


@dataclass
class Page:
    browser: Chromium
    session: str

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session)

    async def navigate(self, url: str) -> None:
        answer = await self.send("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise CdpError(f"navigating to {url}: {answer['errorText']}")

    async def evaluate(self, expression: str) -> Any:
        """The expression's value (promises awaited), as JSON; CdpError when it throws."""
        answer = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                      "awaitPromise": True})
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise CdpError(f"{expression!r} threw: {details.get('exception', {}).get('description') or details}")
        return answer["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Until the expression is truthy; a page being replaced meanwhile (navigation) is retried."""
        deadline = asyncio.get_running_loop().time() + timeout
        last: Any = None
        while asyncio.get_running_loop().time() < deadline:
            try:
                last = await self.evaluate(expression)
            except CdpError as exc:
                last = exc
            else:
                if last:
                    return last
            await asyncio.sleep(0.05)
        try:
            seen = await self.evaluate("location.href + '\\n' + (document.body ? document.body.innerText : '')")
        except CdpError as exc:
            seen = str(exc)
        raise AssertionError(f"{expression} still not true after {timeout} s (last: {last!r}); the page:\n{seen}")

    async def click(self, selector: str) -> None:
        """A left click in the middle of the element, as a mouse would (scrolled into view first)."""
        box = await self.evaluate(f"(() => {{ const node = document.querySelector({json.dumps(selector)}); "
                                  "node.scrollIntoView({block: 'center'}); const r = node.getBoundingClientRect(); "
                                  "return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"],
                                                         "button": "left", "clickCount": 1})

    async def box(self, selector: str) -> tuple[int, int, int, int]:
        """The element's (left, top, right, bottom) in viewport pixels."""
        r = await self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                                ".getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })()")
        return int(r[0]), int(r[1]), int(r[2]), int(r[3])

    async def insert_text(self, text: str) -> None:
        """Type into the focused element, as a keyboard would (input events fire)."""
        await self.send("Input.insertText", {"text": text})

    async def screenshot(self) -> bytes:
        answer = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
        return base64.b64decode(answer["data"])


# ---------------------------------------------------------------- PNG, for checking screenshots


def read_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) as a (height, width, channels) array."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    chunks, offset = [], 8
    header = b""
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])[0]:
            raise ValueError(f"PNG chunk {kind!r}: bad CRC")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {2: 3, 6: 4}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), dtype=np.uint8).reshape(height, 1 + width * channels)
    return _unfilter(raw, channels).reshape(height, width, channels)


def _unfilter(raw: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the per-row filters; Sub and Up vectorised, Average and Paeth byte by byte (rare in screenshots)."""
    height, stride = raw.shape[0], raw.shape[1] - 1
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind, line = raw[y, 0], raw[y, 1:]
        if kind == 0:
            row = line.copy()
        elif kind == 1:
            row = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            row = line + previous
        elif kind in (3, 4):
            row = _sequential(line, previous, bpp, kind)
        else:
            raise ValueError(f"PNG row {y}: unknown filter {kind}")
        out[y] = previous = row
    return out


def _sequential(line: np.ndarray, previous: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    row, up = bytearray(line.tobytes()), previous.tobytes()
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        if kind == 3:
            row[i] = (row[i] + (left + up[i]) // 2) & 0xFF
            continue
        corner = up[i - bpp] if i >= bpp else 0
        guess = left + up[i] - corner
        near_left, near_up, near_corner = abs(guess - left), abs(guess - up[i]), abs(guess - corner)
        predictor = left if near_left <= near_up and near_left <= near_corner else up[i] if near_up <= near_corner \
            else corner
        row[i] = (row[i] + predictor) & 0xFF
    return np.frombuffer(bytes(row), dtype=np.uint8)
