"""Benchmark plumbing: a throw-away PostgreSQL database, Django on it, and forked worker processes."""

import multiprocessing
import os
import time
import urllib.parse
from pathlib import Path


def setup_django_on_bench_db(suffix: str = "bench") -> None:
    """Point Django at a fresh `<test database>_<suffix>` database on the test server and migrate it.

    Named after the test database so that engineers sharing one server (each with their own
    SPIDERWEB_TEST_PG_DB) never drop each other's benchmark database mid-run.
    """
    import psycopg

    url = urllib.parse.urlparse(os.environ["DATABASE_URL"])
    bench_db = f"{url.path.lstrip('/') or 'spiderweb'}_{suffix}"
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {bench_db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {bench_db}")
    os.environ["DATABASE_URL"] = url._replace(path=f"/{bench_db}").geturl()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spiderweb.settings")
    os.environ.setdefault("SPIDERWEB_SECRET_KEY", "bench")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def run_processes(target, count: int, *args) -> list:
    """Fork `count` workers running target(index, *args, queue); return their results."""
    from django.db import connections

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(i, *args, queue)) for i in range(count)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def now() -> float:
    return time.perf_counter()


def lab_bench_result_path(result_env: str, module: str) -> Path:
    """Inside a lab benchmark's pytest run: the JSON file its figures go to (``lab_bench_run`` names it in
    ``result_env``); the test is skipped when pytest was started some other way."""
    import pytest

    path = os.environ.get(result_env)
    if not path:
        pytest.skip(f"run as `python -m {module}` (it sets {result_env})")
    return Path(path)


def lab_bench_run(test_file: str, name: str, result_env: str, redis_db: str) -> dict | int:
    """Run a lab benchmark's test module under pytest, as root, on a test database and an e2e Redis database of its
    own (``spiderweb_<name>``; ``SPIDERWEB_TEST_E2E_REDIS_DB`` or ``redis_db``), so it runs beside the test suite.

    The test writes its figures as JSON to the file named by ``result_env``; returns them, or an exit code."""
    import json
    import subprocess
    import sys
    import tempfile
    from urllib.parse import urlsplit, urlunsplit

    if os.geteuid() != 0:
        print(f"bench-{name} needs root (network namespaces, as tests/e2e)", file=sys.stderr)
        return 2
    database = urlsplit(os.environ.get("DATABASE_URL", "postgres://spiderweb:spiderweb@127.0.0.1:5432/spiderweb"))
    with tempfile.TemporaryDirectory(prefix=f"swbench-{name}-") as tmp:
        result = Path(tmp) / "result.json"
        env = {**os.environ, result_env: str(result), "SPIDERWEB_REQUIRE_LAB": "1",
               "DATABASE_URL": urlunsplit(database._replace(path=f"/spiderweb_{name}")),
               "SPIDERWEB_TEST_E2E_REDIS_DB": os.environ.get("SPIDERWEB_TEST_E2E_REDIS_DB", redis_db)}
        env.setdefault("SPIDERWEB_SECRET_KEY", "bench")
        root = Path(__file__).resolve().parents[2]
        done = subprocess.run([sys.executable, "-m", "pytest", test_file, "-q", "-s", "-p", "no:cacheprovider",
                               f"--basetemp={tmp}/pytest"], cwd=root, env=env)
        if done.returncode != 0 or not result.exists():
            print(f"bench-{name} failed (pytest exit {done.returncode})", file=sys.stderr)
            return done.returncode or 1
        return json.loads(result.read_text())
