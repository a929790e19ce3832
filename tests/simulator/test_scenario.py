"""Scenario files, the scripted caller end to end, and `voxgate simulate`."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import pytest

from controller.audio import read_wav, rms
from controller.simulator.caller import Dtmf, Hangup, Say, ScenarioError, Wait, WaitFor, load_scenario
from controller.simulator.fake_freeswitch import main, run_scenario
from tests.simulator.sim_helpers import VoxgateOutbound, sendmsg, tone_wav

TOML = """
destination = "2000"
caller_id_number = "15550001111"
caller_id_name = "Ada"

[variables]
voxgate_flow = "demo"
retries = 3

[[steps]]
wait_for = "answer"

[[steps]]
say = "audio/hello.wav"

[[steps]]
dtmf = { digits = "12", gap = 0.1 }

[[steps]]
wait = 0.3

[[steps]]
hangup = {}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    (tmp_path / "audio").mkdir()
    tone_wav(tmp_path / "audio" / "hello.wav", 500, rate=16000)
    return tmp_path


def test_toml_and_json_scenarios_load_the_same(scenario_dir):
    toml = load_scenario(write(scenario_dir / "call.toml", TOML))
    as_json = load_scenario(write(scenario_dir / "call.json", json.dumps({
        "destination": "2000", "caller_id_number": "15550001111", "caller_id_name": "Ada",
        "variables": {"voxgate_flow": "demo", "retries": 3},
        "steps": [{"wait_for": "answer"}, {"say": "audio/hello.wav"}, {"dtmf": {"digits": "12", "gap": 0.1}},
                  {"wait": 0.3}, {"hangup": {}}]})))
    for scenario in (toml, as_json):
        assert (scenario.destination, scenario.caller_id_number, scenario.caller_id_name) == \
            ("2000", "15550001111", "Ada")
        assert scenario.variables == {"voxgate_flow": "demo", "retries": "3"}
        kinds = [type(step) for step in scenario.steps]
        assert kinds == [WaitFor, Say, Dtmf, Wait, Hangup]
        assert scenario.steps[1].audio.sample_rate == 16000  # loaded (and checked) relative to the file
        assert scenario.steps[2] == Dtmf("12", 0.1)
        assert scenario.steps[4] == Hangup("NORMAL_CLEARING")


@pytest.mark.parametrize("steps,message", [
    ('[{"wait": 1}, {"speak": "x"}]', "step 2: unknown step 'speak'"),
    ('[{"say": "missing.wav"}]', "step 1: say: no such file"),
    ('[{"say": "call.json"}]', "step 1: say: "),
    ('[{"wait": 1}, {"dtmf": "12x"}]', "step 2: DTMF digits must be"),
    ('[{"hangup": {"cause": "BORED"}}]', "step 1: unknown hangup cause 'BORED'"),
    ('[{"wait": -1}]', "step 1: expected a number of seconds"),
    ('[{"wait_for": {"timeout": 3}}]', "step 1: missing 'event'"),
    ('[{"wait": 1, "hangup": {}}]', "step 1: a step is a table with exactly one"),
    ('[]', "'steps' must be a non-empty list"),
])
def test_scenario_errors_name_the_step_and_why(tmp_path, steps, message):
    path = write(tmp_path / "call.json", f'{{"steps": {steps}}}')
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    assert str(error.value).startswith(str(path))
    assert message in str(error.value)


def test_scenario_file_level_errors(tmp_path):
    with pytest.raises(ScenarioError, match="unknown key"):
        load_scenario(write(tmp_path / "a.json", '{"steps": [{"wait": 1}], "destinaton": "1"}'))
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(write(tmp_path / "b.toml", "steps = [\n"))
    with pytest.raises(ScenarioError, match=r"\.toml or \.json"):
        load_scenario(write(tmp_path / "c.yaml", "steps: []"))
    with pytest.raises(ScenarioError, match="No such file"):
        load_scenario(tmp_path / "absent.toml")


async def agent(voxgate: VoxgateOutbound, greeting: Path) -> list[str]:
    """A stand-in for voxgate's outbound handler: answer, greet, wait for the caller to hang up."""
    peer = await voxgate.accept()
    connect = await peer.reply("connect\n\n")
    await peer.reply("myevents\n\n")
    await peer.reply("linger\n\n")
    await peer.reply(sendmsg("answer"))
    await peer.reply(sendmsg("playback", str(greeting)))
    await peer.until(lambda f: f.headers.get("Content-Disposition") == "linger")
    await peer.reply("exit\n\n")
    await peer.closed()
    return [connect.headers["variable_voxgate_flow"], *(e.get("DTMF-Digit") for e in peer.events if e.name == "DTMF")]


async def test_run_scenario_plays_the_caller_against_voxgate(scenario_dir):
    greeting = tone_wav(scenario_dir / "greeting.wav", 800)
    path = write(scenario_dir / "call.toml", TOML)
    async with VoxgateOutbound() as voxgate:
        seen = asyncio.create_task(agent(voxgate, greeting))
        call = await run_scenario(path, outbound_socket=voxgate.address, speed=5, heard=scenario_dir / "heard.wav")
        assert await asyncio.wait_for(seen, 3) == ["demo", "1", "2"]
    assert (call.hangup_cause, call.destination, call.caller_id_name) == ("NORMAL_CLEARING", "2000", "Ada")
    assert call.dtmf_received == ["1", "2"] and call.script_error is None
    heard = read_wav(scenario_dir / "heard.wav")
    assert heard.sample_rate == 8000 and heard.duration >= 0.8 and rms(heard.data) > 1000


async def test_run_scenario_parks_for_inbound_mode(tmp_path):
    path = write(tmp_path / "call.json", '{"steps": [{"wait": 0.3}, {"hangup": {"cause": "NO_ANSWER"}}]}')
    call = await run_scenario(path, outbound_socket=None, esl_port=0, speed=5)
    assert (call.hangup_cause, call.answered) == ("NO_ANSWER", False)
    assert "CHANNEL_PARK" in [kind for _, kind in call.events]


async def test_voxgate_simulate_command(scenario_dir, capsys):
    greeting = tone_wav(scenario_dir / "greeting.wav", 300)
    path = write(scenario_dir / "call.toml", TOML)
    heard = scenario_dir / "out.wav"
    async with VoxgateOutbound() as voxgate:
        seen = asyncio.create_task(agent(voxgate, greeting))
        host, port = voxgate.address
        code = await asyncio.to_thread(main, ["--scenario", str(path), "--connect", f"{host}:{port}",
                                              "--heard", str(heard), "--speed", "5"])
        await asyncio.wait_for(seen, 3)
    out = capsys.readouterr().out
    assert code == 0
    assert "NORMAL_CLEARING" in out and "heard" in out and heard.exists()


def test_voxgate_simulate_usage_errors(tmp_path, capsys):
    path = write(tmp_path / "call.json", '{"steps": [{"wait": 1}]}')
    with pytest.raises(SystemExit) as exit_info:
        main(["--scenario", str(path)])
    assert exit_info.value.code == 2
    assert "--connect" in capsys.readouterr().err
    broken = write(tmp_path / "broken.json", '{"steps": [{"jump": 1}]}')
    assert main(["--scenario", str(broken), "--connect", "127.0.0.1:1"]) == 2
    assert "step 1: unknown step 'jump'" in capsys.readouterr().err
