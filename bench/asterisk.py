"""Concurrent simulated Asterisk calls against one voxgate process, with null engines.

The Asterisk counterpart of bench/calls.py. The voxgate process (a child, so its CPU is its own)
runs a flow that consumes every caller frame and keeps playing audio back; the parent runs the
fake Asterisk (AMI plus AudioSocket or chan_websocket media) with N callers. Prints CPU per
call-second, inbound frame handling latency (arrival -> delivery to the flow) and outbound
pacing, for a baseline of a few calls and for N calls, and the ratio between them, per media path.

    python bench/asterisk.py [--calls 200] [--seconds 20] [--baseline 10] [--media audiosocket websocket]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import Window, per_call, ratio, register_bench_flow, report  # noqa: E402

SPEECH = Path(__file__).resolve().parents[1] / "controller" / "prompts" / "greeting.wav"
AMI_SECRET = "bench-ami-secret"
WS_USER, WS_PASSWORD = "asterisk", "bench-ws-password"


# ---------------------------------------------------------------- the voxgate side (child process)


async def serve(ami_port: int) -> None:
    import logging

    from controller.app import Controller
    from controller.config import load_settings
    from controller.flows import builtin_flows
    from controller.records.migrate import upgrade

    logging.basicConfig(level=logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="voxgate-bench-asterisk-")
    url = f"sqlite:///{tmp}/bench.sqlite3"
    upgrade(url)
    settings = load_settings({
        "VOXGATE_ASTERISK": "true", "VOXGATE_AMI_PORT": str(ami_port), "VOXGATE_AMI_SECRET": AMI_SECRET,
        "VOXGATE_AUDIOSOCKET_PORT": "0", "VOXGATE_MEDIA_WS_PORT": "0",
        "VOXGATE_MEDIA_WS_USERNAME": WS_USER, "VOXGATE_MEDIA_WS_PASSWORD": WS_PASSWORD,
        "VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0",
        "VOXGATE_DATABASE_URL": url, "VOXGATE_JOURNAL_DIR": f"{tmp}/journal",
        "VOXGATE_PRELOAD_ENGINES": "false", "VOXGATE_TOKEN_SECRET": "bench-secret-0123456789",
        "VOXGATE_LOG_LEVEL": "WARNING"})
    latencies: list[float] = []
    flows = builtin_flows()
    register_bench_flow(flows, latencies)
    controller = Controller(settings, flows)
    await controller.start()
    assert controller.asterisk is not None
    print(json.dumps({"audiosocket": controller.asterisk.audiosocket.port,
                      "websocket": controller.asterisk.websocket.port}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # parent: calls are up
    window = Window(list(controller.calls.values()), latencies)
    await loop.run_in_executor(None, sys.stdin.readline)  # parent: measurement over
    print(json.dumps(window.stats(list(controller.calls.values()))), flush=True)
    await controller.stop(drain_s=10)


# ---------------------------------------------------------------- the fake Asterisk side (parent)


async def run(media: str, calls: int, seconds: float) -> dict:
    from controller.simulator.asterisk.fake_asterisk import FakeAsterisk
    from controller.simulator.asterisk.websocket_client import WebSocketTarget
    from controller.simulator.caller import CallerScript, Say, WaitFor

    with tempfile.TemporaryDirectory() as tmp:
        pbx = FakeAsterisk("voxgate", AMI_SECRET, tmp_dir=Path(tmp))
        await pbx.start()  # AMI must be up before voxgate starts
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", "--ami-port", str(pbx.ami_port),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        ports = json.loads(await child.stdout.readline())
        pbx.audiosocket = ("127.0.0.1", ports["audiosocket"])
        pbx.websocket = WebSocketTarget(f"ws://127.0.0.1:{ports['websocket']}/media", WS_USER, WS_PASSWORD)
        await pbx.wait_for_manager()
        script = CallerScript([WaitFor("answer", timeout=30), *[Say(str(SPEECH)) for _ in range(40)]])
        channels = []
        for _ in range(calls):  # a realistic arrival ramp, not one burst
            channels.append(await pbx.place_call(script, media=media, flow="bench"))
            await asyncio.sleep(0.01)
        await asyncio.sleep(2.0)  # let every call answer and its media connect
        sim_cpu0 = time.process_time()
        child.stdin.write(b"go\n")
        await asyncio.sleep(seconds)
        child.stdin.write(b"stop\n")
        stats = json.loads(await child.stdout.readline())
        stats["sim_cpu_s"] = time.process_time() - sim_cpu0
        stats["ended_early"] = sum(1 for c in channels if c.ended.is_set())
        for channel in channels:
            if not channel.ended.is_set():
                channel.hangup("NORMAL_CLEARING")
        await asyncio.sleep(0.5)
        child.stdin.close()  # voxgate drains its calls while the fake's AMI still reports their hangups
        await child.wait()
        await pbx.stop()
    stats["media"] = media
    return per_call(stats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--media", nargs="+", choices=["audiosocket", "websocket"],
                        default=["audiosocket", "websocket"])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ami-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.ami_port))
        return
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for media in args.media:
        base = asyncio.run(run(media, args.baseline, args.seconds))
        full = asyncio.run(run(media, args.calls, args.seconds))
        print(f"== {media}")
        report("baseline", base, "fake Asterisk")
        report("load", full, "fake Asterisk")
        print(ratio(base, full), flush=True)
    print("targets: 200 calls on one core (<= 5 CPU-ms per call-second), inbound p99 < 5 ms, no late frame")


if __name__ == "__main__":
    main()
