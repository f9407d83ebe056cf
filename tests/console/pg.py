"""A real, throwaway PostgreSQL server for the console's tests: Debian's ``postgresql`` package
(``/usr/lib/postgresql/<version>/bin``), a fresh cluster in a temporary directory, listening on
127.0.0.1 on a free port (its unix socket in that directory too), trust authentication for the
loopback only, stopped and deleted at the end.

``initdb`` and ``postgres`` refuse to run as root: as root, the cluster belongs to the ``postgres``
system user the package creates and every server command runs through ``runuser -u postgres``.
Readiness is a condition (a connection that answers ``SELECT 1``), never a fixed sleep.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "postgres_bin_dir"]

PACKAGE = "postgresql"  # the Debian package that ships initdb, pg_ctl and postgres
SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here (the message says which package to install)."""


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb, pg_ctl and postgres."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bin_dir = Path(initdb).parent
        version = bin_dir.parent.name
        if all((bin_dir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            found.append((int(version) if version.isdigit() else 0, bin_dir))
    if not found:
        raise PostgresUnavailable(
            f"no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): install the Debian package "
            f"{PACKAGE!r} (apt-get install {PACKAGE}; scripts/install.sh does)"
        )
    return max(found)[1]


class PostgresServer:
    """One cluster: :meth:`start`, :meth:`new_database` for each test that wants a clean one, :meth:`stop`."""

    def __init__(self, port: int, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or postgres_bin_dir()
        self.port = port
        self.host = "127.0.0.1"
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="xiaozhi-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        self.started = False

    # -- commands -------------------------------------------------------------------------------
    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", SUPERUSER, "--", *cmd] if self.as_root else cmd

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _owned(self, path: Path) -> None:
        if self.as_root:
            shutil.chown(path, SUPERUSER, SUPERUSER)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> None:
        if self.as_root and shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root needs runuser (util-linux) to start PostgreSQL as postgres")
        self._owned(self.root)  # mkdtemp made it 0700: only its owner (the server's user) gets in
        self.sockets.mkdir()
        self._owned(self.sockets)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=trust",  # initdb's pg_hba.conf allows host connections from 127.0.0.1/::1 only
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses={self.host} -p {self.port} -k {self.sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "  # a throwaway cluster
            "-c max_connections=200"
        )
        # -W: do not let pg_ctl wait; readiness is checked below, with the server's log on failure.
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-W", "start")
        self.started = True
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:  # not listening yet, or "the database system is starting up"
                error = exc
            if not (self.data / "postmaster.pid").exists() and "FATAL" in self.log_text():
                break  # it exited (a port taken, a bad setting): no point waiting for the deadline
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not accept connections on port {self.port}: {error}\n{self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ------------------------------------------------------------------------------
    def dsn(self, database: str) -> str:
        """A libpq connection string (what psycopg takes)."""
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL the console takes (``--db``)."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def new_database(self, prefix: str = "console") -> str:
        """Create an empty database with a unique name; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:  # CREATE DATABASE: no transaction
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
