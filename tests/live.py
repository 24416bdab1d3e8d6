"""Real processes on the test database: the portal under gunicorn (several workers, multiprocess metrics), a Celery
worker on a private Redis database, and a scrape helper that parses Prometheus text.

Tests that use them need ``transactional_db`` (the processes only see committed rows).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.lab.controlplane import free_port
from tests.mirror.lab import stop_process, wait_for  # noqa: F401 - re-exported

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# A Redis database of its own, so no other test's worker takes these tasks (the mirror's is 15).
LIVE_REDIS_DB = os.environ.get("SPIDERWEB_TEST_LIVE_REDIS_DB", "14")


def live_env(**extra: str) -> dict[str, str]:
    """Environment for a project process on the test database (call inside a test that has the database)."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    broker = urlsplit(settings.CELERY_BROKER_URL)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "PROMETHEUS_MULTIPROC_DIR")}
    env |= {
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SPIDERWEB_DB_CONN_MAX_AGE": "0",
        "PYTHONPATH": str(REPO),
    }
    if broker.scheme == "redis":
        env["CELERY_BROKER_URL"] = urlunsplit((broker.scheme, broker.netloc, f"/{LIVE_REDIS_DB}", "", ""))
    return env | extra


@dataclass
class Process:
    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def spawn(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def portal_start(workdir: Path, env: dict, *, workers: int = 2) -> Process:
    """gunicorn with the portal's config module (multiprocess metrics in ``workdir/prometheus``)."""
    port = free_port()
    log = workdir / "gunicorn.log"
    env = env | {"PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus")}
    process = spawn([str(VENV_BIN / "gunicorn"), "-c", "python:spiderweb.gunicorn_conf", "spiderweb.wsgi:application",
                     f"--bind=127.0.0.1:{port}", f"--workers={workers}", "--timeout=60", "--no-control-socket"],
                    env, log)
    portal = Process(url=f"http://127.0.0.1:{port}", process=process, log=log)

    def up():
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{portal.log_tail()}")
        return http_ok(f"{portal.url}/metrics")

    wait_for("the portal under gunicorn", up, timeout=60)
    return portal


def worker_start(workdir: Path, env: dict, *, concurrency: int = 2) -> Process:
    """A prefork Celery worker with its metrics listener (multiprocess metrics in ``workdir/prometheus``)."""
    if not env.get("CELERY_BROKER_URL", "").startswith("redis://"):
        pytest.skip("the live worker needs a Redis broker (CELERY_BROKER_URL=redis://...)")
    _broker_empty(env["CELERY_BROKER_URL"])
    port = free_port()
    log = workdir / "worker.log"
    env = env | {"PROMETHEUS_MULTIPROC_DIR": str(workdir / "prometheus"), "SPIDERWEB_WORKER_METRICS_PORT": str(port),
                 "SPIDERWEB_WORKER_METRICS_ADDRESS": "127.0.0.1"}
    process = spawn([str(VENV_BIN / "celery"), "-A", "workers.celery", "worker", "--pool=prefork",
                     f"--concurrency={concurrency}", "--loglevel=INFO", "--without-gossip", "--without-mingle",
                     "--without-heartbeat", f"--hostname=live-{port}@%h"], env, log)
    worker = Process(url=f"http://127.0.0.1:{port}", process=process, log=log)

    def up():
        if process.poll() is not None:
            raise AssertionError(f"the worker exited with {process.returncode}:\n{worker.log_tail()}")
        return http_ok(f"{worker.url}/metrics") and "ready." in worker.log.read_text(errors="replace")

    wait_for("the Celery worker", up, timeout=60)
    return worker


def _broker_empty(url: str) -> None:
    """Drop what an earlier test left in the live Redis database (messages a stopped worker had reserved come back
    there), so each worker counts only its own test's tasks."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def agent_healthy(client) -> bool:
    """Whether the agent behind ``client`` (a ``cni.agent_client.AgentClient``) answers its health check yet."""
    try:
        client.healthy()
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def stop(proc: Process) -> None:
    stop_process(proc.process)


@dataclass
class Scrape:
    """Parsed Prometheus text: families by name (``_total`` stripped from counters, as the parser does)."""

    families: dict

    def value(self, sample_name: str, **labels) -> float:
        """Sum of the samples named ``sample_name`` whose labels include ``labels``."""
        total = 0.0
        found = False
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == sample_name and labels.items() <= sample.labels.items():
                    total += sample.value
                    found = True
        if not found:
            raise AssertionError(f"no sample {sample_name}{labels or ''}")
        return total

    def type_of(self, name: str) -> str:
        return self.families[name].type

    def sample_names(self) -> set[str]:
        return {sample.name for family in self.families.values() for sample in family.samples}


def scrape(url: str, *, headers: dict | None = None) -> Scrape:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(response.read().decode())


def parse(text: str) -> Scrape:
    return Scrape({family.name: family for family in text_string_to_metric_families(text)})
