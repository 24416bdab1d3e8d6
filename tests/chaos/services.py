"""A private PostgreSQL server and a private Redis server for one chaos run, each restartable.

Private because the run restarts them: restarting the machine's shared PostgreSQL cluster or Redis (the ones
``tests/infra/services.sh`` starts) would cut every other test run on this machine off its database and broker.
Both come from the same Debian packages as the shared ones, on free loopback ports, with their data under the
run's work directory; nothing is persisted (the run's database is thrown away with it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.lab.controlplane import free_port

PG_USER = "spiderweb"


def _pg_bin() -> Path:
    """The newest installed PostgreSQL's binaries (Debian layout: /usr/lib/postgresql/<version>/bin)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError("no PostgreSQL server installed (run tests/infra/services.sh)")
    return versions[-1].parent


class PrivatePostgres:
    """``initdb`` + ``pg_ctl`` as the ``postgres`` user; ``restart()`` is ``pg_ctl restart -m fast`` (every client
    is disconnected, as ``pg_ctlcluster <ver> main restart`` does).

    The data directory is a directory of its own under /tmp (the ``postgres`` user cannot reach into a private
    work directory such as pytest's); ``stop()`` removes it and leaves the server log in ``workdir``."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.dir = Path(tempfile.mkdtemp(prefix="spiderweb-chaos-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.bin = _pg_bin()
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"postgres://{PG_USER}:{PG_USER}@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgres://{PG_USER}:{PG_USER}@127.0.0.1:{self.port}/{name}"

    def _as_postgres(self, *args: str, timeout: float = 120) -> None:
        proc = subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stdout[-1500:]}"
                               f"{proc.stderr[-1500:]}")

    def start(self) -> PrivatePostgres:
        self.dir.chmod(0o755)
        shutil.chown(self.dir, "postgres")
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", PG_USER, "-A", "trust", "--no-sync",
                          "-E", "UTF8")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
                   "-c shared_buffers=64MB")
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                          str(self.dir / "postgres.log"), "-w", "start")
        return self

    def restart(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "restart", "-l",
                          str(self.dir / "postgres.log"))
        self.restarts += 1

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            if (self.dir / "postgres.log").exists():
                shutil.copy(self.dir / "postgres.log", self.workdir / "postgres.log")
            shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """``redis-server`` on a free loopback port, no persistence: a restart loses every queued message."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "redis"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.restarts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.dir)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout.strip() \
                != b"PONG":
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {(self.dir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.1)
        return self

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
