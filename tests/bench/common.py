"""Benchmark plumbing: a throw-away PostgreSQL database, Django on it, and forked worker processes."""

import multiprocessing
import os
import time
import urllib.parse


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
