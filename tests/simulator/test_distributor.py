"""Several voxgate instances behind one simulated FreeSWITCH: distribution and socket failover."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from controller.simulator.distributor import Distributor, SocketTarget
from controller.simulator.fake_freeswitch import FakeFreeSwitch, main
from tests.simulator.sim_helpers import EslPeer, VoxgateOutbound, sendmsg

A, B, C = SocketTarget("10.0.0.1", 8084), SocketTarget("10.0.0.2", 8084), SocketTarget("10.0.0.3", 8084)


def _closed_port() -> int:
    """A port nobody listens on: connects to it are refused, as to a stopped or draining instance."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_round_robin_takes_turns_and_lists_the_others_after_the_pick():
    spread = Distributor([A, B, C])
    assert [spread.order("15550000001") for _ in range(4)] == [[A, B, C], [B, C, A], [C, A, B], [A, B, C]]


def test_hash_keeps_a_caller_on_one_instance_and_spreads_callers():
    spread = Distributor([("10.0.0.1", 8084), ("10.0.0.2", 8084)], "hash")
    assert spread.targets == (A, B)
    firsts = {caller: spread.order(caller)[0] for caller in (f"1555000{n:04d}" for n in range(20))}
    assert set(firsts.values()) == {A, B}
    assert all(spread.order(caller)[0] == first for caller, first in firsts.items())
    assert all(sorted(spread.order(caller), key=str) == [A, B] for caller in firsts)


@pytest.mark.parametrize("text,target", [("127.0.0.1:8084", SocketTarget("127.0.0.1", 8084)),
                                         ("vg-b.internal:9000", SocketTarget("vg-b.internal", 9000)),
                                         ("::1:8084", SocketTarget("::1", 8084))])
def test_socket_targets_parse_as_the_socket_application_splits_them(text, target):
    assert SocketTarget.parse(text) == target and str(target) == text


@pytest.mark.parametrize("text", ["127.0.0.1", ":8084", "host:", "host:port", "host:0", "host:70000"])
def test_bad_socket_targets_are_refused_with_the_text(text):
    with pytest.raises(ValueError, match="HOST:PORT"):
        SocketTarget.parse(text)


def test_a_distributor_needs_targets_and_a_known_policy():
    with pytest.raises(ValueError, match="at least one"):
        Distributor([])
    with pytest.raises(ValueError, match="round-robin, hash"):
        Distributor([A], "random")


async def _take(voxgate: VoxgateOutbound) -> str:
    """voxgate's side: connect, then hang the call up; returns the call's uuid."""
    peer: EslPeer = await voxgate.accept()
    connect = await peer.reply("connect\n\n")
    await peer.reply("myevents\n\n")
    await peer.reply(sendmsg("hangup", "NORMAL_CLEARING"))
    await peer.closed()
    return connect.headers["Unique-ID"]


async def test_a_refused_connect_fails_over_to_the_next_socket_action():
    down = ("127.0.0.1", _closed_port())
    async with VoxgateOutbound() as up, FakeFreeSwitch("ClueCon", esl_port=None) as switch:
        taken = asyncio.create_task(_take(up))
        channel = await switch.place_call(outbound_socket=down, failover=[up.address])
        assert await asyncio.wait_for(taken, 5) == channel.uuid
        await asyncio.wait_for(channel.ended.wait(), 5)
    assert switch.socket_targets == {channel.uuid: up.address}
    assert channel.hangup_cause == "NORMAL_CLEARING"
    assert [kind for _, kind in channel.events].count("CHANNEL_PARK") == 1


async def test_when_every_instance_refuses_the_dialplan_runs_out_and_the_call_ends_unanswered():
    async with FakeFreeSwitch("ClueCon", esl_port=None) as switch:
        channel = await switch.place_call(outbound_socket=("127.0.0.1", _closed_port()),
                                          failover=[("127.0.0.1", _closed_port())])
        await asyncio.wait_for(channel.ended.wait(), 5)
    assert switch.socket_targets == {} and not channel.answered


async def test_voxgate_simulate_takes_several_instances_and_fails_over(tmp_path: Path, capsys):
    scenario = tmp_path / "call.toml"
    scenario.write_text('[[steps]]\nwait = 5\n')
    closed = _closed_port()
    async with VoxgateOutbound() as up:
        taken = asyncio.create_task(_take(up))
        code = await asyncio.to_thread(main, ["--scenario", str(scenario), "--connect", f"127.0.0.1:{closed}",
                                              "--connect", "{}:{}".format(*up.address), "--speed", "5"])
        await asyncio.wait_for(taken, 5)
    assert code == 0 and "NORMAL_CLEARING" in capsys.readouterr().out


def test_voxgate_simulate_names_a_bad_target(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--scenario", str(tmp_path / "call.toml"), "--connect", "no-port"])
    assert info.value.code == 2 and "a socket target is HOST:PORT, not 'no-port'" in capsys.readouterr().err
