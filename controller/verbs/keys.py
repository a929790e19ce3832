"""The caller's keys: the type-ahead buffer every verb takes digits from, and reading a run of digits."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from controller.verbs.line import Line, first_of


class Keypad:
    """Keys pressed and not yet taken by a verb, oldest first.

    A key that interrupts a prompt stays here for the gather that follows (type-ahead); waiting
    for a press never takes the key, so a prompt can stop on it and leave it for its reader.
    """

    def __init__(self) -> None:
        self._keys: deque[str] = deque()
        self._waiters: list[asyncio.Future[None]] = []

    def press(self, digit: str) -> None:
        self._keys.append(digit)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    @property
    def pending(self) -> int:
        return len(self._keys)

    def take(self) -> str | None:
        return self._keys.popleft() if self._keys else None

    def clear(self) -> None:
        self._keys.clear()

    async def pressed(self) -> None:
        """Return once a key is waiting (at once if one already is), without taking it."""
        while not self._keys:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)


async def next_key(line: Line, timeout: float | None) -> str | None:
    """The next key (type-ahead first); None after `timeout`; CallGone when the call ends first."""
    key = line.keypad.take()
    if key is not None:
        return key
    if await first_of(line, {"key": line.keypad.pressed()}, timeout) is None:
        return None
    return line.keypad.take()


async def read_digits(line: Line, *, max_digits: int, first_timeout: float, inter_digit_timeout: float,
                      terminators: str = "#", deadline: float | None = None) -> str:
    """Digits until `max_digits`, a terminator (not included), a timeout or the monotonic `deadline`."""
    digits = ""
    wait = first_timeout
    while len(digits) < max_digits:
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0 and not line.keypad.pending:
                break
        digit = await next_key(line, max(wait, 0.0))
        if digit is None or digit in terminators:
            break
        digits += digit
        wait = inter_digit_timeout
    return digits
