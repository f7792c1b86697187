"""A throwaway PostgreSQL 15 cluster for tests: ``initdb`` into a temporary
directory, ``pg_ctl start`` on a free loopback port, databases on demand,
``pg_ctl stop -m fast`` and cleanup. PostgreSQL refuses to run as root, so
as root every server command runs as the ``postgres`` user (``runuser``)
on a directory that user owns; otherwise the commands run directly. A
watchdog process stops the cluster if the test process dies without
cleaning up (``timeout`` sends SIGTERM, which skips fixture teardown)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from netutil import free_port

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin",)
SERVER_USER = "postgres"

# argv: owner pid, base dir, then the pg_ctl stop command. Polls until the
# owner is gone, then stops the server and removes the directory.
_WATCHDOG = """
import os, shutil, subprocess, sys, time
owner, base, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while True:
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        break
    time.sleep(0.5)
if os.path.isdir(base):
    subprocess.run(cmd, cwd=base, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)
"""


class PgClusterError(RuntimeError):
    """The cluster could not be created, started or used."""


def find_pg_bin() -> Path:
    """The directory with ``initdb``/``pg_ctl``: ``$PG_BIN``, the Debian path,
    or whatever ``initdb`` is on ``$PATH``."""
    env = os.environ.get("PG_BIN")
    candidates = [env] if env else []
    candidates += list(PG_BIN_CANDIDATES)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for cand in candidates:
        if cand and (Path(cand) / "initdb").is_file() and (Path(cand) / "pg_ctl").is_file():
            return Path(cand)
    raise PgClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql-15 "
        "or set PG_BIN to their directory"
    )


class PgCluster:
    """One PostgreSQL cluster. Use ``start()`` / ``stop()`` or ``with``."""

    def __init__(self, pg_bin: Path | None = None, port: int | None = None) -> None:
        self.pg_bin = pg_bin or find_pg_bin()
        self.port = port or free_port()
        self.as_root = os.geteuid() == 0
        self.base: Path | None = None
        self.running = False
        self._db_counter = 0
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- paths ------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        assert self.base is not None, "cluster not started"
        return self.base / "data"

    @property
    def sockdir(self) -> Path:
        assert self.base is not None, "cluster not started"
        return self.base / "sock"

    @property
    def logfile(self) -> Path:
        assert self.base is not None, "cluster not started"
        return self.base / "server.log"

    # -- process helpers --------------------------------------------------
    def _cmd(self, argv: Sequence[str]) -> list[str]:
        if self.as_root:
            return ["runuser", "-u", SERVER_USER, "--", *argv]
        return list(argv)

    def _run(self, argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # cwd: runuser keeps the cwd, which the postgres user may not be allowed to read.
        assert self.base is not None
        proc = subprocess.run(
            self._cmd(argv),
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise PgClusterError(
                f"{' '.join(argv[:2])} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                f"{self._log_tail()}"
            )
        return proc

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").splitlines()[-30:]
        except OSError:
            return ""
        return "\n--- server log ---\n" + "\n".join(lines)

    # -- lifecycle --------------------------------------------------------
    def start(self) -> PgCluster:
        self.base = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        try:
            self.sockdir.mkdir()
            if self.as_root:
                try:
                    pw = pwd.getpwnam(SERVER_USER)
                except KeyError:
                    raise PgClusterError(
                        f"running as root but there is no {SERVER_USER!r} user to run PostgreSQL as"
                    ) from None
                for p in (self.base, self.sockdir):
                    os.chown(p, pw.pw_uid, pw.pw_gid)
                os.chmod(self.base, 0o700)
            self._run(
                [
                    str(self.pg_bin / "initdb"),
                    "-D", str(self.datadir),
                    "-A", "trust",
                    "-U", "postgres",
                    "-E", "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
            opts = (
                f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=on "
                "-c max_connections=200"
            )
            self._run(
                [
                    str(self.pg_bin / "pg_ctl"),
                    "start",
                    "-D", str(self.datadir),
                    "-l", str(self.logfile),
                    "-o", opts,
                    "-w",
                    "-t", "60",
                ]
            )
            self.running = True
            self._start_watchdog()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _stop_cmd(self) -> list[str]:
        return self._cmd([str(self.pg_bin / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "fast", "-w"])

    def _start_watchdog(self) -> None:
        assert self.base is not None
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.base), *self._stop_cmd()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives a signal sent to our process group
        )

    def _wait_ready(self, timeout: float = 60) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error as exc:
                last = exc
                time.sleep(0.1)
        raise PgClusterError(f"PostgreSQL did not become ready: {last}{self._log_tail()}")

    def stop(self) -> None:
        if self.base is None:
            return
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        if self.running:
            with contextlib.suppress(PgClusterError, subprocess.TimeoutExpired):
                self._run([str(self.pg_bin / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "fast", "-w"])
            self.running = False
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases --------------------------------------------------------
    def dsn(self, dbname: str) -> str:
        """A libpq connection string (for psycopg directly)."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def url(self, dbname: str) -> str:
        """An SQLAlchemy URL."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a fresh unique name when none is given) and
        return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        if not self.running:
            raise PgClusterError("cluster is not running")
        if name is None:
            self._db_counter += 1
            name = f"test_{os.getpid()}_{self._db_counter}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":  # manual smoke test: python tests/pgcluster.py
    with PgCluster() as cluster:
        print(cluster.create_database("smoke"))
