"""docker/Dockerfile, read as Docker reads it and checked against the repository (no Docker engine runs here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from controller.config import Settings
from tests.docker.files import (
    DOCKER,
    DOCKERFILE,
    ENTRYPOINT,
    REPO,
    dockerfile,
    env_pairs,
    exec_form,
    image_path_to_repo,
    secret_env_names,
    settings_env_names,
)

BASE = "python:3.11-slim-bookworm"


def _final(keyword: str) -> list:
    instructions = dockerfile()
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.keyword == keyword and i.stage == last]


def test_two_stages_on_the_slim_python_311_image():
    froms = [i.args.split() for i in dockerfile() if i.keyword == "FROM"]
    assert len(froms) >= 2, froms
    assert all(words[0] == BASE for words in froms), froms
    assert froms[0][1:] == ["AS", "build"]
    copies_from_build = [i for i in _final("COPY") if i.flags()[0].get("from") == "build"]
    assert copies_from_build, "the final stage copies nothing from the build stage"


def test_the_process_runs_as_uid_10001_never_root():
    instructions = dockerfile()
    users = _final("USER")
    assert [u.args for u in users] == ["10001:10001"]
    entrypoint = next(i for i in instructions if i.keyword == "ENTRYPOINT")
    assert users[-1].line < entrypoint.line
    created = " ".join(i.args for i in _final("RUN"))
    assert re.search(r"useradd .*--uid 10001", created) and "groupadd --system --gid 10001" in created


def test_the_entrypoint_is_the_repositorys_executable_posix_script():
    instructions = dockerfile()
    entrypoint = next(i for i in instructions if i.keyword == "ENTRYPOINT").exec_form()
    assert len(entrypoint) == 1, entrypoint
    source = image_path_to_repo(entrypoint[0], instructions)
    assert source == ENTRYPOINT and source.is_file()
    assert os.access(source, os.X_OK), f"{source} is not executable"
    assert source.read_text().startswith("#!/bin/sh\n")
    assert "set -eu" in source.read_text()
    assert next(i for i in instructions if i.keyword == "CMD").exec_form() == ["serve"]


def test_the_health_check_is_voxgate_health_through_the_entrypoint_in_exec_form():
    instructions = dockerfile()
    (check,) = [i for i in instructions if i.keyword == "HEALTHCHECK"]
    options, rest = check.flags()
    assert set(options) == {"interval", "timeout", "start-period", "retries"}
    word, _, command = rest.partition(" ")
    assert word == "CMD"
    argv = exec_form(command)
    assert argv[1:] == ["health"], argv
    assert image_path_to_repo(argv[0], instructions) == ENTRYPOINT  # test_entrypoint runs it against a serve


def test_sigterm_stops_it_and_the_documented_ports_are_voxgates_defaults():
    assert [i.args for i in _final("STOPSIGNAL")] == ["SIGTERM"]
    exposed = {int(port) for i in _final("EXPOSE") for port in i.args.split()}
    defaults = Settings()
    assert exposed == {defaults.esl_outbound_port, defaults.ws_port, defaults.api_port,
                       defaults.audiosocket_port, defaults.media_ws_port}


def test_every_copy_source_exists_and_the_dockerignore_lets_it_through():
    allowed = {line[1:] for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert "*" in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    sources = []
    for copy in (i for i in dockerfile() if i.keyword == "COPY"):
        options, rest = copy.flags()
        if "from" not in options:
            sources += rest.split()[:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert source.rstrip("/") in allowed, f"COPY {source}: Dockerfile.dockerignore keeps it out of the context"


def test_no_secret_is_baked_and_every_voxgate_variable_is_a_real_setting():
    env = {k: v for i in dockerfile() if i.keyword == "ENV" for k, v in env_pairs(i).items()}
    args = {i.args.split("=")[0] for i in dockerfile() if i.keyword == "ARG"}
    secrets = secret_env_names()
    for name in [*env, *args]:
        assert name not in secrets and name.removesuffix("_FILE") not in secrets, f"{name} is set in the image"
        assert not re.search(r"PASSWORD|TOKEN|SECRET|API_KEY", name), f"{name} looks like a secret baked in"
    voxgate = {k for k in env if k.startswith("VOXGATE_")}
    assert voxgate == {"VOXGATE_BIND_HOST", "VOXGATE_API"}
    assert voxgate <= settings_env_names().keys()


def test_the_build_time_engine_check_is_the_makefiles_and_it_passes_here(tmp_path):
    """The import check of `make install`, run in the image's final stage, run here as the RUN line has it."""
    makefile = (REPO / "Makefile").read_text()
    (make_check,) = re.findall(r"\$\(VENV\)/bin/python (-c '[^']*')", makefile)
    (run,) = [i for i in _final("RUN") if "import controller.agent.whisper" in i.args]
    assert f"python {make_check}" in run.args
    venv_bin = str(Path(sys.executable).parent)
    done = subprocess.run(["sh", "-c", run.args], env={"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr


def test_the_editable_install_keeps_the_migrations_beside_the_package():
    """controller.records.migrate looks for migrations/ next to controller/: both must land in one tree."""
    copies = {tuple(i.args.split()) for i in dockerfile() if i.keyword == "COPY" and i.stage == 0}
    assert ("controller", "./controller") in copies and ("migrations", "./migrations") in copies
    (install,) = [i for i in dockerfile() if i.keyword == "RUN" and "pip install" in i.args]
    assert "pip install -e '.[postgres,otel]'" in install.args  # PostgreSQL, and traces when VOXGATE_OTEL=true
    workdir = next(i.args for i in dockerfile() if i.keyword == "WORKDIR" and i.stage == 0)
    assert f"COPY --from=build {workdir} {workdir}" in DOCKERFILE.read_text()
