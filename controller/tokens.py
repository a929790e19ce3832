"""Signed, expiring per-call tokens for the mod_audio_fork WebSocket URL.

FreeSWITCH cannot add headers to the WebSocket upgrade, so the credential rides in the
URL query: it has to be URL-safe, short, bound to one call, and worthless soon after.
Format: base64url(JSON {"c": call, "e": expiry, "i": instance}) "." base64url(HMAC-SHA256).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Literal

Reason = Literal["malformed", "bad-signature", "expired", "wrong-call", "wrong-instance"]

MAX_TOKEN_CHARS = 1024  # refuse before hashing anything larger
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MESSAGES: dict[str, str] = {
    "malformed": "token is malformed",
    "bad-signature": "token signature does not match",
    "expired": "token has expired",
    "wrong-call": "token is for a different call",
    "wrong-instance": "token was minted by another voxgate instance",
}


class TokenError(ValueError):
    """A token was refused; `reason` is malformed, bad-signature, expired, wrong-call or wrong-instance."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        message = _MESSAGES[reason] + (f" ({detail})" if detail else "")
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified token vouches for."""

    call_uuid: str
    expires_at: int  # Unix seconds; the token is refused from this instant on
    instance: str


def _key(secret: bytes | str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("token secret must not be empty")
    return key


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64url: only the alphabet, no padding, and the one canonical spelling."""
    if not _B64URL.fullmatch(text):
        raise TokenError("malformed", "not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise TokenError("malformed", "not base64url") from None
    if _b64encode(data) != text:
        raise TokenError("malformed", "not canonical base64url")
    return data


def _sign(key: bytes, payload_b64: str) -> bytes:
    return hmac.new(key, payload_b64.encode("ascii"), hashlib.sha256).digest()


def mint(secret: bytes | str, call_uuid: str, ttl_s: float, now: float | None = None,
         instance: str = "") -> str:
    """A token admitting `call_uuid` until now + ttl_s (rounded up to a whole second)."""
    if not call_uuid:
        raise ValueError("call_uuid must not be empty")
    if not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s!r}")
    issued = time.time() if now is None else now
    claims = {"c": call_uuid, "e": math.ceil(issued + ttl_s), "i": instance}
    payload_b64 = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload_b64}.{_b64encode(_sign(_key(secret), payload_b64))}"


def verify(secret: bytes | str, token: str, call_uuid: str | None = None,
           now: float | None = None, instance: str | None = None) -> TokenClaims:
    """The token's claims if it is ours, intact, for `call_uuid` and `instance` (when given) and unexpired.

    The signature is checked before the payload is parsed, so untrusted JSON is never read. Instances
    that share a secret still refuse each other's tokens: a fork sent to the wrong instance says so.
    """
    key = _key(secret)
    if not isinstance(token, str) or not token:
        raise TokenError("malformed", "empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenError("malformed", f"longer than {MAX_TOKEN_CHARS} characters")
    payload_b64, dot, signature_b64 = token.partition(".")
    if not dot or "." in signature_b64:
        raise TokenError("malformed", "expected payload.signature")
    payload = _b64decode(payload_b64)
    signature = _b64decode(signature_b64)
    if not hmac.compare_digest(signature, _sign(key, payload_b64)):
        raise TokenError("bad-signature")
    try:
        claims = json.loads(payload.decode("utf-8"))
    except ValueError:
        raise TokenError("malformed", "payload is not JSON") from None
    if (not isinstance(claims, dict) or set(claims) != {"c", "e", "i"}
            or not isinstance(claims["c"], str) or type(claims["e"]) is not int
            or not isinstance(claims["i"], str)):
        raise TokenError("malformed", "payload is not {c, e, i}")
    verified = TokenClaims(call_uuid=claims["c"], expires_at=claims["e"], instance=claims["i"])
    if call_uuid is not None and verified.call_uuid != call_uuid:
        raise TokenError("wrong-call", f"{verified.call_uuid}, expected {call_uuid}")
    if instance is not None and verified.instance != instance:
        raise TokenError("wrong-instance", f"minted by {verified.instance!r}, this is {instance!r}")
    current = time.time() if now is None else now
    if current >= verified.expires_at:
        raise TokenError("expired", f"at {verified.expires_at}, now {current:.0f}")
    return verified
