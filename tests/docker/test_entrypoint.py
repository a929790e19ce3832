"""docker/entrypoint.sh run as a plain process with the container's environment, and the image's HEALTHCHECK
command run against it: secrets from *_FILE, the database wait, migrations, exec into serve, SIGTERM.

No Docker engine runs here. The processes get what the container would: the Dockerfile's ENV and compose-style
VOXGATE_*_FILE secrets, with PATH at this venv, bind_host 127.0.0.1 and VOXGATE_PRELOAD_ENGINES=false (start-up
in seconds: the image's own build step checks that the engines load).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from tests.docker.files import ENTRYPOINT, dockerfile, env_pairs, exec_form, image_path_to_repo

VENV_BIN = Path(sys.executable).parent
API_TOKEN = "entrypoint-api-token-7Qm2xV9cLp"
TOKEN_SECRET = "entrypoint-token-secret-Rk4p8ZsWn"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _secret_file(tmp_path: Path, name: str, value: str) -> str:
    """A Docker-secret-like file, ending in a newline as `echo value > file` leaves it."""
    path = tmp_path / "run-secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(value + "\n")
    return str(path)


def _container_env(tmp_path: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {name: value for i in dockerfile() if i.keyword == "ENV" for name, value in env_pairs(i).items()}
    env |= {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(tmp_path), "VOXGATE_BIND_HOST": "127.0.0.1",
            "VOXGATE_ESL_OUTBOUND_PORT": "0", "VOXGATE_WS_PORT": "0", "VOXGATE_API_PORT": str(_free_port()),
            "VOXGATE_PRELOAD_ENGINES": "false", "VOXGATE_DRAIN_S": "20",
            "VOXGATE_API_TOKEN_FILE": _secret_file(tmp_path, "api_token", API_TOKEN),
            "VOXGATE_TOKEN_SECRET_FILE": _secret_file(tmp_path, "token_secret", TOKEN_SECRET)}
    if database_url is not None:
        env["VOXGATE_DATABASE_URL_FILE"] = _secret_file(tmp_path, "database_url", database_url)
    return env | extra


def _healthcheck() -> list[str]:
    """The Dockerfile's HEALTHCHECK CMD, with its program mapped back to the repository file the image copies."""
    instructions = dockerfile()
    (check,) = [i for i in instructions if i.keyword == "HEALTHCHECK"]
    argv = exec_form(check.flags()[1].removeprefix("CMD").strip())
    return [str(image_path_to_repo(argv[0], instructions)), *argv[1:]]


async def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 60) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(*argv, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, out.decode(), err.decode()


class Container:
    """The entrypoint as PID "1" of a pretend container: its output, its health as Docker would probe it."""

    def __init__(self, process: asyncio.subprocess.Process, env: dict[str, str], workdir: Path) -> None:
        self.process, self.env, self.workdir = process, env, workdir
        self.output: list[str] = []
        self._lines = asyncio.Queue[str]()
        self._readers = [asyncio.ensure_future(self._read(stream)) for stream in (process.stdout, process.stderr)]

    @classmethod
    async def start(cls, tmp_path: Path, env: dict[str, str]) -> Container:
        workdir = tmp_path / "var-lib-voxgate"  # the image's WORKDIR: relative paths (journal) land here
        workdir.mkdir()
        # a session of its own, like a container's PID 1, so cleanup can end whatever it left (see kill)
        process = await asyncio.create_subprocess_exec(str(ENTRYPOINT), env=env, cwd=workdir, start_new_session=True,
                                                       stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return cls(process, env, workdir)

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := (await stream.readline()).decode():
            self.output.append(line)
            self._lines.put_nowait(line)

    async def wait_for_line(self, text: str, timeout: float = 30) -> None:
        async def scan() -> None:
            while text not in await self._lines.get():
                pass
        await asyncio.wait_for(scan(), timeout)

    async def probe(self, *args: str) -> tuple[int, str, str]:
        """One run of the image's HEALTHCHECK command (plus args), in the container's environment."""
        return await _run([*_healthcheck(), *args], self.env, self.workdir, timeout=30)

    async def healthy(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            code, out, err = await self.probe()
            self.output += [out, err]
            if code == 0:
                return out
            assert self.process.returncode is None, f"the entrypoint exited {self.process.returncode}:\n{self.log}"
            assert time.monotonic() < deadline, f"never healthy; last probe said {err!r}\n{self.log}"
            await asyncio.sleep(0.3)

    async def stop(self) -> tuple[int, float]:
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 30)
        await asyncio.gather(*self._readers)
        return code, time.monotonic() - sent

    def kill(self) -> None:
        """End the process group the entrypoint leads: a serve that was not exec'd would outlive a dead sh."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    @property
    def log(self) -> str:
        return "".join(self.output)


def _revealed(text: str, *values: str) -> list[str]:
    return [value for value in values if value in text]


async def test_the_entrypoint_migrates_execs_serve_and_the_healthcheck_sees_it_until_sigterm(tmp_path):
    database = tmp_path / "records" / "voxgate.sqlite3"
    database_url = f"sqlite:///{database}"
    container = await Container.start(tmp_path, _container_env(tmp_path, database_url))
    try:
        said = await container.healthy()
        assert said.startswith("live: 0 live call(s), up "), said
        code, out, err = await container.probe("--ready")
        assert (code, out.split(":")[0]) == (0, "ready"), err
        # exec: the entrypoint's own PID is now `voxgate serve`, so Docker's SIGTERM lands on it, not on sh
        command = Path(f"/proc/{container.process.pid}/cmdline").read_bytes().split(b"\0")
        assert Path(command[0].decode()).name.startswith("python"), command
        assert command[1:3] == [str(VENV_BIN / "voxgate").encode(), b"serve"], command
        with sqlite3.connect(database) as db:
            assert db.execute("select count(*) from alembic_version").fetchone() == (1,)
            assert db.execute("select count(*) from calls").fetchone() == (0,)
        code, took = await container.stop()
    finally:
        container.kill()
    assert code == 0, container.log
    assert took < 10, took  # no call in progress: the drain has nothing to wait for
    log = container.log
    assert f"database {database_url}: upgrade done" in log
    assert "voxgate-entrypoint: starting voxgate serve as uid" in log
    assert "stopping: taking no new calls; 0 call(s) in progress get up to 20 s" in log
    assert (container.workdir / "var" / "journal").is_dir()  # relative paths land in the working directory
    assert _revealed(log, API_TOKEN, TOKEN_SECRET) == []


async def test_the_healthcheck_fails_with_one_line_when_nothing_serves(tmp_path):
    env = _container_env(tmp_path, f"sqlite:///{tmp_path}/x.sqlite3")
    code, out, err = await _run(_healthcheck(), env, tmp_path, timeout=30)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"voxgate health: http://127.0.0.1:{env['VOXGATE_API_PORT']}/")
    assert _revealed(out + err, API_TOKEN, TOKEN_SECRET) == []


async def test_a_missing_secret_stops_it_before_anything_starts_and_names_only_whats_missing(tmp_path):
    env = _container_env(tmp_path, None)
    del env["VOXGATE_TOKEN_SECRET_FILE"]
    started = time.monotonic()
    code, out, err = await _run([str(ENTRYPOINT)], env, tmp_path, timeout=30)
    assert code == 2 and out == ""
    assert "missing required secret(s): VOXGATE_TOKEN_SECRET VOXGATE_DATABASE_URL." in err
    assert "VOXGATE_API_TOKEN " not in err and "NAME_FILE" in err
    assert _revealed(err, API_TOKEN) == []
    assert time.monotonic() - started < 5 and not (tmp_path / "var").exists()  # no migration, no serve


async def test_a_secret_kept_in_the_voxgate_config_file_counts_as_given(tmp_path):
    config = tmp_path / "voxgate.toml"
    config.write_text(f'[voxgate]\ntoken_secret = "{TOKEN_SECRET}"\n')
    env = _container_env(tmp_path, None, VOXGATE_CONFIG=str(config))
    del env["VOXGATE_TOKEN_SECRET_FILE"]
    code, out, err = await _run([str(ENTRYPOINT)], env, tmp_path, timeout=30)
    assert code == 2 and "missing required secret(s): VOXGATE_DATABASE_URL." in err, err
    assert _revealed(out + err, API_TOKEN, TOKEN_SECRET) == []


@pytest.mark.parametrize("problem", ["both", "unreadable", "empty"])
async def test_a_bad_secret_file_is_refused_with_its_name_never_its_value(tmp_path, problem):
    env = _container_env(tmp_path, f"sqlite:///{tmp_path}/x.sqlite3")
    if problem == "both":
        env["VOXGATE_API_TOKEN"] = API_TOKEN
        expected = "VOXGATE_API_TOKEN and VOXGATE_API_TOKEN_FILE are both set: keep one"
    elif problem == "unreadable":
        env["VOXGATE_API_TOKEN_FILE"] = str(tmp_path / "no-such-secret")
        expected = f"VOXGATE_API_TOKEN_FILE={tmp_path / 'no-such-secret'}: not a readable file"
    else:
        Path(env["VOXGATE_API_TOKEN_FILE"]).write_text("\n")
        expected = f"VOXGATE_API_TOKEN_FILE={env['VOXGATE_API_TOKEN_FILE']} is empty"
    code, out, err = await _run([str(ENTRYPOINT)], env, tmp_path, timeout=30)
    assert code == 2 and expected in err, err
    assert _revealed(out + err, API_TOKEN, TOKEN_SECRET) == []


async def test_the_database_wait_is_bounded_and_never_prints_the_password(tmp_path):
    password = "pg-Wait-Pa55-q7Zr"
    url = f"postgresql+psycopg://voxgate:{password}@127.0.0.1:{_free_port()}/voxgate"
    env = _container_env(tmp_path, url, WAIT_FOR_DB_TRIES="2", WAIT_FOR_DB_INTERVAL_S="0.2")
    code, out, err = await _run([str(ENTRYPOINT)], env, tmp_path, timeout=60)
    assert code == 2, err
    assert "voxgate-entrypoint: waiting for the database (try 1 of 2, again in 0.2s)" in err
    assert "the database did not answer after 2 tries; giving up" in err
    assert f"postgresql+psycopg://voxgate:**********@127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in err
    assert _revealed(out + err, password, API_TOKEN, TOKEN_SECRET) == []


async def test_it_waits_for_postgresql_to_come_up_then_migrates_and_serves(tmp_path, private_postgres):
    url = private_postgres.create_database()
    private_postgres.stop()
    env = _container_env(tmp_path, url, WAIT_FOR_DB_TRIES="120", WAIT_FOR_DB_INTERVAL_S="0.25")
    container = await Container.start(tmp_path, env)
    try:
        await container.wait_for_line("voxgate-entrypoint: waiting for the database (try 1 of 120")
        await asyncio.to_thread(private_postgres.start)
        said = await container.healthy()
        assert said.startswith("live: 0 live call(s)"), said
        code, _ = await container.stop()
    finally:
        container.kill()
    assert code == 0, container.log
    assert "upgrade done" in container.log and "postgresql+psycopg://voxgate:**********@127.0.0.1:" in container.log
    assert _revealed(container.log, private_postgres.password, API_TOKEN, TOKEN_SECRET) == []
