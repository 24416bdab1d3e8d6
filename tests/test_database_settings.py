"""Database settings read from the environment: PostgreSQL gets the portal's timeouts, SQLite is left alone, and a
bad value stops start-up naming the variable.

Each case imports `spiderweb.settings` in a fresh interpreter, because settings are read once per process.
"""

import json
import os
import subprocess
import sys

import pytest

PRINT_DATABASE = (
    "import json, spiderweb.settings as s; d = s.DATABASES['default']; "
    "print(json.dumps({'engine': d['ENGINE'], 'options': d.get('OPTIONS', {}), "
    "'health_checks': d['CONN_HEALTH_CHECKS']}))"
)


def settings_for(database_url: str, tmp_path, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIDERWEB_DB_")}
    environment |= {"DATABASE_URL": database_url, "SPIDERWEB_SECRET_KEY": "x", "SPIDERWEB_STATE_DIR": str(tmp_path),
                    **env}
    return subprocess.run([sys.executable, "-c", PRINT_DATABASE], env=environment, capture_output=True, text=True,
                          timeout=60)


def database(database_url: str, tmp_path, **env) -> dict:
    run = settings_for(database_url, tmp_path, **env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_postgresql_connections_start_with_the_lock_and_idle_in_transaction_timeouts(tmp_path):
    got = database("postgres://u:p@db.example:5432/spiderweb", tmp_path)
    assert got["options"]["options"] == "-c lock_timeout=5000 -c idle_in_transaction_session_timeout=30000"
    assert got["health_checks"] is True


def test_the_timeouts_are_configurable_and_options_in_the_url_win(tmp_path):
    url = "postgres://u:p@db.example/spiderweb?options=-c%20lock_timeout%3D100"
    got = database(url, tmp_path, SPIDERWEB_DB_LOCK_TIMEOUT_MS="2500", SPIDERWEB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS="0")
    assert got["options"]["options"] == "-c lock_timeout=2500 -c lock_timeout=100"  # libpq: the last one wins


def test_zero_turns_both_timeouts_off(tmp_path):
    got = database("postgres://u:p@db.example/spiderweb", tmp_path, SPIDERWEB_DB_LOCK_TIMEOUT_MS="0",
                   SPIDERWEB_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS="0")
    assert "options" not in got["options"]


def test_sqlite_gets_no_postgresql_options(tmp_path):
    got = database(f"sqlite:///{tmp_path}/db.sqlite3", tmp_path)
    assert got["engine"] == "django.db.backends.sqlite3"
    assert got["options"]["timeout"] == 30
    assert "lock_timeout" not in json.dumps(got["options"])


SQLITE_WRITERS = """
import json, os, threading, time
import django
django.setup()
from django.db import connection, transaction
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS t (n integer)")
    cursor.execute("PRAGMA journal_mode")
    mode = cursor.fetchone()[0]
connection.close()
errors = []

def writer():
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM t")  # read first (an allocation plans, then inserts)
            time.sleep(0.3)
            cursor.execute("INSERT INTO t VALUES (1)")
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()

threads = [threading.Thread(target=writer) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"mode": mode, "errors": errors}))
"""


def test_sqlite_writers_that_read_first_wait_instead_of_database_is_locked(tmp_path):
    # Given the embedded demo's SQLite (issue 10: `make run` answered an occasional "database is locked" 500)
    environment = dict(os.environ) | {
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "SPIDERWEB_SECRET_KEY": "x",
        "SPIDERWEB_STATE_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "spiderweb.settings",
    }
    # When three transactions each read and then write at the same time
    run = subprocess.run([sys.executable, "-c", SQLITE_WRITERS], env=environment, capture_output=True, text=True,
                         timeout=60)
    # Then all of them commit (they queue for the write lock), and readers run beside the writer (WAL)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got == {"mode": "wal", "errors": []}


@pytest.mark.parametrize("value", ["-1", "5s", "1.5", "2147483648", "ten"])
def test_a_bad_timeout_stops_start_up_naming_the_variable(tmp_path, value):
    run = settings_for("postgres://u:p@db.example/spiderweb", tmp_path, SPIDERWEB_DB_LOCK_TIMEOUT_MS=value)
    assert run.returncode != 0
    assert f"SPIDERWEB_DB_LOCK_TIMEOUT_MS={value!r} is not a whole number of milliseconds" in run.stderr
