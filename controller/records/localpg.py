"""A private, throw-away PostgreSQL server: for the tests and the benchmarks, never for production.

The cluster is initialised in a temporary folder, listens on 127.0.0.1 on a free port with a
password-protected user, and runs with durability off (fsync, synchronous commit): it
exercises the same driver, authentication and SQL as production without touching any
PostgreSQL the machine may already run.
"""

from __future__ import annotations

import glob
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

USER = "voxgate"
DATABASE = "voxgate"
_SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # throw-away data


def find_postgres_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl: pg_config's, Debian's newest, or the PATH's."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_of, reverse=True)
    candidates += [Path(p) for p in debian]
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    return next((d for d in candidates if (d / "initdb").is_file() and (d / "pg_ctl").is_file()), None)


def _version_of(bindir: str) -> float:
    try:
        return float(Path(bindir).parent.name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresCluster:
    """One throw-away PostgreSQL server; `url` reaches its `voxgate` database over TCP with a password."""

    bindir: Path
    root: Path
    port: int = field(default_factory=_free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    running: bool = False

    @classmethod
    def create(cls, bindir: Path) -> PostgresCluster:
        """initdb, start, and add the password-protected user and its database."""
        root = Path(tempfile.mkdtemp(prefix="voxgate-pg-"))
        cluster = cls(bindir, root)
        try:
            if os.geteuid() == 0:  # initdb and postgres refuse to run as root
                shutil.chown(root, "postgres", "postgres")
            cluster._pg(
                "initdb", "-D", str(cluster.datadir), "-U", "postgres", "-E", "UTF8", "--locale=C",
                "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256",
            )
            cluster.start()
            with cluster.admin() as conn:
                conn.execute(f"CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{cluster.password}'")
                conn.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 {_SERVER_OPTIONS}"
        self._pg("pg_ctl", "-D", str(self.datadir), "-l", str(self.root / "server.log"), "-w", "-o", options, "start")
        self.running = True

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in a real outage."""
        self._pg("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")
        self.running = False

    def create_database(self) -> str:
        """A new empty database owned by the test user; its URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {USER}")
        return self.url_for(name)

    def admin(self) -> psycopg.Connection:
        """A superuser connection over the cluster's private Unix socket."""
        return psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname="postgres", autocommit=True)

    def destroy(self) -> None:
        if self.running:
            try:
                self.stop()
            except subprocess.CalledProcessError:
                pass  # removing the folder below still ends the test run's footprint
        shutil.rmtree(self.root, ignore_errors=True)

    def _pg(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = (
                ["runuser", "-u", "postgres", "--", *command]
                if shutil.which("runuser")
                else ["su", "-s", "/bin/sh", "postgres", "-c", shlex.join(command)]
            )
        result = subprocess.run(command, cwd=self.root, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise subprocess.CalledProcessError(
                result.returncode, command, result.stdout, f"{result.stderr}\n--- server.log ---\n{tail}"
            )
