"""Scale-out: an instance refuses audio forks whose token another instance minted, even with a shared secret."""

from __future__ import annotations

import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from controller import tokens
from controller.audio import frame_bytes
from controller.audiofork import protocol as fork
from controller.audiofork.media import ForkMediaPort
from controller.audiofork.server import AudioForkServer, fork_url
from controller.esl.protocol import EslFrame

SECRET = "shared-secret-of-both-instances-0123"
CALL = "5ca1e000-0000-4000-8000-00000000000b"
NOW = 1_700_000_000.0


def test_verify_refuses_a_token_of_another_instance_with_its_own_reason():
    token = tokens.mint(SECRET, CALL, 30, now=NOW, instance="vg-a")
    with pytest.raises(tokens.TokenError) as info:
        tokens.verify(SECRET, token, CALL, now=NOW, instance="vg-b")
    assert info.value.reason == "wrong-instance"
    assert str(info.value) == "token was minted by another voxgate instance (minted by 'vg-a', this is 'vg-b')"
    assert token not in str(info.value)


def test_verify_accepts_its_own_instance_and_skips_the_check_when_not_asked():
    token = tokens.mint(SECRET, CALL, 30, now=NOW, instance="vg-a")
    assert tokens.verify(SECRET, token, CALL, now=NOW, instance="vg-a").instance == "vg-a"
    assert tokens.verify(SECRET, token, CALL, now=NOW).instance == "vg-a"


def test_the_other_checks_come_first_so_a_forged_instance_claim_reads_as_bad_signature():
    forged = tokens.mint("another-secret-0123456789", CALL, 30, now=NOW, instance="vg-b")
    with pytest.raises(tokens.TokenError) as info:
        tokens.verify(SECRET, forged, CALL, now=NOW, instance="vg-b")
    assert info.value.reason == "bad-signature"
    other_call = tokens.mint(SECRET, "another-call", 30, now=NOW, instance="vg-a")
    with pytest.raises(tokens.TokenError) as info:
        tokens.verify(SECRET, other_call, CALL, now=NOW, instance="vg-b")
    assert info.value.reason == "wrong-call"


class _Instance:
    """One instance's audio fork server with one call it expects."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.port = ForkMediaPort(CALL, fork.ForkSpec(url="ws://unused"), self._api)
        self.server = AudioForkServer(SECRET, {CALL: self.port}.get, instance=instance)

    @staticmethod
    async def _api(command: str) -> EslFrame:
        return EslFrame({"Content-Type": "api/response"}, b"+OK\n")

    def url(self, token: str) -> str:
        return fork_url(f"ws://127.0.0.1:{self.server.port}", CALL, token)


@pytest.fixture
async def instance_b():
    b = _Instance("vg-b")
    await b.server.start("127.0.0.1", 0)
    yield b
    await b.server.stop()


def _connect(url: str):
    return connect(url, subprotocols=[fork.SUBPROTOCOL], compression=None, user_agent_header=None)


async def test_a_fork_with_another_instances_token_is_refused_before_any_media(instance_b, caplog):
    token = tokens.mint(SECRET, CALL, 30, instance="vg-a")
    with caplog.at_level(logging.WARNING, logger="controller.audiofork.server"):
        with pytest.raises(InvalidStatus) as info:
            async with _connect(instance_b.url(token)):
                pass
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"token wrong-instance\n"
    assert instance_b.server.refused == 1
    assert not instance_b.port.connected and instance_b.port.metadata is None
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"refused: token wrong-instance (call {CALL}: " in logged
    assert "minted by 'vg-a', this is 'vg-b'" in logged
    assert token not in logged and token.split(".")[1] not in logged


async def test_the_same_call_with_its_own_instances_token_is_taken(instance_b):
    token = tokens.mint(SECRET, CALL, 30, instance="vg-b")
    async with _connect(instance_b.url(token)) as ws:
        await ws.send("{}")
        await ws.send(bytes(frame_bytes(8000)))
        frame = await anext(instance_b.port.frames())
    assert len(frame.pcm) == frame_bytes(8000) and instance_b.server.refused == 0
