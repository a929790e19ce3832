"""`voxgate try`, the newcomer's second command, as a subprocess on the IVR example and its scenario."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_voxgate_try_runs_the_ivr_example(tmp_path):
    env = {**os.environ, "VOXGATE_DATABASE_URL": f"sqlite:///{tmp_path}/try.sqlite3",
           "VOXGATE_JOURNAL_DIR": str(tmp_path / "journal")}
    done = subprocess.run([sys.executable, "-m", "controller", "try", "examples.ivr_menu", "--flow", "ivr",
                           "--caller", "examples/scenarios/ivr.toml", "--heard", str(tmp_path / "heard.wav")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # the hangup cause is FreeSWITCH's when its CDR came before voxgate let go of the call, else TRANSFERRED
    assert "flow ivr, outcome transferred, " in out, out
    assert '"queue": "billing"' in out and "keys: 21" in out and "transfer to 2101 (blind, billing)" in out
    heard = out.split("the caller heard:")[1].split("\ncall ")[0].lower()
    assert "thanks for calling acme" in heard and "billing" in heard, heard
    assert (tmp_path / "heard.wav").stat().st_size > 8000


def test_voxgate_try_names_a_missing_flow(tmp_path):
    env = {**os.environ, "VOXGATE_DATABASE_URL": f"sqlite:///{tmp_path}/try.sqlite3",
           "VOXGATE_JOURNAL_DIR": str(tmp_path / "journal")}
    done = subprocess.run([sys.executable, "-m", "controller", "try", "examples.ivr_menu", "--flow", "nope",
                           "--caller", "examples/scenarios/ivr.toml"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "no flow 'nope'" in done.stdout and "ivr" in done.stdout
