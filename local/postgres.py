"""A throwaway PostgreSQL server from Debian's `postgresql` package, for the review desk's tests.

    with PostgresServer.start() as server:      # initdb'd and listening on 127.0.0.1:<free port>
        url = server.create_database("desk")     # postgresql+psycopg://postgres@127.0.0.1:PORT/desk
    # stopped (fast shutdown) and its data folder removed, even on error

The server's programs sit in the package's versioned folder (/usr/lib/postgresql/15/bin), not on PATH, and
`initdb` refuses to run as root: as root the cluster belongs to the `postgres` user the package created.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from local.stack import StackError, free_port, start_service

INSTALL_HINT = (
    "PostgreSQL's server is missing. On Debian/Ubuntu: `sudo apt-get install postgresql`; or point "
    "CHAT_TRIAGE_POSTGRES_BIN at the folder holding its initdb and postgres programs."
)


def postgres_bin() -> Path:
    """CHAT_TRIAGE_POSTGRES_BIN, or the newest /usr/lib/postgresql/<version>/bin that holds initdb."""
    if configured := os.environ.get("CHAT_TRIAGE_POSTGRES_BIN"):
        return Path(configured)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3]))
    if not found:
        raise StackError(INSTALL_HINT)
    return Path(found[-1]).parent


def _accepts_connections(port: int) -> bool:
    import psycopg

    try:
        psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def _as_owner(command: list[str]) -> list[str]:
    """`command` run as the `postgres` user when this process is root (initdb and postgres refuse root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresServer:
    """A running server with trust authentication for local connections; make one with `PostgresServer.start()`."""

    def __init__(self, port: int):
        self.port = port

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[PostgresServer]:
        binaries = postgres_bin()
        # Not under pytest's or the caller's folder: the postgres user must own the data folder and reach it.
        datadir = Path(tempfile.mkdtemp(prefix="chat-triage-postgres-"))
        try:
            if os.geteuid() == 0:
                shutil.chown(datadir, "postgres", "postgres")
            subprocess.run(
                _as_owner([str(binaries / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres", "--no-sync"]),
                check=True, capture_output=True, text=True,
            )
            port = free_port()
            command = [
                str(binaries / "postgres"), "-D", str(datadir), "-p", str(port), "-k", str(datadir),
                # A throwaway server: nothing to keep across a power cut.
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            ]
            service = start_service(
                "PostgreSQL", _as_owner(command), datadir / "server.log",
                ready=lambda: _accepts_connections(port), stop_signal=signal.SIGINT,
            )
            try:
                yield cls(port)
            finally:
                service.stop()
        except subprocess.CalledProcessError as error:
            raise StackError(f"initdb failed: {error.stderr}") from error
        finally:
            shutil.rmtree(datadir, ignore_errors=True)
