"""Audio from an http(s) URL: size-limited, time-limited, and clear about what went wrong."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import aiohttp

from controller.call import CommandFailed

MAX_BYTES = 16 * 1024 * 1024  # ~17 minutes of 8 kHz audio: far more than any prompt
TIMEOUT_S = 10.0
SCHEMES = ("http", "https")


def is_url(source: str) -> bool:
    return urlsplit(source).scheme.lower() in SCHEMES and "://" in source


def shown(url: str) -> str:
    """The URL as it may appear in logs and errors: no credentials, no query (tokens live there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def fetch(url: str, *, max_bytes: int = MAX_BYTES, timeout_s: float = TIMEOUT_S) -> tuple[bytes, str]:
    """(body, content type) of a GET; CommandFailed for an HTTP error, a body over `max_bytes`, or no
    complete answer within `timeout_s`."""
    if not is_url(url):
        raise ValueError(f"not an http(s) URL: {shown(url)}")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session, \
                session.get(url) as response:
            if response.status >= 400:
                raise CommandFailed(f"fetching {shown(url)}: HTTP {response.status} {response.reason or ''}".rstrip())
            if response.content_length is not None and response.content_length > max_bytes:
                raise CommandFailed(f"fetching {shown(url)}: {response.content_length} bytes is over the "
                                    f"{max_bytes}-byte limit")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > max_bytes:
                    raise CommandFailed(f"fetching {shown(url)}: more than the {max_bytes}-byte limit")
            return bytes(body), response.content_type
    except TimeoutError:
        raise CommandFailed(f"fetching {shown(url)}: no complete answer within {timeout_s:g} s") from None
    except aiohttp.ClientError as exc:
        raise CommandFailed(f"fetching {shown(url)}: {type(exc).__name__}: {exc}") from None
