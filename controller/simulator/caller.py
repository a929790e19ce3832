"""The simulated caller: a script of steps run against a call, and scenario files that describe one.

A scenario file (TOML or JSON) names the call and its steps; paths are relative to the file:

    destination = "1000"
    caller_id_number = "15551230001"
    [variables]
    voxgate_flow = "demo"
    [[steps]]
    wait_for = "answer"
    [[steps]]
    say = "hello.wav"
    [[steps]]
    dtmf = "1234"
    [[steps]]
    hangup = {}

Steps: wait (seconds), say (WAV path), dtmf (digits, or {digits, gap}), hangup ({} or {cause}),
wait_for (event kind, or {event, timeout}). Times are simulated seconds.
"""

from __future__ import annotations

import json
import tomllib
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.audio import Pcm, read_wav
from controller.simulator.caller_leg import WaitForTimeout
from controller.causes import CAUSES
from controller.simulator.channel import DTMF_DIGITS

if TYPE_CHECKING:
    from controller.simulator.caller_leg import CallerLeg


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the file, the step and why."""


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float

    async def run(self, call: CallerLeg) -> None:
        await call.clock.sleep(self.seconds)


@dataclass(frozen=True, slots=True)
class Say:
    """Speak a WAV file (or PCM) into the call; the step ends when it has all been heard."""

    audio: str | Path | Pcm

    async def run(self, call: CallerLeg) -> None:
        await call.say(self.audio if isinstance(self.audio, Pcm) else read_wav(self.audio))


@dataclass(frozen=True, slots=True)
class Dtmf:
    """Press keys: one DTMF event each (DTMF-Source rtp), gap_s apart."""

    digits: str
    gap_s: float = 0.2

    def __post_init__(self) -> None:
        if not self.digits or any(d not in DTMF_DIGITS for d in self.digits):
            raise ValueError(f"DTMF digits must be 0-9, *, #, A-D: {self.digits!r}")

    async def run(self, call: CallerLeg) -> None:
        for index, digit in enumerate(self.digits):
            if index:
                await call.clock.sleep(self.gap_s)
            if call.hung_up:
                return
            call.caller_dtmf(digit)


@dataclass(frozen=True, slots=True)
class Hangup:
    cause: str = "NORMAL_CLEARING"

    def __post_init__(self) -> None:
        if self.cause.upper() not in CAUSES:
            raise ValueError(f"unknown hangup cause {self.cause!r}")

    async def run(self, call: CallerLeg) -> None:
        call.hangup(self.cause)


@dataclass(frozen=True, slots=True)
class WaitFor:
    """Wait for the call's next event of a kind (e.g. PLAYBACK_STOP, mod_audio_fork::connect, or
    answer/park/hangup); a timeout ends the script and hangs up, recorded in script_error."""

    event: str
    timeout: float = 30.0

    async def run(self, call: CallerLeg) -> None:
        await call.wait_event(self.event, self.timeout)


@dataclass(frozen=True, slots=True)
class Listen:
    """Listen to the far end until it has spoken and then been quiet for `silence` seconds;
    a timeout ends the script and hangs up, like WaitFor."""

    silence: float = 0.8
    timeout: float = 30.0

    async def run(self, call: CallerLeg) -> None:
        if not await call.listen(self.silence, self.timeout):
            raise WaitForTimeout(f"listen: the far end did not speak and pause within {self.timeout:g} s")


Step = Wait | Say | Dtmf | Hangup | WaitFor | Listen
CallerScript = list[Step]  # CallerScript([WaitFor("answer"), Say("hi.wav"), Hangup()])


async def run_script(call: CallerLeg, script: Sequence[Step]) -> None:
    """Play the caller's part, step by step, until the script or the call ends."""
    for step in script:
        if call.hung_up:
            return
        await step.run(call)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A call to place and what its caller does."""

    steps: list[Step]
    destination: str = "1000"
    caller_id_number: str = "15551230001"
    caller_id_name: str = "Sim Caller"
    variables: dict[str, str] = field(default_factory=dict)


_TOP_LEVEL = {"destination", "caller_id_number", "caller_id_name", "variables", "steps"}


def load_scenario(path: str | Path) -> Scenario:
    """Read a .toml or .json scenario; ScenarioError says what is wrong and where."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ScenarioError(f"{path}: a scenario is a .toml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: the scenario must be a table/object")
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise ScenarioError(f"{path}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(_TOP_LEVEL))}")
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{path}: 'steps' must be a non-empty list")
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or any(isinstance(v, (dict, list)) for v in variables.values()):
        raise ScenarioError(f"{path}: 'variables' must map names to plain values")
    texts = {}
    for key in ("destination", "caller_id_number", "caller_id_name"):
        if key in data:
            if not isinstance(data[key], (str, int)):
                raise ScenarioError(f"{path}: '{key}' must be a string")
            texts[key] = str(data[key])
    return Scenario(steps=[_step(path, index, raw) for index, raw in enumerate(steps, 1)],
                    variables={str(k): _text(v) for k, v in variables.items()}, **texts)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _step(path: Path, index: int, raw: Any) -> Step:
    where = f"{path}: step {index}"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ScenarioError(f"{where}: a step is a table with exactly one of wait, say, dtmf, hangup, wait_for")
    (kind, value), = raw.items()
    try:
        if kind == "wait":
            return Wait(_seconds(value))
        if kind == "say":
            if not isinstance(value, str):
                raise ValueError("say takes the path of a WAV file")
            audio = path.parent / value
            try:
                return Say(read_wav(audio))
            except FileNotFoundError:
                raise ValueError(f"say: no such file {audio}") from None
            except (OSError, EOFError, ValueError, wave.Error) as exc:
                raise ValueError(f"say: {audio} is not a 16-bit PCM WAV file ({exc})") from None
        if kind == "dtmf":
            if isinstance(value, dict):
                return Dtmf(str(_field(value, "digits")), _seconds(value.get("gap", 0.2)))
            return Dtmf(str(value))
        if kind == "hangup":
            if isinstance(value, dict):
                return Hangup(str(value.get("cause", "NORMAL_CLEARING")))
            return Hangup(str(value))
        if kind == "wait_for":
            if isinstance(value, dict):
                return WaitFor(str(_field(value, "event")), _seconds(value.get("timeout", 30.0)))
            return WaitFor(str(value))
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    raise ScenarioError(f"{where}: unknown step {kind!r} (expected wait, say, dtmf, hangup or wait_for)")


def _field(table: dict, name: str) -> Any:
    if name not in table:
        raise ValueError(f"missing '{name}'")
    return table[name]


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"expected a number of seconds >= 0, not {value!r}")
    return float(value)
