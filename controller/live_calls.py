"""The controller's live calls by uuid, which others can watch arrive and leave.

A call voxgate dials reaches it the way any call does (FreeSWITCH's socket application, Asterisk's
dialplan announcement), on a connection of the PBX's choosing. Whoever placed it registers the
uuid it gave the call beforehand and is told, synchronously, the moment the controller adopts the
call (before its flow runs) and again once the controller lets go of it (flow over, records sent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.adapter import AdapterCall

ArrivalHandler = Callable[["AdapterCall"], None]


class LiveCalls(dict[str, "AdapterCall"]):
    """A dict of the calls under voxgate's control; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._arrivals: dict[str, ArrivalHandler] = {}
        self._departures: dict[str, list[asyncio.Future[None]]] = {}

    def __setitem__(self, call_uuid: str, call: AdapterCall) -> None:
        super().__setitem__(call_uuid, call)
        handler = self._arrivals.pop(call_uuid, None)
        if handler is not None:
            handler(call)

    def pop(self, call_uuid: str, *default: Any) -> Any:
        call = super().pop(call_uuid, *default)
        for future in self._departures.pop(call_uuid, []):
            if not future.done():
                future.set_result(None)
        return call

    def in_progress(self) -> list[AdapterCall]:
        """The calls still up and still voxgate's (not transferred away), oldest first."""
        live = [call for call in self.values() if not call.ended.is_set() and call.transferred_to is None]
        live.sort(key=lambda call: call.info.started_at or datetime.max.replace(tzinfo=UTC))
        return live

    def expect(self, call_uuid: str, on_arrival: ArrivalHandler) -> None:
        """Call on_arrival(call) when a call with this uuid is adopted; one handler per uuid."""
        if call_uuid in self._arrivals or call_uuid in self:
            raise ValueError(f"call {call_uuid} is already expected or live")
        self._arrivals[call_uuid] = on_arrival

    def forget(self, call_uuid: str) -> None:
        """Stop expecting a call that will not come (its originate failed or was given up)."""
        self._arrivals.pop(call_uuid, None)

    def departure(self, call_uuid: str) -> asyncio.Future[None]:
        """Done once the controller has let go of this call (at once if it is not live)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if call_uuid in self:
            self._departures.setdefault(call_uuid, []).append(future)
        else:
            future.set_result(None)
        return future
