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
    assert got["options"] == {"timeout": 30}


@pytest.mark.parametrize("value", ["-1", "5s", "1.5", "2147483648", "ten"])
def test_a_bad_timeout_stops_start_up_naming_the_variable(tmp_path, value):
    run = settings_for("postgres://u:p@db.example/spiderweb", tmp_path, SPIDERWEB_DB_LOCK_TIMEOUT_MS=value)
    assert run.returncode != 0
    assert f"SPIDERWEB_DB_LOCK_TIMEOUT_MS={value!r} is not a whole number of milliseconds" in run.stderr
