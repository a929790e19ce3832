"""Call recordings: stereo (caller left, agent right), encrypted at rest with AES-256-GCM.

A recording is written while the call goes on, one encrypted segment per second, so a
crash loses at most the last second and never leaves plaintext on disk. The file format:

    b"VXREC1\\n" + one JSON header line (key id, call, rate, nonce prefix) + b"\\n"
    then segments: 4-byte big-endian length + AES-GCM ciphertext (with its 16-byte tag)

Each segment's nonce is the file's random 7-byte prefix, the segment number (4 bytes) and a
final flag (1 byte); the header is the associated data of every segment. So a segment that
is altered, moved, dropped or borrowed from another file fails authentication, and a file
cut short is recognised (no final segment) rather than mistaken for a short call.

The caller's frames are the clock: agent audio is placed where the caller's stream stood
when it left for the PBX. File work runs on one writer thread shared by all calls; the
media path only appends to memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controller.audio import Resampler
from controller.records.cdr import RecordingRecord

log = logging.getLogger(__name__)

MAGIC = b"VXREC1\n"
SUFFIX = ".vxrec"
CHANNELS = 2
SEGMENT_S = 1.0
_PREFIX_BYTES = 7
_MAX_SEGMENT = 16 * 1024 * 1024


class RecordingError(Exception):
    """A recording cannot be read: the message says which file and why."""


@dataclass(frozen=True, slots=True, repr=False)
class RecordingKey:
    """One AES-256 key and the id stored with every file it encrypts (the repr never shows the key)."""

    key_id: str
    key: bytes

    def __repr__(self) -> str:
        return f"RecordingKey({self.key_id!r})"


def parse_keys(text: str) -> list[RecordingKey]:
    """`id:base64key[,id:base64key...]`; the first encrypts new recordings, all of them decrypt.

    Rotation: put the new key first and keep the old ones listed until their files are purged.
    """
    keys: list[RecordingKey] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id or not key_id.replace("-", "").replace("_", "").isalnum():
            raise ValueError("each recording key is id:base64key, the id letters, digits, - or _")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError(f"recording key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise ValueError(f"recording key {key_id!r} is {len(key)} bytes; AES-256 needs 32")
        if any(k.key_id == key_id for k in keys):
            raise ValueError(f"recording key id {key_id!r} is listed twice")
        keys.append(RecordingKey(key_id, key))
    if not keys:
        raise ValueError("no recording key given")
    return keys


def new_key_text(key_id: str) -> str:
    """A fresh key in the form parse_keys reads (for `voxgate recording new-key`)."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


# ---------------------------------------------------------------- writing


class _EncryptedFile:
    """The writer thread's side of one recording: encrypts, appends, hashes, fsyncs at the end."""

    def __init__(self, path: Path, key: RecordingKey, header: dict) -> None:
        self.path = path
        self._aead = AESGCM(key.key)
        self._prefix = bytes.fromhex(header["nonce_prefix"])
        self._aad = MAGIC + json.dumps(header, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        self._hash = hashlib.sha256()
        self._index = 0
        self._size = 0
        self._file: BinaryIO | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb")
        self._append(self._aad)

    def segment(self, plain: bytes, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, final), plain, self._aad)
        self._index += 1
        self._append(len(sealed).to_bytes(4, "big") + sealed)

    def finish(self) -> tuple[int, str]:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self._size, self._hash.hexdigest()

    def abandon(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()

    def _append(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._hash.update(data)
        self._size += len(data)


class Recorder:
    """One call's recording; a MediaTap. `await close()` seals the file and returns its record (None on failure)."""

    def __init__(self, store: RecordingStore, path: Path, header: dict, started_at: datetime, seq: int = 1) -> None:
        self._store = store
        self._seq = seq
        self.rate: int = header["sample_rate"]
        self._header = header
        self._started_at = started_at
        self._file = _EncryptedFile(path, store.key, header)
        self._caller = bytearray()
        self._agent = bytearray()
        self._caller_len = 0   # samples since the start, caller channel (the clock)
        self._agent_len = 0
        self._emitted = 0      # samples already handed to the writer
        self._segment = int(self.rate * SEGMENT_S)
        self._resamplers: dict[tuple[str, int], Resampler] = {}
        self._pending: asyncio.Future[None] | None = None
        self.failed: str | None = None
        self._closed = False
        self._submit(self._file.open)

    # MediaTap
    def caller(self, pcm: bytes, sample_rate: int) -> None:
        if self._closed or self.failed:
            return
        pcm = self._at_rate("caller", pcm, sample_rate)
        self._caller += pcm
        self._caller_len += len(pcm) // 2
        self._emit_ready()

    def agent(self, pcm: bytes, sample_rate: int) -> None:
        if self._closed or self.failed:
            return
        pcm = self._at_rate("agent", pcm, sample_rate)
        gap = self._caller_len - self._agent_len
        if gap > 0:  # the agent was silent until now: it speaks where the caller's stream stands
            self._agent += bytes(2 * gap)
            self._agent_len += gap
        self._agent += pcm
        self._agent_len += len(pcm) // 2

    async def close(self) -> RecordingRecord | None:
        """Write what is left as the final segment and seal the file."""
        if self._closed:
            return None
        self._closed = True
        total = max(self._caller_len, self._agent_len)
        if not self.failed:
            self._submit(lambda: self._file.segment(self._interleave(total - self._emitted), True))
        try:
            if self._pending is not None:
                await self._pending
            size, digest = await asyncio.get_running_loop().run_in_executor(self._store.executor, self._file.finish)
        except Exception as exc:  # disk full, folder gone: the call is unaffected, the failure is said
            self._fail(exc)
        if self.failed:
            await asyncio.get_running_loop().run_in_executor(self._store.executor, self._file.abandon)
            return None
        return RecordingRecord(
            pbx=self._header["pbx"], call_uuid=self._header["call_uuid"], seq=self._seq, path=str(self._file.path),
            started_at=self._started_at, duration_s=round(total / self.rate, 3), channels=CHANNELS,
            sample_rate=self.rate, size_bytes=size, sha256=digest, key_id=self._header["key_id"])

    def _at_rate(self, side: str, pcm: bytes, sample_rate: int) -> bytes:
        if sample_rate == self.rate:
            return pcm
        resampler = self._resamplers.get((side, sample_rate))
        if resampler is None:
            resampler = self._resamplers[(side, sample_rate)] = Resampler(sample_rate, self.rate)
        return resampler.convert(pcm)

    def _emit_ready(self) -> None:
        while self._caller_len - self._emitted >= self._segment:
            plain = self._interleave(self._segment)
            self._submit(lambda plain=plain: self._file.segment(plain, False))

    def _interleave(self, samples: int) -> bytes:
        """The next `samples` of both channels, interleaved, dropped from memory."""
        out = np.zeros((samples, CHANNELS), dtype="<i2")
        for column, buffer in enumerate((self._caller, self._agent)):
            have = min(samples, len(buffer) // 2)
            out[:have, column] = np.frombuffer(buffer, dtype="<i2", count=have)
            del buffer[:2 * have]
        self._emitted += samples
        # a channel that had less is now padded up to here: its next audio starts no earlier
        self._caller_len = max(self._caller_len, self._emitted)
        self._agent_len = max(self._agent_len, self._emitted)
        return out.tobytes()

    def _submit(self, work) -> None:
        previous = self._pending
        loop = asyncio.get_running_loop()

        async def run() -> None:
            if previous is not None:
                await previous
            if not self.failed:
                try:
                    await loop.run_in_executor(self._store.executor, work)
                except Exception as exc:
                    self._fail(exc)

        self._pending = asyncio.ensure_future(run())

    def _fail(self, exc: BaseException) -> None:
        if not self.failed:
            self.failed = f"{type(exc).__name__}: {exc}"
            log.error("call %s: recording stopped (%s); the call goes on", self._header["call_uuid"], self.failed)


class RecordingStore:
    """Where recordings go and the key that seals them; one writer thread for every call's files."""

    def __init__(self, directory: str | Path, key: RecordingKey) -> None:
        self.directory = Path(directory)
        self.key = key
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxgate-recording")

    def start(self, pbx: str, call_uuid: str, sample_rate: int, started_at: datetime, *, seq: int = 1) -> Recorder:
        """A recorder for one call, its file under directory/YYYY/MM/DD/ (purged by age); a call taken
        over by another session records again under a later `seq`, in a file of its own."""
        if not call_uuid or "/" in call_uuid or call_uuid.startswith("."):
            raise ValueError(f"bad call uuid for a file name: {call_uuid!r}")
        header = {"v": 1, "pbx": pbx, "call_uuid": call_uuid, "key_id": self.key.key_id,
                  "sample_rate": sample_rate, "channels": CHANNELS, "started_at": started_at.isoformat(),
                  "nonce_prefix": secrets.token_bytes(_PREFIX_BYTES).hex()}
        name = call_uuid if seq == 1 else f"{call_uuid}-{seq}"
        path = self.directory / started_at.strftime("%Y/%m/%d") / f"{name}{SUFFIX}"
        return Recorder(self, path, header, started_at, seq)

    def close(self) -> None:
        self.executor.shutdown(wait=True)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Decrypted:
    """A recording read back: interleaved stereo L16, and whether its final segment was there."""

    header: dict
    pcm: bytes
    complete: bool

    @property
    def sample_rate(self) -> int:
        return int(self.header["sample_rate"])


def decrypt(path: str | Path, keys: list[RecordingKey]) -> Decrypted:
    """Read and authenticate a recording; RecordingError says what is wrong (key, tampering, format)."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise RecordingError(f"{path}: not a voxgate recording")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise RecordingError(f"{path}: header is cut short")
    aad = data[:end + 1]
    try:
        header = json.loads(data[len(MAGIC):end])
        prefix = bytes.fromhex(header["nonce_prefix"])
        key_id = header["key_id"]
    except (ValueError, KeyError, TypeError):
        raise RecordingError(f"{path}: unreadable header") from None
    key = next((k for k in keys if k.key_id == key_id), None)
    if key is None:
        raise RecordingError(f"{path}: encrypted with key {key_id!r}, which is not configured "
                             "(keep rotated keys listed in recording_keys until their files are purged)")
    aead = AESGCM(key.key)
    pcm, offset, index, complete = bytearray(), end + 1, 0, False
    while offset < len(data):
        if complete:
            raise RecordingError(f"{path}: data after the final segment")
        if offset + 4 > len(data):
            break  # cut inside a length: the writer died mid-append
        length = int.from_bytes(data[offset:offset + 4], "big")
        sealed = data[offset + 4:offset + 4 + length]
        if length > _MAX_SEGMENT or len(sealed) < length:
            break
        plain, complete = _open(aead, prefix, index, sealed, aad, path)
        pcm += plain
        offset += 4 + length
        index += 1
    return Decrypted(header, bytes(pcm), complete)


def _open(aead: AESGCM, prefix: bytes, index: int, sealed: bytes, aad: bytes,
          path: str | Path) -> tuple[bytes, bool]:
    """One segment's audio and whether it is the final one (the flag is part of the nonce)."""
    for final in (False, True):
        try:
            return aead.decrypt(_nonce(prefix, index, final), sealed, aad), final
        except InvalidTag:
            continue
    raise RecordingError(f"{path}: segment {index} fails authentication (altered file, or the wrong key)")


def write_wav(recording: Decrypted, out: str | Path) -> None:
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(2)
        wav.setframerate(recording.sample_rate)
        wav.writeframes(recording.pcm)
