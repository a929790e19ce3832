"""A call's DTMF digits as records, with long runs masked: a keypad is how callers type card numbers.

A run is the digits a caller presses with less than `gap_s` between them, ended early by
`#` or `*`. Runs of `MASK_RUN` digits or more are stored with every digit replaced by
`MASKED`; shorter ones (menu choices, extensions, a PIN's length is not enough to call it
private here) are stored as pressed. Digits voxgate sends are never held back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from controller.records.cdr import DtmfRecord

MASK_RUN = 7       # the shortest run the redactor treats as a number worth hiding (phone numbers)
MASKED = "x"
TERMINATORS = "#*"


class DtmfLog:
    """Turns one call's digits into DtmfRecords; `close()` at the end of the call releases the last run."""

    def __init__(self, pbx: str, call_uuid: str, submit: Callable[[DtmfRecord], None], *, mask: bool = True,
                 gap_s: float = 4.0, first_seq: int = 1) -> None:
        self._pbx, self._uuid, self._submit = pbx, call_uuid, submit
        self._mask = mask
        self._gap = timedelta(seconds=gap_s)
        self._seq = first_seq - 1
        self._run: list[DtmfRecord] = []

    def pressed(self, at: datetime, digit: str, duration_ms: int = 0) -> None:
        if self._run and at - self._run[-1].at > self._gap:
            self._release()
        self._run.append(self._record(at, digit, "in", duration_ms))
        if digit in TERMINATORS or not self._mask:
            self._release()

    def sent(self, at: datetime, digits: str) -> None:
        for digit in digits:
            self._submit(self._record(at, digit, "out", 0))

    def close(self) -> None:
        self._release()

    def _record(self, at: datetime, digit: str, direction: str, duration_ms: int) -> DtmfRecord:
        self._seq += 1
        return DtmfRecord(self._pbx, self._uuid, self._seq, at, digit, direction, duration_ms)

    def _release(self) -> None:
        run, self._run = self._run, []
        private = self._mask and sum(r.digit.isdigit() for r in run) >= MASK_RUN
        for record in run:
            if private and record.digit.isdigit():
                record = DtmfRecord(record.pbx, record.call_uuid, record.seq, record.at, MASKED, record.direction,
                                    record.duration_ms)
            self._submit(record)
