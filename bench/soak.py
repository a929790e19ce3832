"""Soak: N concurrent simulated calls for M minutes through one voxgate process, with null engines.

Calls are long-lived and recycled: each of N slots keeps a call up (30-90 s of audio both ways, the
bench flow of bench/load.py playing a reply and storing a turn every 2.5 s), hangs it up and places
the next, so 100 calls for 10 minutes make about a thousand calls and 16 call-hours. voxgate runs
in a child process, so its memory, descriptors and CPU are its own; every --sample-s it reports RSS,
Python heap blocks, malloc in use, open descriptors, live calls, asyncio tasks, gc-tracked objects,
frames in/out/late/dropped, records written and the journal backlog; the simulator (this process)
adds what the PBX counted and its own loop lag, so a frame lost by a stalled simulator is told
apart from one lost by voxgate. At the end: the table, memory growth per call-hour (least squares
over the samples after warm-up), descriptors and objects once every call ended versus after the
first call, and the rows in the database versus the calls placed. Exits 1 on any loss (a CDR,
turn or event missing, a dropped frame, a call cut short, a leaked descriptor, memory growing
faster than --max-growth), so it can gate a release.

    python bench/soak.py [--calls 100] [--minutes 10] [--pbx freeswitch|asterisk [--media audiosocket|websocket]]
                         [--postgres | --database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
import types
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.asterisk import AMI_SECRET, WS_PASSWORD, WS_USER  # noqa: E402
from bench.calls import SPEECH  # noqa: E402
from bench.load import register_bench_flow  # noqa: E402

SETTLE_S = 30.0  # after the last hang-up: how long calls, records and descriptors get to wind down
END_WAIT_S = 30.0  # a simulated call not gone this long after its hang-up is stuck
TOP_TYPES = 16


# ---------------------------------------------------------------- the voxgate side (child process)


class LatencyHistogram:
    """Arrival -> flow latencies in 10 µs bins: millions of frames in constant memory.

    Stands in for the list register_bench_flow appends to: a list would itself grow by ~100 MB
    over a soak, the very thing being measured.
    """

    BIN_S = 1e-5

    def __init__(self, top_s: float = 0.5) -> None:
        self._counts = [0] * (int(top_s / self.BIN_S) + 1)  # the last bin takes everything above top_s
        self._seen = np.zeros(len(self._counts), dtype=np.int64)
        self.max_s = 0.0

    def append(self, latency_s: float) -> None:
        index = int(latency_s / self.BIN_S)
        self._counts[index if index < len(self._counts) else -1] += 1
        if latency_s > self.max_s:
            self.max_s = latency_s

    def window(self) -> dict[str, float]:
        """Percentiles of the frames since the previous window, and of all of them."""
        counts = np.array(self._counts, dtype=np.int64)
        recent, self._seen = counts - self._seen, counts
        return {"p99_ms": _percentile_ms(recent, 99), "all_p50_ms": _percentile_ms(counts, 50),
                "all_p99_ms": _percentile_ms(counts, 99), "max_ms": self.max_s * 1000}


def _percentile_ms(counts: np.ndarray, q: float) -> float:
    total = int(counts.sum())
    if not total:
        return 0.0
    index = int(np.searchsorted(np.cumsum(counts), total * q / 100))
    return (index + 1) * LatencyHistogram.BIN_S * 1000  # the bin's upper edge


@dataclass
class MediaTally:
    """Frame counters summed over calls: those that ended, plus the live ones at a sample."""

    frames_in: int = 0
    dropped: int = 0
    out_frames: int = 0
    late: int = 0
    total_late_ms: float = 0.0
    max_late_ms: float = 0.0

    def add(self, media) -> None:
        self.frames_in += media.frames_in
        self.dropped += media.frames_dropped
        self.out_frames += media.pacing.frames
        self.late += media.pacing.late_frames
        self.total_late_ms += media.pacing.total_late_ms
        self.max_late_ms = max(self.max_late_ms, media.pacing.max_late_ms)

    def plus(self, ports: Iterable) -> MediaTally:
        total = MediaTally(**asdict(self))
        for media in ports:
            total.add(media)
        return total


class LogCounter(logging.Handler):
    """Counts voxgate's warnings and errors (they are printed too, on stderr)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname.lower()] += 1


@dataclass
class Probe:
    """What the child measures besides the controller's own counters."""

    latencies: LatencyHistogram = field(default_factory=LatencyHistogram)
    ended: MediaTally = field(default_factory=MediaTally)
    logs: LogCounter = field(default_factory=LogCounter)
    turns: int = 0
    baseline_fds: dict[str, str] = field(default_factory=dict)
    baseline_types: Counter[str] = field(default_factory=Counter)


def register_soak_flow(flows, calls, probe: Probe) -> None:
    """`soak`: the bench flow with a stored turn per reply; each call's frame counters are kept when it leaves."""
    from controller.records.cdr import TurnRecord

    def store_turn(call, n: int) -> None:
        now = datetime.now(UTC)
        call.on_turn(TurnRecord(call.info.pbx, call.info.uuid, n, "agent", "A reply.", "A reply.", now, now,
                                voice_to_voice_ms=500.0))
        probe.turns += 1

    register_bench_flow(flows, probe.latencies, store_turn)
    bench = flows.get("bench")

    @flows.register("soak")
    async def soak(call) -> str:
        calls.departure(call.info.uuid).add_done_callback(lambda _: probe.ended.add(call.media))
        return await bench.fn(call)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        function = ctypes.CDLL(None).mallinfo2  # glibc >= 2.33
    except (AttributeError, OSError):
        return None
    function.restype = _MallInfo2
    return function


_MALLINFO2 = _mallinfo2()


def malloc_in_use_kib() -> float:
    """glibc's bytes handed out by malloc (bytes objects over 512 B, numpy, SQLite...): RSS also holds what the
    allocators keep after a peak, this does not. -1 without mallinfo2."""
    if _MALLINFO2 is None:
        return -1.0
    info = _MALLINFO2()
    return (info.uordblks + info.hblkhd) / 1024


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def open_fds() -> dict[str, str]:
    """fd -> what it is (socket:[inode], pipe:[inode], anon_inode:[eventfd], a path)."""
    targets = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return targets


def fd_kind(target: str) -> str:
    return target.split(":", 1)[0] if ":" in target and not target.startswith("/") else f"file {target}"


def journal_backlog_bytes(journal_dir: Path) -> int:
    """Bytes of the record journal not yet acknowledged by the database (read from its files)."""
    try:
        size = (journal_dir / "records.jsonl").stat().st_size
    except FileNotFoundError:
        return 0
    try:
        checkpoint = int((journal_dir / "records.checkpoint").read_text().strip() or 0)
    except FileNotFoundError:
        checkpoint = 0
    return max(0, size - checkpoint)


def type_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _referent(obj: object) -> str:
    return f"class {obj.__module__}.{obj.__qualname__}" if isinstance(obj, type) else type_name(obj)


def type_counts() -> Counter[str]:
    """Objects by type, plus weak references by what they refer to (the top growers after a soak)."""
    counts = Counter(type_name(o) for o in gc.get_objects())
    counts.update(f"weakref to {_referent(o())}" for o in gc.get_objects() if isinstance(o, weakref.ref))
    return counts


def cyclic_garbage() -> Counter[str]:
    """A full collection, and what it freed by type: objects in reference cycles, which wait for the collector's
    full pass (every 300 s) instead of going when their call ends."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        freed = Counter(type_name(o) for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    gc.collect()
    return freed


def dead_weakref_holders() -> Counter[str]:
    """Who keeps weak references whose object is gone (each one a small leak when it grows with the calls):
    the container, and what holds the container. Plain loops: a comprehension's closure would hold them too."""
    dead = []
    for obj in gc.get_objects():
        if isinstance(obj, weakref.ref) and obj() is None:
            dead.append(obj)
    holders: Counter[str] = Counter()
    for ref in dead:
        containers = gc.get_referrers(ref)
        for container in containers:
            if container is dead or isinstance(container, types.FrameType):
                continue
            owners = set()
            for owner in gc.get_referrers(container):
                if owner is not containers and not isinstance(owner, types.FrameType):
                    owners.add(type_name(owner))
            holders[f"{type_name(container)} held by {', '.join(sorted(owners)[:3]) or 'nothing tracked'}"] += 1
    return holders


def sample(controller, probe: Probe, journal_dir: Path) -> dict:
    started = time.perf_counter()
    calls = list(controller.calls.values())
    writer = controller.writer
    out = {
        "rss_kib": rss_kib(), "fds": len(open_fds()), "live": len(calls), "tasks": len(asyncio.all_tasks()),
        "objects": len(gc.get_objects()), "py_blocks": sys.getallocatedblocks(), "malloc_kib": malloc_in_use_kib(),
        "threads": threading.active_count(),
        "full_gcs": controller.collector.stats.full, "cpu_s": time.process_time(),
        "started": controller.stats.started, "finished": controller.stats.finished,
        "flow_failed": controller.stats.failed, "outcomes": dict(controller.stats.outcomes),
        **asdict(probe.ended.plus(c.media for c in calls)), **probe.latencies.window(),
        "turns_submitted": probe.turns, "cdrs_written": writer.written_calls, "events_written": writer.written_events,
        "turns_written": writer.written_turns, "pending": writer.pending, "queued": writer.queued,
        "journal_kib": journal_backlog_bytes(journal_dir) / 1024, "refused": controller.stats.records_refused,
        "rejected": writer.rejected, "quarantined": writer.quarantined, "failed_batches": writer.failed_batches,
        "warnings": probe.logs.counts["warning"], "errors": probe.logs.counts["error"] + probe.logs.counts["critical"],
    }
    out["sample_ms"] = (time.perf_counter() - started) * 1000
    return out


async def answer(command: str, controller, probe: Probe, journal_dir: Path) -> dict:
    """sample | baseline (records flushed, a full collection, descriptors noted) | final (the same, compared)."""
    if command == "sample":
        return sample(controller, probe, journal_dir)
    try:
        async with asyncio.timeout(SETTLE_S):
            await controller.writer.flush()
    except TimeoutError:
        pass  # left in `pending`: the parent reports it as records not written
    before = sample(controller, probe, journal_dir)
    garbage = cyclic_garbage()
    fds, counts = open_fds(), type_counts()
    objects = sum(n for name, n in counts.items() if not name.startswith("weakref to "))
    out = {**before, "rss_after_gc_kib": rss_kib(), "objects_after_gc": objects, "fds": len(fds),
           "garbage": sum(garbage.values()), "garbage_types": garbage.most_common(TOP_TYPES),
           "py_blocks_after_gc": sys.getallocatedblocks(), "malloc_after_gc_kib": malloc_in_use_kib()}
    if command == "baseline":
        probe.baseline_fds, probe.baseline_types = fds, counts
        out["fd_kinds"] = dict(Counter(fd_kind(t) for t in fds.values()))
        return out
    out["dead_weakref_holders"] = dead_weakref_holders().most_common(5)
    grown = Counter(counts)
    grown.subtract(probe.baseline_types)
    out["type_growth"] = [(name, n) for name, n in grown.most_common(TOP_TYPES) if n > 0]
    out["new_fds"] = sorted(t for fd, t in fds.items() if probe.baseline_fds.get(fd) != t)
    out["gone_fds"] = sorted(t for fd, t in probe.baseline_fds.items() if fds.get(fd) != t)
    return out


async def serve(pbx: str, ami_port: int | None) -> None:
    from controller.app import Controller
    from controller.config import load_settings
    from controller.flows import builtin_flows

    probe = Probe()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().addHandler(probe.logs)
    journal_dir = Path(os.environ["SOAK_JOURNAL_DIR"])
    env = {"VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0", "VOXGATE_PRELOAD_ENGINES": "false",
           "VOXGATE_DATABASE_URL": os.environ["SOAK_DATABASE_URL"], "VOXGATE_JOURNAL_DIR": str(journal_dir),
           "VOXGATE_TOKEN_SECRET": "bench-secret-0123456789", "VOXGATE_LOG_LEVEL": "WARNING"}
    if pbx == "asterisk":
        env.update({"VOXGATE_ASTERISK": "true", "VOXGATE_AMI_PORT": str(ami_port), "VOXGATE_AMI_SECRET": AMI_SECRET,
                    "VOXGATE_AUDIOSOCKET_PORT": "0", "VOXGATE_MEDIA_WS_PORT": "0",
                    "VOXGATE_MEDIA_WS_USERNAME": WS_USER, "VOXGATE_MEDIA_WS_PASSWORD": WS_PASSWORD})
    flows = builtin_flows()
    controller = Controller(load_settings(env), flows)
    register_soak_flow(flows, controller.calls, probe)
    await controller.start()
    ports = {"port": controller.outbound.port}
    if controller.asterisk is not None:
        ports = {"audiosocket": controller.asterisk.audiosocket.port, "websocket": controller.asterisk.websocket.port}
    print(json.dumps({**ports, "rss_kib": rss_kib(), "fds": len(open_fds())}), flush=True)
    commands = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    while (command := (await commands.readline()).decode().strip()) and command != "stop":
        print(json.dumps(await answer(command, controller, probe, journal_dir)), flush=True)
    await controller.stop(drain_s=10)


# ---------------------------------------------------------------- the simulator side (parent)


LOST_COUNTERS = ("frames_dropped", "frames_lost", "messages_dropped")


def lost_frames(legs: list) -> int:
    """Frames the PBX lost: its send buffer full (FreeSWITCH), voxgate's audio overflowing the caller's phone
    (AudioSocket), a message arriving while chan_websocket's queue was full."""
    return sum(getattr(leg, name, 0) for leg in legs for name in LOST_COUNTERS)


@dataclass
class Placed:
    """What the simulated PBX saw of the calls it placed."""

    uuids: set[str] = field(default_factory=set)
    legs: Callable[[object], list] = list  # a channel's media legs, where the PBX counts frames
    live: dict[str, tuple[float, object]] = field(default_factory=dict)  # uuid -> (placed at, channel)
    placed: int = 0
    ended: int = 0
    early: int = 0  # ended before the caller hung up: cut by voxgate or a failed script
    stuck: int = 0  # still up END_WAIT_S after the caller hung up
    script_errors: Counter[str] = field(default_factory=Counter)
    call_s: float = 0.0  # of the calls that ended
    frames_sent: int = 0  # caller -> voxgate
    frames_lost: int = 0  # dropped by the PBX: its send buffer full, or voxgate's audio overflowing the phone's
    frames_received: int = 0  # voxgate -> caller, where the PBX counts them (Asterisk)
    voice_heard_s: float = 0.0  # the agent's audio as the caller heard it

    def call_hours(self, now: float) -> float:
        return (self.call_s + sum(now - t for t, _ in self.live.values())) / 3600

    def lost_so_far(self) -> int:
        return self.frames_lost + sum(lost_frames(self.legs(channel)) for _, channel in self.live.values())

    def finish(self, channel, legs: list, seconds: float, early: bool) -> None:
        self.live.pop(channel.uuid, None)
        self.ended += 1
        self.early += early
        self.call_s += seconds
        if channel.script_error:
            self.script_errors[channel.script_error] += 1
        self.frames_lost += lost_frames(legs)
        for leg in legs:
            self.frames_sent += leg.frames_sent
            self.frames_received += getattr(leg, "frames_received", 0) or getattr(leg, "frames_played", 0)
        self.voice_heard_s += sum(end - start for start, end in channel.agent_speech)


class FreeSwitchSide:
    """The simulated FreeSWITCH: calls run the socket application into voxgate's outbound ESL server."""

    name = "FreeSWITCH (mod_audio_fork, streaming)"

    def __init__(self, tmp: Path) -> None:
        from controller.simulator.fake_freeswitch import FakeFreeSwitch

        self.sim = FakeFreeSwitch(password="bench-only", esl_port=None, tmp_dir=tmp)
        self.port = 0

    def child_args(self) -> list[str]:
        return ["--pbx", "freeswitch"]

    async def connected(self, ports: dict) -> None:
        self.port = ports["port"]

    async def place(self, script) -> object:
        return await self.sim.place_call(script, variables={"voxgate_flow": "soak"},
                                         outbound_socket=("127.0.0.1", self.port))

    @staticmethod
    def legs(channel) -> list:
        return list(channel.bugs.values())  # taken before the hang-up: the teardown detaches them

    async def start(self) -> None:
        await self.sim.start()

    async def stop(self) -> None:
        await self.sim.stop()


class AsteriskSide:
    """The fake Asterisk: AMI, and each call's media over AudioSocket or chan_websocket."""

    def __init__(self, tmp: Path, media: str) -> None:
        from controller.simulator.asterisk.fake_asterisk import FakeAsterisk

        self.pbx = FakeAsterisk("voxgate", AMI_SECRET, tmp_dir=tmp)
        self.media = media
        self.name = f"Asterisk ({media})"

    def child_args(self) -> list[str]:
        return ["--pbx", "asterisk", "--ami-port", str(self.pbx.ami_port)]

    async def connected(self, ports: dict) -> None:
        from controller.simulator.asterisk.websocket_client import WebSocketTarget

        self.pbx.audiosocket = ("127.0.0.1", ports["audiosocket"])
        self.pbx.websocket = WebSocketTarget(f"ws://127.0.0.1:{ports['websocket']}/media", WS_USER, WS_PASSWORD)
        await self.pbx.wait_for_manager()

    async def place(self, script) -> object:
        return await self.pbx.place_call(script, media=self.media, flow="soak")

    @staticmethod
    def legs(channel) -> list:
        return list(channel.media_legs)

    async def start(self) -> None:
        await self.pbx.start()  # AMI must be up before voxgate starts

    async def stop(self) -> None:
        await self.pbx.stop()


class Child:
    """The voxgate process, asked for samples over its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, args: list[str], env: dict[str, str]) -> tuple[Child, dict]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env={**os.environ, **env}, limit=1 << 22)
        child = cls(process)
        return child, await child._reply()

    async def ask(self, command: str) -> dict:
        self.process.stdin.write(command.encode() + b"\n")
        return await self._reply()

    async def _reply(self) -> dict:
        line = await self.process.stdout.readline()
        if not line:
            raise SystemExit(f"voxgate (the soak's child process) exited with {await self.process.wait()}")
        return json.loads(line)

    def kill(self) -> None:
        """After a failure of the soak itself: voxgate must not outlive it."""
        if self.process.returncode is None:
            self.process.kill()

    async def stop(self) -> int:
        self.process.stdin.write(b"stop\n")
        self.process.stdin.close()
        return await self.process.wait()


async def wait_set(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


async def one_call(side, speech, hold_s: float, placed: Placed) -> None:
    """Place a call, talk both ways for hold_s, hang up; what the PBX counted goes into `placed`."""
    from controller.simulator.caller import Say, WaitFor

    loop = asyncio.get_running_loop()
    says = int(hold_s / speech.duration) + 2
    channel = await side.place([WaitFor("answer", timeout=30), *[Say(speech)] * says])
    started = loop.time()
    placed.placed += 1
    placed.uuids.add(channel.uuid)
    placed.live[channel.uuid] = started, channel
    early = await wait_set(channel.ended, hold_s)
    legs = side.legs(channel)
    held = loop.time() - started
    channel.hangup("NORMAL_CLEARING")
    if not await wait_set(channel.ended, END_WAIT_S):
        placed.stuck += 1
    placed.finish(channel, legs, held, early)


async def slot(side, speech, index: int, args, deadline: float, placed: Placed, rng: random.Random) -> None:
    """One of the N concurrent calls: when a call ends the next takes its place, until the deadline."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(index * args.ramp_s / args.calls)  # a ramp, not a burst
    while (left := deadline - loop.time()) > 1.0:
        await one_call(side, speech, min(rng.uniform(args.min_call_s, args.max_call_s), left), placed)


async def run(args) -> dict:
    """The whole soak: database, PBX, voxgate, the calls, the samples; returns what the report needs."""
    from controller.audio import read_wav
    from controller.records.migrate import upgrade

    speech = read_wav(SPEECH)
    with tempfile.TemporaryDirectory(prefix="voxgate-soak-") as tmp_name:
        tmp = Path(tmp_name)
        cluster, url = await asyncio.to_thread(database, args, tmp)
        try:
            await asyncio.to_thread(upgrade, url)
            side = FreeSwitchSide(tmp) if args.pbx == "freeswitch" else AsteriskSide(tmp, args.media)
            await side.start()
            child, hello = await Child.start(side.child_args(), {"SOAK_DATABASE_URL": url,
                                                                 "SOAK_JOURNAL_DIR": str(tmp / "journal")})
            try:
                await side.connected(hello)
                result = await drive(args, side, child, speech)
                result["started"] = hello
                result["exit_code"] = await child.stop()
            finally:
                child.kill()
                await side.stop()
            result["rows"] = await asyncio.to_thread(count_rows, url, result["placed"].uuids)
            result["pbx"], result["database"] = side.name, "PostgreSQL (private cluster)" if cluster else (
                "SQLite" if url.startswith("sqlite") else "given --database-url")
        finally:
            if cluster is not None:
                await asyncio.to_thread(cluster.destroy)
    return result


def database(args, tmp: Path):
    """(the private PostgreSQL cluster or None, the URL records go to)."""
    if args.database_url:
        return None, args.database_url
    if not args.postgres:
        return None, f"sqlite:///{tmp}/soak.sqlite3"
    from controller.records.localpg import PostgresCluster, find_postgres_bindir

    bindir = find_postgres_bindir()
    if bindir is None:
        raise SystemExit("--postgres needs PostgreSQL's server binaries: apt-get install postgresql")
    cluster = PostgresCluster.create(bindir)
    return cluster, cluster.url


class SimWatch:
    """The simulator's side of each sample: its loop lag and CPU. A stalled simulator loses frames voxgate sent on
    time (the fake phone reads a burst before its media clock catches up), so a loss is only voxgate's when the
    simulator kept up."""

    def __init__(self, placed: Placed) -> None:
        self.placed = placed
        self.t0 = self._wall = asyncio.get_running_loop().time()
        self._cpu = time.process_time()
        self._max_lag_s = 0.0
        self._max_gc_s = 0.0
        self._gc_started = 0.0
        self._task = asyncio.create_task(self._watch())
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._max_gc_s = max(self._max_gc_s, time.perf_counter() - self._gc_started)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            self._max_lag_s = max(self._max_lag_s, loop.time() - before - 0.01)

    def annotate(self, sample: dict) -> dict:
        now, cpu = asyncio.get_running_loop().time(), time.process_time()
        out = {**sample, "t": now - self.t0, "placed": self.placed.placed, "ended": self.placed.ended,
               "call_hours": self.placed.call_hours(now), "load": os.getloadavg()[0],
               "sim_lost": self.placed.lost_so_far(), "sim_lag_ms": self._max_lag_s * 1000,
               "sim_gc_ms": self._max_gc_s * 1000, "sim_cpu": (cpu - self._cpu) / max(now - self._wall, 1e-9)}
        self._max_lag_s, self._max_gc_s, self._cpu, self._wall = 0.0, 0.0, cpu, now
        return out

    def stop(self) -> None:
        self._task.cancel()
        gc.callbacks.remove(self._on_gc)


async def drive(args, side, child: Child, speech) -> dict:
    loop = asyncio.get_running_loop()
    placed = Placed(legs=side.legs)
    await one_call(side, speech, 3.0, placed)  # a first call opens what stays open (the database connection)
    baseline = await child.ask("baseline")
    progress(f"baseline after one call: RSS {baseline['rss_after_gc_kib'] / 1024:.1f} MiB, {baseline['fds']} fds "
             f"{baseline['fd_kinds']}; {args.calls} calls for {args.minutes:g} min on {side.name}")
    # The simulator is a Python process too: a full collection over everything it imported stalled its loop for
    # 40-80 ms, long enough for the fake Asterisk phone to drop voxgate's on-time frames as a burst (60 ms buffer).
    gc.collect()
    gc.freeze()
    watch = SimWatch(placed)
    t0 = watch.t0
    deadline = t0 + args.minutes * 60
    rng = random.Random(args.seed)
    samples = [watch.annotate(await child.ask("sample"))]
    slots = [asyncio.create_task(slot(side, speech, i, args, deadline, placed, random.Random(rng.random())))
             for i in range(args.calls)]
    while not all(s.done() for s in slots):
        await asyncio.wait(slots, timeout=max(0.0, t0 + len(samples) * args.sample_s - loop.time()))
        if loop.time() >= t0 + len(samples) * args.sample_s - 0.01:
            samples.append(watch.annotate(await child.ask("sample")))
            progress(row(samples[-1], samples[0]))
    for task in slots:
        task.result()  # a bug in the soak itself surfaces here
    soak_end = loop.time()
    settle_until = loop.time() + SETTLE_S
    while True:  # every call gone, every record written, every descriptor closed, or SETTLE_S over
        now = await child.ask("sample")
        settled = now["live"] == 0 and now["pending"] == 0 and now["fds"] <= baseline["fds"]
        if settled or loop.time() >= settle_until:
            break
        await asyncio.sleep(1.0)
    final = watch.annotate(await child.ask("final"))
    watch.stop()
    samples.append(final)
    progress(row(final, samples[0]))
    return {"baseline": baseline, "samples": samples, "final": final, "placed": placed,
            "soak_s": soak_end - t0, "settle_s": loop.time() - soak_end}


def count_rows(url: str, uuids: set[str]) -> dict:
    """This run's rows in calls, call_events and turns (a given database may hold others)."""
    from sqlalchemy import create_engine, func, select

    from controller.records.models import CallEventRow, CallRow, TurnRow

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counts = {}
            for name, model in (("cdrs", CallRow), ("events", CallEventRow), ("turns", TurnRow)):
                rows = conn.execute(select(model.call_uuid, func.count()).group_by(model.call_uuid))
                counts[name] = sum(n for call_uuid, n in rows if call_uuid in uuids)
            outcomes = Counter()
            for call_uuid, outcome, error in conn.execute(select(CallRow.call_uuid, CallRow.outcome, CallRow.error)):
                if call_uuid in uuids:
                    outcomes[outcome + (f" ({error})" if error else "")] += 1
            counts["outcomes"] = dict(outcomes)
            return counts
    finally:
        engine.dispose()


# ---------------------------------------------------------------- the report


COLUMNS = ("    t  live placed  ended call-h  RSS MiB   dRSS pyblk-k mallocMiB  fds tasks objects thr     in-fr drop"
           "    out-fr  late  p99ms   CDRs  turns events pend jrnKiB simlost simlag-ms simgc-ms sim-cpu load smp-ms")


def row(s: dict, first: dict) -> str:
    return (f"{s['t']:5.0f} {s['live']:5d} {s['placed']:6d} {s['ended']:6d} {s['call_hours']:6.2f} "
            f"{s['rss_kib'] / 1024:8.1f} {(s['rss_kib'] - first['rss_kib']) / 1024:+6.1f} "
            f"{s['py_blocks'] / 1000:7.1f} {s['malloc_kib'] / 1024:9.1f} {s['fds']:4d} "
            f"{s['tasks']:5d} {s['objects']:7d} {s['threads']:3d} {s['frames_in']:9d} {s['dropped']:4d} "
            f"{s['out_frames']:9d} {s['late']:5d} {s['p99_ms']:6.2f} {s['cdrs_written']:6d} {s['turns_written']:6d} "
            f"{s['events_written']:6d} {s['pending']:4d} {s['journal_kib']:6.1f} {s['sim_lost']:7d} "
            f"{s['sim_lag_ms']:9.1f} {s['sim_gc_ms']:8.1f} {s['sim_cpu']:6.0%} {s['load']:4.1f} {s['sample_ms']:6.1f}")


def progress(text: str) -> None:
    print(f"[soak] {text}", file=sys.stderr, flush=True)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    x, y = np.array(points, dtype=float).T
    return float(np.polyfit(x, y, 1)[0]) if len(points) >= 3 and np.ptp(x) > 0 else float("nan")


def summarise(result: dict, args) -> list[str]:
    """Print the table and the figures; the gate's failures, if any."""
    samples, baseline, final, placed = result["samples"], result["baseline"], result["final"], result["placed"]
    during = [s for s in samples[:-1] if s["t"] <= result["soak_s"] + 0.5]
    warm = [s for s in during if s["t"] >= args.warmup * result["soak_s"]]
    rss_slope = slope([(s["call_hours"], s["rss_kib"]) for s in warm])
    obj_slope = slope([(s["call_hours"], s["objects"]) for s in warm])
    blocks_slope = slope([(s["call_hours"], s["py_blocks"]) for s in warm])
    malloc_slope = slope([(s["call_hours"], s["malloc_kib"]) for s in warm])
    fd_slope = slope([(s["call_hours"], s["fds"]) for s in warm])
    rows, call_h = result["rows"], placed.call_s / 3600
    cpu_ms = (final["cpu_s"] - baseline["cpu_s"]) * 1000 / max(placed.call_s, 1e-9)
    print(f"soak: {args.calls} concurrent calls for {result['soak_s'] / 60:.1f} min on {result['pbx']}, records in "
          f"{result['database']}; calls {args.min_call_s:g}-{args.max_call_s:g} s; 2 cores shared with other work")
    print(COLUMNS)
    for s in samples:
        print(row(s, samples[0]))
    print("(last row: every call ended, records flushed, before the final full collection)")
    print(f"calls             {placed.placed} placed ({result['placed'].placed - 1} in the soak + 1 before the "
          f"baseline), {placed.ended} ended, {call_h:.2f} call-hours; voxgate started {final['started']}, finished "
          f"{final['finished']}; cut short {placed.early}, stuck {placed.stuck}, script errors "
          f"{sum(placed.script_errors.values())} {dict(placed.script_errors) or ''}")
    print(f"  outcomes        voxgate {final['outcomes']}; CDR rows {rows['outcomes']}")
    print(f"memory            RSS {baseline['rss_after_gc_kib'] / 1024:.1f} MiB at the baseline (after one call), "
          f"{warm[0]['rss_kib'] / 1024 if warm else float('nan'):.1f} MiB after warm-up "
          f"(t={warm[0]['t'] if warm else float('nan'):.0f} s), {during[-1]['rss_kib'] / 1024:.1f} MiB at the end "
          f"with {during[-1]['live']} calls up, {final['rss_kib'] / 1024:.1f} MiB once all ended, "
          f"{final['rss_after_gc_kib'] / 1024:.1f} MiB after a full collection; Python heap blocks "
          f"{baseline['py_blocks_after_gc']} -> {final['py_blocks_after_gc']}, malloc in use "
          f"{baseline['malloc_after_gc_kib'] / 1024:.1f} -> {final['malloc_after_gc_kib'] / 1024:.1f} MiB "
          f"(baseline -> all ended, both after a full collection)")
    print(f"  growth          RSS {rss_slope:+.1f} KiB per call-hour (least squares over {len(warm)} samples after "
          f"warm-up, {warm[0]['call_hours'] if warm else 0:.2f}-{warm[-1]['call_hours'] if warm else 0:.2f} "
          f"call-hours); malloc in use {malloc_slope:+.1f} KiB, Python heap blocks {blocks_slope:+.0f}, gc objects "
          f"{obj_slope:+.0f}, fds {fd_slope:+.2f} per call-hour")
    collected = [s for previous, s in zip(during, during[1:]) if s["full_gcs"] > previous["full_gcs"]]
    print("  after each full collection (the collector's own, every 300 s): " + ("; ".join(
        f"t={s['t']:.0f} s RSS {s['rss_kib'] / 1024:.1f} MiB, {s['py_blocks']} Python blocks, malloc "
        f"{s['malloc_kib'] / 1024:.1f} MiB, {s['objects']} objects" for s in collected) or "none during the run"))
    if warm:
        print(f"  ratios          RSS end/after-warm-up x{during[-1]['rss_kib'] / warm[0]['rss_kib']:.3f}; "
              f"all-ended/baseline x{final['rss_after_gc_kib'] / baseline['rss_after_gc_kib']:.3f}; gc objects "
              f"all-ended/baseline {final['objects_after_gc'] - baseline['objects_after_gc']:+d} "
              f"({(final['objects_after_gc'] - baseline['objects_after_gc']) / max(1, placed.placed - 1):+.2f} "
              f"per call); full collections {final['full_gcs']}; peak tasks {max(s['tasks'] for s in during)}")
    print(f"  object types    grown since the baseline, after a full collection: {final['type_growth'] or 'none'}")
    print(f"  dead weakrefs   kept by {final['dead_weakref_holders'] or 'nothing'}")
    since = next((s for s in during if s["full_gcs"] == final["full_gcs"]), None) if final["full_gcs"] else None
    ended = final["finished"] - (since["finished"] if since else 1)  # the baseline's collection took the first call
    print(f"  cyclic garbage  the final collection freed {final['garbage']} objects in cycles, "
          f"{final['garbage'] / max(1, ended):.0f} per call ended since the previous full collection "
          f"({ended}): {final['garbage_types'][:8]}")
    print(f"descriptors       {result['started']['fds']} at start, {baseline['fds']} at the baseline "
          f"{baseline['fd_kinds']}, peak {max(s['fds'] for s in during)}, {final['fds']} once all calls ended "
          f"({result['settle_s']:.1f} s after the last hang-up); new {final['new_fds'] or 'none'}, "
          f"gone {final['gone_fds'] or 'none'}")
    lost_in = placed.frames_sent - final["frames_in"]
    print(f"frames in         PBX sent {placed.frames_sent}, voxgate took {final['frames_in']} "
          f"({lost_in} in flight at hang-ups, {lost_in / max(1, placed.placed):.1f} per call), dropped by voxgate "
          f"{final['dropped']}; arrival->flow p50 {final['all_p50_ms']:.3f} ms, p99 {final['all_p99_ms']:.3f} ms, "
          f"max {final['max_ms']:.2f} ms")
    print(f"frames out        voxgate sent {final['out_frames']} ({final['out_frames'] * 0.02:.0f} s), late "
          f"{final['late']} (>20 ms), lateness mean {final['total_late_ms'] / max(1, final['out_frames']):.3f} ms, "
          f"max {final['max_late_ms']:.2f} ms; caller heard {placed.voice_heard_s:.0f} s of it"
          + (f", PBX received {placed.frames_received}" if placed.frames_received else "")
          + f"; dropped by the PBX {placed.frames_lost}")
    lag = max(s["sim_lag_ms"] for s in samples)
    print(f"simulator         loop lag max {lag:.1f} ms, its own garbage collection max "
          f"{max(s['sim_gc_ms'] for s in samples):.1f} ms, CPU {np.mean([s['sim_cpu'] for s in during[1:]]):.0%} "
          f"of a core" + ("; frames the PBX dropped while the simulator itself lagged >= 60 ms are the harness's "
                          "(the fake phone reads the backlog as a burst): rerun on a quieter machine"
                          if placed.frames_lost and lag >= 60 else ""))
    print(f"cpu               {final['cpu_s'] - baseline['cpu_s']:.1f} s = {cpu_ms:.2f} CPU-ms per call-second; "
          f"sampling cost max {max(s['sample_ms'] for s in during):.1f} ms")
    print(f"records           CDRs in the database {rows['cdrs']} for {placed.placed} calls placed; turns "
          f"{rows['turns']} of {final['turns_submitted']} submitted; events {rows['events']} (writer counted "
          f"{final['events_written']}); pending {final['pending']}, refused {final['refused']}, rejected "
          f"{final['rejected']}, quarantined {final['quarantined']}, failed batches {final['failed_batches']}; "
          f"peak journal backlog {max(s['journal_kib'] for s in samples):.1f} KiB, peak pending "
          f"{max(s['pending'] for s in samples)}")
    print(f"voxgate logs      {final['warnings']} warnings, {final['errors']} errors; child exit code "
          f"{result['exit_code']}")
    return gate(result, rss_slope, args.max_growth)


def gate(result: dict, rss_slope: float, max_growth: float) -> list[str]:
    final, baseline, placed, rows = result["final"], result["baseline"], result["placed"], result["rows"]
    checks = {
        f"CDRs {rows['cdrs']} != calls placed {placed.placed}": rows["cdrs"] != placed.placed,
        f"voxgate started {final['started']} calls, {placed.placed} placed": final["started"] != placed.placed,
        f"turns in the database {rows['turns']} != submitted {final['turns_submitted']}":
            rows["turns"] != final["turns_submitted"],
        f"events in the database {rows['events']} != written {final['events_written']}":
            rows["events"] != final["events_written"],
        f"records not written: pending {final['pending']}, refused {final['refused']}, rejected {final['rejected']}, "
        f"quarantined {final['quarantined']}":
            final["pending"] or final["refused"] or final["rejected"] or final["quarantined"],
        f"frames dropped: voxgate {final['dropped']}, PBX {placed.frames_lost}": final["dropped"] or placed.frames_lost,
        f"calls cut short {placed.early}, stuck {placed.stuck}, script errors {sum(placed.script_errors.values())}":
            placed.early or placed.stuck or placed.script_errors,
        f"descriptors leaked: {final['fds']} once all ended vs {baseline['fds']} at the baseline":
            final["fds"] > baseline["fds"],
        f"calls still live {final['live']}": final["live"],
        f"memory grows {rss_slope:+.1f} KiB per call-hour (limit {max_growth:g})": rss_slope > max_growth,
        "memory growth not measured: fewer than 3 samples after warm-up (run longer or sample more often)":
            rss_slope != rss_slope,  # NaN
        f"voxgate exited with {result['exit_code']}": result["exit_code"] != 0,
    }
    return [text for text, failed in checks.items() if failed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls (default 100)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the calls keep coming (default 10)")
    parser.add_argument("--pbx", choices=["freeswitch", "asterisk"], default="freeswitch")
    parser.add_argument("--media", choices=["audiosocket", "websocket"], default="audiosocket",
                        help="Asterisk's media path (default audiosocket)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", help="records go here (default: a temporary SQLite file)")
    where.add_argument("--postgres", action="store_true", help="records go to a private PostgreSQL server")
    parser.add_argument("--min-call-s", type=float, default=30.0)
    parser.add_argument("--max-call-s", type=float, default=90.0)
    parser.add_argument("--sample-s", type=float, default=15.0, help="seconds between samples (default 15)")
    parser.add_argument("--ramp-s", type=float, default=10.0, help="the first calls arrive over this long")
    parser.add_argument("--warmup", type=float, default=0.5, help="fraction of the run before the growth fit")
    parser.add_argument("--max-growth", type=float, default=1024.0,
                        help="KiB per call-hour of RSS growth after warm-up that fails the gate (default 1024); "
                             "meaningful from about 10 minutes: voxgate's full collection runs every 300 s")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ami-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.pbx, args.ami_port))
        return
    if args.calls < 1 or args.minutes <= 0 or not 0 < args.min_call_s <= args.max_call_s or args.sample_s <= 0:
        parser.error("--calls >= 1, --minutes > 0, 0 < --min-call-s <= --max-call-s and --sample-s > 0")
    failures = summarise(asyncio.run(run(args)), args)
    print("gate: " + ("ok (no loss, flat memory)" if not failures else "FAILED: " + "; ".join(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
