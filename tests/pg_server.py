"""A throwaway PostgreSQL server for the tests and benchmarks: initdb in a temp folder, pg_ctl start.

`ARCHBOT_TEST_DATABASE_URL` (a server you run) wins when set. Otherwise the Debian packages'
binaries are used (`/usr/lib/postgresql/*/bin`, or `initdb`/`pg_ctl` on PATH). PostgreSQL refuses
to run as root, so as root the server runs as the `postgres` system user (`runuser`), with its
data folder owned by that user. Unix sockets go to the data folder; TCP listens on 127.0.0.1 at
a free port. `fsync=off`: test data need not survive a power cut.

`python -m tests.pg_server` starts one and prints its DSN (for a benchmark by hand); the tests use
`TempPostgres` through the `pg_url` fixture, one fresh database per test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

ENV_URL = "ARCHBOT_TEST_DATABASE_URL"
REQUIRE_ENV = "ARCHBOT_REQUIRE_POSTGRES"  # CI sets it: no PostgreSQL is a failure, not a skip


def find_bin_dir() -> Path | None:
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    for folder in versions:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """A PostgreSQL cluster in a temp folder, stopped and deleted by `stop()`."""

    def __init__(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
        self.bin = bin_dir
        self.as_root = os.geteuid() == 0
        if self.as_root and shutil.which("runuser") is None:
            raise RuntimeError("running as root needs runuser to start PostgreSQL as the postgres user")
        self.folder = Path(tempfile.mkdtemp(prefix="archbot-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql://archbot@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)

    def start(self) -> str:
        if self.as_root:
            os.chmod(self.folder, 0o755)
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "archbot", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")
        return self.url

    def create_database(self) -> str:
        """A fresh, empty database on this server; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def create_database(server_url: str) -> str:
    """A fresh database on a server given by URL (ARCHBOT_TEST_DATABASE_URL)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def main(argv: list[str]) -> int:
    """`--shell`: start a server, print `export` lines for a shell to eval; `--stop FOLDER`: stop it."""
    if argv[:1] == ["--stop"] and len(argv) == 2:
        server = TempPostgres.__new__(TempPostgres)
        server.bin = find_bin_dir() or Path("/nonexistent")
        server.as_root = os.geteuid() == 0
        server.folder = Path(argv[1])
        server.data = server.folder / "data"
        server.stop()
        return 0
    server = TempPostgres()
    url = server.start()
    if argv[:1] == ["--shell"]:
        print(f"export {ENV_URL}={url}")
        print(f"export ARCHBOT_TEST_PG_DIR={server.folder}")
    else:
        print(url)
        print(f"stop: python -m tests.pg_server --stop {server.folder}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
