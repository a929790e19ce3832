"""Either simulated PBX behind one face, so one test body runs over every PBX and media path.

A setup is named "<pbx>-<media>": fs-streaming and fs-classic (the two mod_audio_fork generations),
ast-audiosocket, ast-audiosocket-dial and ast-websocket (Asterisk's media paths); the list the
`any_pbx` and `pbx_setup` fixtures run over is PBX_SETUPS in conftest.py. Both simulated caller
channels have the same face (uuid, heard, caller_speech, agent_speech, ended, script_error), so a
test only names a PBX where the PBX itself differs: its event names, its phone's jitter buffer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from controller.agent.conversation import Engines
from controller.app import Controller
from controller.flows import FlowRegistry
from controller.simulator.asterisk.channel import CallerChannel
from controller.simulator.caller import CallerScript
from controller.simulator.channel import SimChannel
from tests.e2e.asterisk_rig import MEDIA, AsteriskRig, start_asterisk_rig, stop_asterisk_rig
from tests.e2e.conftest import Rig, start_rig, stop_rig, stored_call

# setup name prefix: (the PBX, its ways of carrying a call's audio: fork modes or media forms)
PBXS = {"fs": ("freeswitch", ("streaming", "classic")), "ast": ("asterisk", tuple(MEDIA))}


@dataclass(frozen=True, slots=True)
class Setup:
    """One PBX and the way a call's audio travels between it and voxgate."""

    name: str
    pbx_name: str  # freeswitch | asterisk, as the CDR's pbx column says
    media: str  # FreeSWITCH's fork mode or Asterisk's media form

    @classmethod
    def parse(cls, name: str) -> Setup:
        prefix, _, media = name.partition("-")
        pbx_name, forms = PBXS.get(prefix, ("", ()))
        if media not in forms:
            known = ", ".join(f"{p}-{m}" for p, (_, ms) in PBXS.items() for m in ms)
            raise ValueError(f"unknown PBX setup {name!r}: one of {known}")
        return cls(name, pbx_name, media)


@dataclass(frozen=True, slots=True)
class PbxRig:
    """voxgate wired to one simulated PBX (setup); calls are placed the same way on either."""

    setup: Setup
    rig: Rig | AsteriskRig

    @property
    def pbx_name(self) -> str:
        return self.setup.pbx_name

    @property
    def controller(self) -> Controller:
        return self.rig.controller

    @property
    def database_url(self) -> str:
        return self.rig.database_url

    async def call(self, script: CallerScript, *, flow: str = "greeting", caller_id_number: str = "15551230001",
                   destination: str = "1000", variables: Mapping[str, str] | None = None
                   ) -> SimChannel | CallerChannel:
        """A scripted caller's call to `destination`, handed to `flow`; `variables` set on its channel."""
        kw = {"caller_id_number": caller_id_number, "destination": destination, "variables": dict(variables or {})}
        if isinstance(self.rig, AsteriskRig):
            return await self.rig.call(script, media=self.setup.media, flow=flow, **kw)
        return await self.rig.call(script, flow=flow, **kw)

    async def finished(self, channel: SimChannel | CallerChannel, timeout: float = 60) -> dict:
        """The call's CDR once the PBX hung up and voxgate stored it."""
        return await stored_call(self.controller, self.database_url, channel, timeout)


async def start_pbx_rig(setup: str, tmp_path: Path, database_url: str, *, flows: FlowRegistry | None = None,
                        engines: Engines | None = None, **env: str) -> PbxRig:
    """voxgate and the simulated PBX of `setup` (a name such as "ast-websocket"), both started."""
    parsed = Setup.parse(setup)
    if parsed.pbx_name == "asterisk":
        return PbxRig(parsed, await start_asterisk_rig(tmp_path, database_url, flows=flows, engines=engines, **env))
    return PbxRig(parsed, await start_rig(tmp_path, database_url, mode=parsed.media, flows=flows, engines=engines,
                                          **env))


async def stop_pbx_rig(rig: PbxRig) -> None:
    if isinstance(rig.rig, AsteriskRig):
        await stop_asterisk_rig(rig.rig)
    else:
        await stop_rig(rig.rig)
