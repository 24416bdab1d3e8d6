"""`spiderweb.ipam.prepared` on PostgreSQL: one statement, one transaction, prepared once, with its generic plan.

It carries the allocation hot path (a new pod's allocation, every release), so what it promises is held here
against the real server: a transaction of its own, errors as Django's, the generic plan mode of the session.
"""

import pytest
from django.db import IntegrityError, connection

from spiderweb.ipam import prepared

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's (SQLite keeps Django's cursors)")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS prepared_probe (n integer PRIMARY KEY)")
        cursor.execute("TRUNCATE prepared_probe")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE prepared_probe")


def probe_rows() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT n FROM prepared_probe ORDER BY n")
        return [n for (n,) in cursor.fetchall()]


def test_a_statement_returns_its_rows_and_commits():
    rows = prepared.run("INSERT INTO prepared_probe (n) VALUES (%s), (%s) RETURNING n, NULL::text", [1, "2"])
    assert sorted(rows) == [("1", None), ("2", None)]  # PostgreSQL's text output; NULL is None
    assert prepared.run("DELETE FROM prepared_probe WHERE n = %s", [5]) == []  # no rows to return
    assert probe_rows() == [1, 2]  # committed: seen from Django's cursor


def test_a_failing_statement_keeps_nothing_and_raises_as_django_does():
    with pytest.raises(IntegrityError):
        prepared.run("INSERT INTO prepared_probe (n) VALUES (%s), (%s)", [1, 1])
    assert probe_rows() == []
    # and the connection is usable at once, with no transaction left open
    prepared.run("INSERT INTO prepared_probe (n) VALUES (%s)", [4])
    assert probe_rows() == [4]
    assert connection.connection.info.transaction_status.name == "IDLE"


def test_statements_are_prepared_once_and_run_with_their_generic_plan():
    sql = "SELECT n FROM prepared_probe WHERE n = %s"
    for n in range(3):
        prepared.run(sql, [n])
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
                       ["%FROM prepared_probe WHERE n = $1%"])
        assert len(cursor.fetchall()) == 1
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone() == ("force_generic_plan",)


def test_a_new_connection_prepares_its_statements_again():
    sql = "SELECT count(*) FROM prepared_probe WHERE n > %s"
    assert prepared.run(sql, [0]) == [("0",)]
    connection.close()  # Django reconnects on next use; the server forgot the old session's statements
    prepared.run("INSERT INTO prepared_probe (n) VALUES (%s)", [3])
    assert prepared.run(sql, [0]) == [("1",)]


@pytest.mark.parametrize("value", [True, 1.5, [1, 2], b"raw"])
def test_parameters_are_text_integers_or_null_and_anything_else_is_refused_before_sending(value):
    with pytest.raises(TypeError, match="str, int or None"):
        prepared.run("INSERT INTO prepared_probe (n) VALUES (%s)", [value])
    assert probe_rows() == []
