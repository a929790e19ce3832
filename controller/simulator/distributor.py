"""Spreading calls over several voxgate instances the way a FreeSWITCH dialplan does it.

mod_distributor's `${distributor(list)}` hands out a list's nodes in weighted round-robin (equal
weights alternate); `${distributor(list <node>...)}` gives the next node other than those named.
A dialplan puts the chosen instance first and the others after it, one `socket` action each: when
the connect fails the socket application logs "Socket Error!" and returns without hanging up, so
the next action tries the next instance. A hash of the caller id instead keeps a caller on one
instance while it is up (a lua or regex dialplan can do that). `order()` gives that socket list.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

POLICIES = ("round-robin", "hash")


@dataclass(frozen=True, slots=True)
class SocketTarget:
    """One voxgate instance's outbound ESL server, as a `socket` action names it."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> SocketTarget:
        """HOST:PORT, split at the last colon as the socket application does (so ::1:8084 is IPv6)."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a socket target is HOST:PORT, not {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Distributor:
    """Which instance each new call tries first, then the failover order after it."""

    def __init__(self, targets: Sequence[SocketTarget | tuple[str, int]], policy: str = "round-robin") -> None:
        if not targets:
            raise ValueError("a distributor needs at least one socket target")
        if policy not in POLICIES:
            raise ValueError(f"distribution policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        self.targets = tuple(t if isinstance(t, SocketTarget) else SocketTarget(*t) for t in targets)
        self.policy = policy
        self._turn = itertools.count()

    def pick(self, caller_id_number: str) -> int:
        """The index of the first target: the next in turn, or a stable hash of the caller id."""
        if self.policy == "hash":
            return zlib.crc32(caller_id_number.encode()) % len(self.targets)
        return next(self._turn) % len(self.targets)

    def order(self, caller_id_number: str) -> list[SocketTarget]:
        """Every target once: the pick first, then the ones after it in list order, wrapping round."""
        first = self.pick(caller_id_number)
        return [*self.targets[first:], *self.targets[:first]]
