"""Per-call WebSocket tokens: round trip, every refusal reason, and URL safety."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from urllib.parse import quote

import pytest

from controller.tokens import MAX_TOKEN_CHARS, TokenClaims, TokenError, mint, verify

SECRET = "k7Q2-test-secret-of-decent-length"
CALL = "3f1c2b9e-8d4a-4b7f-9c61-0a2e5d7b8c90"
NOW = 1_700_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(payload: bytes, secret: str = SECRET) -> str:
    """A correctly signed token around an arbitrary payload, to reach the post-signature checks."""
    payload_b64 = _b64(payload)
    return f"{payload_b64}.{_b64(hmac.new(secret.encode(), payload_b64.encode(), hashlib.sha256).digest())}"


def _refused(token, reason, **kwargs):
    with pytest.raises(TokenError) as info:
        verify(kwargs.pop("secret", SECRET), token, now=kwargs.pop("now", NOW), **kwargs)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)
    return info.value


def test_round_trip():
    token = mint(SECRET, CALL, 30, now=NOW, instance="fs-node-1")
    assert verify(SECRET, token, CALL, now=NOW) == TokenClaims(CALL, int(NOW) + 30, "fs-node-1")


def test_round_trip_with_bytes_secret_and_no_call_check():
    token = mint(SECRET.encode(), CALL, 30, now=NOW)
    assert verify(SECRET, token, now=NOW + 29).call_uuid == CALL


def test_real_clock_is_used_when_now_omitted():
    assert verify(SECRET, mint(SECRET, CALL, 60), CALL).call_uuid == CALL


def test_payload_format_is_compact_json():
    payload_b64, _, _ = mint(SECRET, CALL, 30, now=NOW, instance="a").partition(".")
    payload = base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4))
    assert payload == json.dumps({"c": CALL, "e": int(NOW) + 30, "i": "a"}, separators=(",", ":")).encode()


def test_fractional_expiry_rounds_up_so_a_token_is_never_born_expired():
    token = mint(SECRET, CALL, 0.5, now=NOW + 0.7)
    assert verify(SECRET, token, CALL, now=NOW + 0.9).expires_at == int(NOW) + 2


def test_expired_at_and_after_expiry():
    token = mint(SECRET, CALL, 30, now=NOW)
    assert verify(SECRET, token, CALL, now=NOW + 29.999)
    for later in (NOW + 30, NOW + 3600):
        error = _refused(token, "expired", call_uuid=CALL, now=later)
        assert "expired" in str(error)


def test_tampered_payload():
    token = mint(SECRET, CALL, 30, now=NOW)
    payload_b64, _, signature = token.partition(".")
    forged = _b64(json.dumps({"c": CALL, "e": int(NOW) + 99999, "i": ""}, separators=(",", ":")).encode())
    error = _refused(f"{forged}.{signature}", "bad-signature", now=NOW + 60)
    assert "signature" in str(error)


def test_tampered_signature():
    payload_b64, _, signature = mint(SECRET, CALL, 30, now=NOW).partition(".")
    flipped = bytearray(base64.urlsafe_b64decode(signature + "="))
    flipped[0] ^= 1
    _refused(f"{payload_b64}.{_b64(bytes(flipped))}", "bad-signature")
    _refused(f"{payload_b64}.{_b64(bytes(flipped[:16]))}", "bad-signature")


def test_other_secret():
    _refused(mint("another-secret-entirely", CALL, 30, now=NOW), "bad-signature")


def test_wrong_call():
    error = _refused(mint(SECRET, CALL, 30, now=NOW), "wrong-call", call_uuid="other-call")
    assert "different call" in str(error)


@pytest.mark.parametrize("token", [
    "",
    "nodot",
    "a.b.c",
    ".",
    "abc.",
    ".abc",
    "ab!c.def",
    "abc.d+f/",
    "abcde.abcd",  # 5 base64 chars cannot encode whole bytes
    "abc=.abcd",
    "YQ.YR",  # non-canonical: trailing bits set
    "A" * (MAX_TOKEN_CHARS + 1),
    "YQ." + "é" * 4,
])
def test_malformed(token):
    error = _refused(token, "malformed")
    assert "malformed" in str(error)


def test_non_string_token_is_malformed():
    _refused(None, "malformed")


@pytest.mark.parametrize("payload", [
    b"not json",
    b"\xff\xfe",
    b"[1, 2]",
    b'{"c": "x", "e": 1}',
    b'{"c": "x", "e": "soon", "i": ""}',
    b'{"c": "x", "e": true, "i": ""}',
    b'{"c": 7, "e": 1, "i": ""}',
    b'{"c": "x", "e": 1, "i": "", "admin": true}',
])
def test_signed_but_malformed_payload(payload):
    _refused(_signed(payload), "malformed")


def test_tokens_are_url_safe_and_short():
    for instance in ("", "voxgate-prod-eu-west-1.example"):
        token = mint(SECRET, CALL, 3600, now=NOW, instance=instance)
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)
        assert quote(token, safe="") == token
        assert len(token) < 200


@pytest.mark.parametrize("kwargs", [
    {"secret": "", "call_uuid": CALL, "ttl_s": 30},
    {"secret": b"", "call_uuid": CALL, "ttl_s": 30},
    {"secret": SECRET, "call_uuid": "", "ttl_s": 30},
    {"secret": SECRET, "call_uuid": CALL, "ttl_s": 0},
    {"secret": SECRET, "call_uuid": CALL, "ttl_s": -1},
    {"secret": SECRET, "call_uuid": CALL, "ttl_s": float("nan")},
])
def test_mint_rejects_unusable_arguments(kwargs):
    with pytest.raises(ValueError):
        mint(**kwargs, now=NOW)


def test_verify_with_empty_secret_is_a_programming_error():
    with pytest.raises(ValueError) as info:
        verify("", mint(SECRET, CALL, 30, now=NOW), now=NOW)
    assert not isinstance(info.value, TokenError)
