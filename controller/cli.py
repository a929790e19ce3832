"""The `voxgate` command: serve, health, call, demo, try, simulate, db, calls, turns, report, recording."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from controller.flow_reload import FlowReloader
    from controller.flows import FlowRegistry

log = logging.getLogger("voxgate")


def _settings(args: argparse.Namespace, overrides: dict[str, str] | None = None) -> Settings:
    env = {**os.environ, **(overrides or {})}
    try:
        return load_settings(env, getattr(args, "config", None))
    except ConfigError as exc:
        print(f"voxgate: configuration is not valid:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _logging(level: str, fmt: str = "text") -> None:
    from controller.logs import configure

    configure(level, fmt)


def _flow_modules(values: Sequence[str] | None) -> list[str]:
    """--flows may be repeated, and each may be a comma list."""
    return [name.strip() for value in values or () for name in value.split(",") if name.strip()]


def _load_flows(modules: list[str], reloader: FlowReloader | None) -> FlowRegistry:
    """The built-in flows plus the modules' @flow functions; a broken flow module stops start-up."""
    from controller.flows import FlowError, load_flows

    if "" not in sys.path and os.getcwd() not in sys.path:  # the console script does not add the working dir
        sys.path.insert(0, os.getcwd())
    try:
        return reloader.load() if reloader is not None else load_flows(*modules)
    except FlowError as exc:
        print(f"voxgate: {exc}", file=sys.stderr)
    except Exception:
        log.exception("could not import the flow modules %s", ", ".join(modules))
    raise SystemExit(2)


def _show_flows(settings: Settings, flows: FlowRegistry) -> None:
    from controller.routing import describe_routes

    for flow in flows:
        log.info("flow %s", flow.describe())
    if settings.default_flow not in flows:
        log.warning("default_flow %r is not a registered flow: calls that no dialplan variable or route "
                    "sends elsewhere will fail", settings.default_flow)
    for line in describe_routes(settings.routes, settings.default_flow):
        log.info("%s", line)


async def _serve(settings: Settings, modules: list[str], reload: bool) -> None:
    from controller.app import Controller
    from controller.flow_reload import FlowReloader
    from controller.flows import FlowError
    from controller.records.migrate import upgrade

    reloader = FlowReloader(modules) if reload and modules else None
    flows = _load_flows(modules, reloader)
    await asyncio.to_thread(upgrade, settings.database_url.reveal())
    try:
        controller = Controller(settings, flows)
    except FlowError as exc:
        print(f"voxgate: the route table names flows that are not registered:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    _show_flows(settings, flows)
    await controller.start()
    if reloader is not None:
        reloader.start(controller.use_flows)
        log.info("reloading %s when their files change", ", ".join(modules))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if reloader is not None:
        await reloader.stop()
    log.info("stopping: taking no new calls; %d call(s) in progress get up to %.0f s", len(controller.calls),
             settings.drain_s)
    await controller.stop(drain_s=settings.drain_s)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _logging(settings.log_level, settings.log_format)
    for line in settings.describe():
        log.info("setting %s", line)
    if settings.token_secret_ephemeral:
        log.warning("VOXGATE_TOKEN_SECRET is not set: using a random one for this process only")
    asyncio.run(_serve(settings, _flow_modules(args.flows), args.reload))
    return 0


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def cmd_health(args: argparse.Namespace) -> int:
    """The orchestrator's probe (Docker HEALTHCHECK, a Kubernetes exec probe): exit 0 when the API says so."""
    settings = _settings(args)
    if not settings.api or settings.api_token is None:
        print("voxgate health: the HTTP API is off (VOXGATE_API, VOXGATE_API_TOKEN): nothing to ask", file=sys.stderr)
        return 1
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.bind_host, settings.bind_host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.api_port}/api/v1/health/" + \
        ("ready" if args.ready else "live")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {settings.api_token.reveal()}"})
    try:
        # no proxy: the probe is local, and a proxy from the environment would be handed the token
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=args.timeout) \
                as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        print(f"voxgate health: {url} answered {exc.code}: {exc.read(200).decode(errors='replace')}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"voxgate health: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{body.get('status')}: {body.get('live_calls')} live call(s), up {body.get('uptime_s')} s")
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    """One outbound call with a controller of its own: dial, run the flow, report, exit 0 only if answered."""
    settings = _settings(args)
    _logging("DEBUG" if settings.log_level == "DEBUG" else "WARNING")  # the tries are printed below
    return asyncio.run(_call(settings, args))


async def _call(settings: Settings, args: argparse.Namespace) -> int:
    from controller.app import Controller
    from controller.dialer import DialError, OutboundCall
    from controller.records.migrate import upgrade

    request = OutboundCall(args.number, args.flow, caller_id_number=args.caller_id, caller_id_name=args.caller_name,
                           variables=dict(args.var), trunks=tuple(args.trunk or ()), pbx=args.pbx or "",
                           retries=args.retries, backoff_s=args.backoff, ring_timeout_s=args.ring_timeout)
    controller = Controller(settings, _load_flows(_flow_modules(args.flows), None))
    try:
        controller.dialer.plan(request)  # bad input stops here, before anything starts or is dialled
    except (ValueError, DialError) as exc:
        print(f"voxgate call: {exc}", file=sys.stderr)
        return 2
    await asyncio.to_thread(upgrade, settings.database_url.reveal())
    await controller.start()
    try:
        result = await controller.dialer.dial(request)
        print(f"request {result.request_id}: {result.number} over {result.pbx}, flow {result.flow}")
        for attempt in result.attempts:
            seconds = (attempt.ended_at - attempt.started_at).total_seconds()
            print(f"  try {attempt.attempt}  {attempt.trunk}  {attempt.outcome}  {attempt.cause}  {seconds:.1f} s"
                  + (f"  call {attempt.call_uuid}" if attempt.call_uuid else ""))
        if result.call is not None:
            await result.finished()
            print(f"call {result.call_uuid} ended: {result.call.hangup_cause or 'hung up'}")
    finally:
        await controller.stop()
    print(f"outcome: {result.outcome}")
    return 0 if result.answered else 1


def cmd_db(args: argparse.Namespace) -> int:
    from controller.records.migrate import downgrade, upgrade

    settings = _settings(args)
    url = settings.database_url.reveal()
    if args.action == "purge":
        return _purge(url, args.older_than)
    if args.action == "upgrade":
        upgrade(url, args.revision or "head")
    else:
        downgrade(url, args.revision or "-1")
    print(f"database {settings.database_url_redacted}: {args.action} done")
    return 0


def _purge(url: str, older_than: str | None) -> int:
    from controller.records.retention import parse_age, purge

    try:
        age = parse_age(older_than or "")
    except ValueError as exc:
        print(f"voxgate db purge: --older-than is required: {exc}", file=sys.stderr)
        return 2
    erased = purge(url, age)
    print(f"older than {older_than}: erased the words of {erased.turns} turn(s) and {erased.tool_calls} tool call(s), "
          f"{erased.dtmf} DTMF digit(s), {erased.recordings} recording(s), the flow state of {erased.states} call(s); "
          "call records and latencies kept")
    return 0


def cmd_recording(args: argparse.Namespace) -> int:
    from controller.records.recording import new_key_text

    if args.action == "new-key":
        print(new_key_text(args.call_uuid or "k1"))
        return 0
    if not args.call_uuid:
        print("voxgate recording export: which call? (voxgate recording export CALL_UUID)", file=sys.stderr)
        return 2
    return _export_recording(_settings(args), args.call_uuid, args.out)


def _export_recording(settings: Settings, call_uuid: str, out: str | None) -> int:
    import hashlib

    from controller.records.recording import RecordingError, decrypt, parse_keys, write_wav
    from controller.records.store import list_rows

    if settings.recording_keys is None:
        print("voxgate recording export: recording_keys is not configured (VOXGATE_RECORDING_KEYS)", file=sys.stderr)
        return 2
    rows = list_rows(settings.database_url.reveal(), "recordings", call_uuid)
    if not rows:
        print(f"voxgate: no recording of call {call_uuid}", file=sys.stderr)
        return 1
    row = rows[-1]
    target = Path(out or f"{call_uuid}.wav")
    if target.exists():
        print(f"voxgate recording export: {target} exists; not overwriting it", file=sys.stderr)
        return 1
    try:
        digest = hashlib.sha256(Path(row["path"]).read_bytes()).hexdigest()
        if digest != row["sha256"]:
            raise RecordingError(f"{row['path']}: sha256 differs from the one recorded; the file was replaced")
        recording = decrypt(row["path"], parse_keys(settings.recording_keys.reveal()))
    except (OSError, RecordingError) as exc:
        print(f"voxgate recording export: {exc}", file=sys.stderr)
        return 1
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # decrypted audio: owner only
    write_wav(recording, target)
    seconds = len(recording.pcm) / (4 * recording.sample_rate)
    note = "" if recording.complete else " (the recording was cut short: its final segment is missing)"
    print(f"{target}: {seconds:.1f} s, stereo (left caller, right agent), {recording.sample_rate} Hz{note}")
    log.warning("recording of call %s exported to %s by uid %d", call_uuid, target, os.getuid())
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    from controller.records.store import list_calls

    settings = _settings(args)
    rows = list_calls(settings.database_url.reveal())[-args.limit:]
    columns = ("started_at", "call_uuid", "caller_id_number", "destination", "flow", "duration_s",
               "billsec", "hangup_cause", "outcome")
    print("  ".join(columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")) for c in columns))
    return 0


def cmd_turns(args: argparse.Namespace) -> int:
    from controller.records.store import list_turns

    settings = _settings(args)
    rows = list_turns(settings.database_url.reveal(), args.call_uuid)
    if not rows:
        print(f"voxgate: no turns recorded for call {args.call_uuid}", file=sys.stderr)
        return 1
    table = [("seq", "speaker", "interrupted", "voice_to_voice_ms", "barge_in_ms", "text")]
    table += [
        (str(row["seq"]), row["speaker"], "yes" if row["interrupted"] else "no",
         _ms(row["voice_to_voice_ms"]), _ms(row["barge_in_ms"]), _turn_text(row))
        for row in rows
    ]
    # Text last and unpadded: it is the one column of any length.
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(line, widths)), line[-1]]))
    return 0


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def _turn_text(row: dict[str, Any]) -> str:
    """The turn's text on one line, plus what the caller heard of it when that differs (a barge-in)."""
    text = " ".join(row["text"].split())
    heard = row["heard_text"]
    if heard is None or heard == row["text"]:
        return text
    return f"{text}  [heard: {' '.join(heard.split()) or '(nothing)'}]"


def cmd_demo(args: argparse.Namespace) -> int:
    from controller.demo import run_demo

    overrides = {"VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0"}
    if "VOXGATE_DATABASE_URL" not in os.environ:
        overrides["VOXGATE_DATABASE_URL"] = "sqlite:///var/demo.sqlite3"
        overrides["VOXGATE_JOURNAL_DIR"] = "var/demo-journal"
    settings = _settings(args, overrides)
    _logging("WARNING" if not args.verbose else "INFO")
    return asyncio.run(run_demo(settings, heard_path=args.heard))


def cmd_try(args: argparse.Namespace) -> int:
    """One of your flows, one scripted caller, a simulated FreeSWITCH, all in this process."""
    from controller.simulator.caller import ScenarioError, load_scenario
    from controller.try_flow import run_try

    try:
        scenario = load_scenario(args.caller)
    except ScenarioError as exc:
        print(f"voxgate try: {exc}", file=sys.stderr)
        return 2
    overrides = {"VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0"}
    if "VOXGATE_DATABASE_URL" not in os.environ:
        overrides.update(VOXGATE_DATABASE_URL="sqlite:///var/try.sqlite3", VOXGATE_JOURNAL_DIR="var/try-journal")
    settings = _settings(args, overrides)
    _logging("INFO" if args.verbose else "WARNING")
    flows = _load_flows(_flow_modules([args.module]), None)
    return asyncio.run(run_try(settings, flows, args.flow, scenario, heard_path=args.heard))


def cmd_report(args: argparse.Namespace) -> int:
    from controller.records.report import build_report, render_html, render_text

    settings = _settings(args)
    report = build_report(settings.database_url.reveal(), args.since, args.until, args.flow)
    print(render_text(report), end="")
    if args.html:
        Path(args.html).write_text(render_html(report), encoding="utf-8")
        print(f"\nHTML report with charts: {args.html}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxgate", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (else VOXGATE_CONFIG; env VOXGATE_* override it)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="take calls from FreeSWITCH")
    serve.add_argument("--flows", action="append", metavar="MODULE",
                       help="python module whose @flow functions to serve (a package: with its submodules); "
                            "repeat it or give a comma list")
    serve.add_argument("--reload", action="store_true",
                       help="development: re-import the --flows modules when their files change")
    serve.set_defaults(func=cmd_serve)

    health = sub.add_parser("health", help="probe a running serve over its API: exit 0 when live (or --ready)")
    health.add_argument("--ready", action="store_true", help="readiness: is it taking new calls (not draining)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    health.set_defaults(func=cmd_health)

    call = sub.add_parser("call", help="place one outbound call, run a flow on it, print every try and the outcome")
    call.add_argument("number", help="E.164 (+15551230001), or national with VOXGATE_DEFAULT_REGION set")
    call.add_argument("--flow", required=True, help="the flow the answered call runs")
    call.add_argument("--caller-id", help="caller id number (default VOXGATE_CALLER_ID_NUMBER)")
    call.add_argument("--caller-name", help="caller id name (default VOXGATE_CALLER_ID_NAME)")
    call.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", type=_name_value,
                      help="a channel variable the flow reads (repeatable)")
    call.add_argument("--trunk", action="append", metavar="NAME", help="trunk to try, in order (repeatable; "
                      "default VOXGATE_FREESWITCH_TRUNKS / VOXGATE_ASTERISK_TRUNKS)")
    call.add_argument("--pbx", choices=["freeswitch", "asterisk"], help="default: FreeSWITCH when "
                      "VOXGATE_ESL_INBOUND is set, else Asterisk")
    call.add_argument("--retries", type=int, help="passes over the trunks after the first (VOXGATE_DIAL_RETRIES)")
    call.add_argument("--backoff", type=float, metavar="SECONDS", help="wait before the second pass "
                      "(VOXGATE_DIAL_BACKOFF_S)")
    call.add_argument("--ring-timeout", type=int, metavar="SECONDS", help="VOXGATE_DIAL_RING_TIMEOUT_S")
    call.add_argument("--flows", action="append", metavar="MODULE", help="python module with @flow functions")
    call.set_defaults(func=cmd_call)

    demo = sub.add_parser("demo", help="a simulated caller talks to the AI agent (embedded engines, no PBX)")
    demo.add_argument("--heard", default="var/demo-heard.wav", help="where to save what the caller heard")
    demo.add_argument("-v", "--verbose", action="store_true")
    demo.set_defaults(func=cmd_demo)

    try_ = sub.add_parser("try", help="run one of your flows against a scripted caller on a simulated FreeSWITCH")
    try_.add_argument("module", help="python module with @flow functions (e.g. examples.ivr_menu)")
    try_.add_argument("--flow", required=True, help="the flow the call runs")
    try_.add_argument("--caller", required=True, metavar="SCENARIO", help="the caller's script, a .toml or .json "
                      "scenario (examples/scenarios/)")
    try_.add_argument("--heard", default="var/try-heard.wav", help="where to save what the caller heard")
    try_.add_argument("-v", "--verbose", action="store_true")
    try_.set_defaults(func=cmd_try)

    sub.add_parser("simulate", help="a fake FreeSWITCH that calls voxgate (voxgate simulate --help); "
                   "voxgate simulate asterisk --help: a fake Asterisk")

    db = sub.add_parser("db", help="database migrations; purge applies the retention policy")
    db.add_argument("action", choices=["upgrade", "downgrade", "purge"])
    db.add_argument("revision", nargs="?")
    db.add_argument("--older-than", help="purge: erase transcripts and recordings older than this (90d, 12h)")
    db.set_defaults(func=cmd_db)

    recording = sub.add_parser("recording", help="export a call's recording as WAV; make an encryption key")
    recording.add_argument("action", choices=["export", "new-key"])
    recording.add_argument("call_uuid", nargs="?", metavar="CALL_UUID|KEY_ID")
    recording.add_argument("--out", help="export: the WAV file to write (default CALL_UUID.wav)")
    recording.set_defaults(func=cmd_recording)

    calls = sub.add_parser("calls", help="recent call detail records")
    calls.add_argument("--limit", type=int, default=20)
    calls.set_defaults(func=cmd_calls)

    turns = sub.add_parser("turns", help="the conversation turns of one call")
    turns.add_argument("call_uuid", metavar="CALL_UUID")
    turns.set_defaults(func=cmd_turns)
    report = sub.add_parser("report", help="manager's report: volume, containment, causes, latency, barge-in")
    report.add_argument("--since", type=date.fromisoformat, help="first day, YYYY-MM-DD")
    report.add_argument("--until", type=date.fromisoformat, help="last day, YYYY-MM-DD")
    report.add_argument("--flow", help="one flow only")
    report.add_argument("--html", metavar="FILE", help="also write an HTML report with charts")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["simulate", "asterisk"]:  # the simulators parse their own options
        from controller.simulator.asterisk.fake_asterisk import main as simulate_asterisk

        return simulate_asterisk(argv[2:])
    if argv[:1] == ["simulate"]:
        from controller.simulator.fake_freeswitch import main as simulate

        return simulate(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
