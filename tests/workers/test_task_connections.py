"""A real prefork worker keeps one PostgreSQL session across its tasks (workers/database.py)."""

import psycopg
import pytest
from django.db import connection

from tests import live
from tests.mirror.lab import wait_for
from workers.celery import app
from workers.tasks import prune_pod_tombstones_task

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="counts PostgreSQL sessions")


def _worker_sessions(dsn: str, database: str) -> set[tuple[int, str]]:
    """(backend pid, start) of every session on the test database but the reader's own."""
    with psycopg.connect(dsn, autocommit=True) as reader:
        rows = reader.execute("SELECT pid, backend_start::text FROM pg_stat_activity WHERE datname = %s "
                              "AND pid <> pg_backend_pid()", [database]).fetchall()
    return set(rows)


def test_a_worker_runs_its_tasks_on_one_kept_database_session(transactional_db, tmp_path):
    env = live.live_env(SPIDERWEB_DB_CONN_MAX_AGE="60")  # the production default (the live lab's is 0)
    dsn, database = env["DATABASE_URL"], connection.settings_dict["NAME"]
    connection.close()  # the test's own session is not the worker's
    before = _worker_sessions(dsn, database)
    worker = live.worker_start(tmp_path, env, concurrency=1)
    sender = app.connection_for_write(env["CELERY_BROKER_URL"])

    def run_tasks(count: int, done: int) -> None:
        for _ in range(count):
            prune_pod_tombstones_task.apply_async(connection=sender)
        wait_for(f"{done} tasks", lambda: _log_count(worker, "succeeded") >= done, timeout=60)

    try:
        # Given one task run: the worker's pool process opened one session, and it stays open after the task
        run_tasks(1, 1)
        kept = _worker_sessions(dsn, database) - before
        assert len(kept) == 1, kept
        # When five more tasks run
        run_tasks(5, 6)
        # Then they ran on that session: no other was opened (Celery's default opens one per task and closes it)
        assert _worker_sessions(dsn, database) - before == kept
    finally:
        sender.release()
        live.stop(worker)


def _log_count(worker: live.Process, word: str) -> int:
    return sum(1 for line in worker.log.read_text(errors="replace").splitlines()
               if prune_pod_tombstones_task.name in line and word in line)
