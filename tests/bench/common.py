"""Benchmark plumbing: a throw-away PostgreSQL database, Django on it, and forked worker processes."""

import multiprocessing
import os
import time
import urllib.parse

# Per engineer / CI run: derived from the test database name so parallel benches never drop each other's database.
BENCH_DB = os.environ.get("SPIDERWEB_TEST_PG_DB", "spiderweb") + "_bench"


def setup_django_on_bench_db() -> None:
    """Point Django at a fresh `spiderweb_bench` database on the test server and migrate it."""
    import psycopg

    url = urllib.parse.urlparse(os.environ["DATABASE_URL"])
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    os.environ["DATABASE_URL"] = url._replace(path=f"/{BENCH_DB}").geturl()
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
