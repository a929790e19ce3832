"""Signatures: a vector computed with openssl, tampering, wrong secrets, stale times, rotation, and the docs' helper."""

from __future__ import annotations

import time

import pytest

from controller.webhooks import SignatureError, delivery_headers, new_event, signature_header, sign, verify

from .conftest import SECRET, call_info

BODY = b'{"id":"evt_1","type":"call.ended"}'
T = 1764063095
# printf '%s' '1764063095.{"id":"evt_1","type":"call.ended"}' | openssl dgst -sha256 -hmac 'whsec-test-0123456789abcdef'
OPENSSL_V1 = "e004beee8d3b3cce5c354ce790184fb96eaf20a2321d8b445b35547c87368c67"
OLD_SECRET = "whsec-old-fedcba9876543210"


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    assert sign(SECRET, T, BODY) == OPENSSL_V1
    assert signature_header([SECRET], T, BODY) == f"t={T},v1={OPENSSL_V1}"
    assert verify(SECRET, f"t={T},v1={OPENSSL_V1}", BODY, now=T + 10) == T


def test_a_tampered_body_or_a_wrong_secret_is_refused():
    header = signature_header([SECRET], T, BODY)
    for body in (BODY + b" ", BODY.replace(b"ended", b"ENDED"), b""):
        with pytest.raises(SignatureError, match="no v1 signature matches"):
            verify(SECRET, header, body, now=T)
    with pytest.raises(SignatureError, match="no v1 signature matches"):
        verify(OLD_SECRET, header, BODY, now=T)
    with pytest.raises(SignatureError, match="no v1 signature matches"):  # the timestamp is signed too
        verify(SECRET, header.replace(f"t={T}", f"t={T + 1}"), BODY, now=T)


def test_stale_and_future_timestamps_are_refused():
    header = signature_header([SECRET], T, BODY)
    assert verify(SECRET, header, BODY, now=T + 300) == T
    assert verify(SECRET, header, BODY, now=T - 300) == T
    with pytest.raises(SignatureError, match="301 s old, more than the 300 s allowed"):
        verify(SECRET, header, BODY, now=T + 301)
    with pytest.raises(SignatureError, match="301 s ahead"):
        verify(SECRET, header, BODY, now=T - 301)
    with pytest.raises(SignatureError, match="more than the 60 s allowed"):
        verify(SECRET, header, BODY, tolerance_s=60, now=T + 61)
    now = int(time.time())
    assert verify(SECRET, signature_header([SECRET], now, BODY), BODY) == now  # the real clock by default


def test_rotation_either_secret_matches_one_of_several_v1_values():
    header = signature_header([SECRET, OLD_SECRET], T, BODY)
    assert header.count(",v1=") == 2
    assert verify(SECRET, header, BODY, now=T) == T
    assert verify(OLD_SECRET, header, BODY, now=T) == T
    with pytest.raises(SignatureError):
        verify("whsec-someone-else-000000", header, BODY, now=T)
    unknown_scheme = f"t={T},v0=deadbeef,v1={OPENSSL_V1}"  # schemes a receiver does not know are ignored
    assert verify(SECRET, unknown_scheme, BODY, now=T) == T


@pytest.mark.parametrize("header, why", [
    ("", "exactly one t="),
    (f"v1={OPENSSL_V1}", "exactly one t="),
    (f"t={T},t={T},v1={OPENSSL_V1}", "exactly one t="),
    (f"t=-{T},v1={OPENSSL_V1}", "exactly one t="),
    (f"t=١٧٦,v1={OPENSSL_V1}", "exactly one t="),  # Arabic-Indic digits: isdigit() alone would take them
    (f"t={T}", "no v1 signature"),
    (f"t={T},v1=é", "no v1 signature matches"),  # non-ASCII must be refused, not crash compare_digest
])
def test_malformed_headers_are_refused_with_a_reason(header, why):
    with pytest.raises(SignatureError, match=why):
        verify(SECRET, header, BODY, now=T)


def test_text_bodies_are_taken_as_utf8():
    body = '{"text":"café"}'
    assert verify(SECRET, signature_header([SECRET], T, body.encode()), body, now=T) == T


def test_the_docs_helper_agrees_with_verify(docs_verify):
    now = int(time.time())
    fresh = signature_header([SECRET], now, BODY)
    cases = [
        (SECRET, fresh, BODY, True),
        (SECRET, fresh, BODY + b"x", False),
        (OLD_SECRET, fresh, BODY, False),
        (SECRET, signature_header([SECRET], now - 301, BODY), BODY, False),
        (SECRET, signature_header([SECRET], now + 301, BODY), BODY, False),
        (OLD_SECRET, signature_header([SECRET, OLD_SECRET], now, BODY), BODY, True),
        (SECRET, f"t={now},t={now},{fresh.split(',')[1]}", BODY, False),
        (SECRET, f"t={now}", BODY, False),
        (SECRET, f"t={now},v1=é", BODY, False),
        (SECRET, "garbage", BODY, False),
    ]
    for secret, header, body, expected in cases:
        assert docs_verify(secret, header, body) is expected, header
        try:
            verify(secret, header, body)
            agreed = True
        except SignatureError:
            agreed = False
        assert agreed is expected, header


def test_every_attempt_carries_the_event_delivery_and_signature_headers():
    from controller.webhooks import call_started

    event = new_event("call.started", call_started(call_info()))
    headers = delivery_headers(event, "dlv_1", [SECRET], BODY, T)
    assert headers == {
        "Content-Type": "application/json", "User-Agent": "voxgate-webhooks/1", "Voxgate-Event": "call.started",
        "Voxgate-Delivery": "dlv_1", "Voxgate-Signature": f"t={T},v1={OPENSSL_V1}",
    }
