"""`spiderweb.ipam.pipelined` on PostgreSQL: one round trip, one implicit transaction, statements prepared once.

It carries the allocation hot path (a new pod's two trips, every release), so what it promises is held here
against the real server: atomicity without BEGIN, errors as Django's, the generic plan mode of the session.
"""

import pytest
from django.db import IntegrityError, connection

from spiderweb.ipam import pipelined

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("pipelined statements are PostgreSQL's (SQLite keeps Django's cursors)")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS pipelined_probe (n integer PRIMARY KEY)")
        cursor.execute("TRUNCATE pipelined_probe")
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE pipelined_probe")


def probe_rows() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT n FROM pipelined_probe ORDER BY n")
        return [n for (n,) in cursor.fetchall()]


def test_statements_return_their_own_rows_and_commit_together():
    inserted, counted = pipelined.send([
        ("INSERT INTO pipelined_probe (n) VALUES (%s), (%s) RETURNING n", [1, 2]),
        ("SELECT count(*) FROM pipelined_probe WHERE n > %s", [0]),
    ])
    assert sorted(inserted) == [(1,), (2,)]
    assert counted == [(2,)]  # the second statement sees the first one's rows: one transaction
    assert probe_rows() == [1, 2]


def test_a_failing_statement_rolls_back_the_ones_before_it_and_raises_as_django_does():
    with pytest.raises(IntegrityError):
        pipelined.send([
            ("INSERT INTO pipelined_probe (n) VALUES (%s)", [1]),
            ("INSERT INTO pipelined_probe (n) VALUES (%s)", [1]),
            ("INSERT INTO pipelined_probe (n) VALUES (%s)", [3]),
        ])
    assert probe_rows() == []
    # and the connection is usable at once, with no transaction left open
    pipelined.send([("INSERT INTO pipelined_probe (n) VALUES (%s)", [4])])
    assert probe_rows() == [4]


def test_an_explicit_transaction_spans_round_trips_and_rolls_back_on_request():
    pipelined.send([("BEGIN", None), ("INSERT INTO pipelined_probe (n) VALUES (%s)", [5])])
    with pytest.raises(IntegrityError):
        pipelined.send([("INSERT INTO pipelined_probe (n) VALUES (%s)", [5]), ("COMMIT", None)])
    pipelined.rollback_quietly()
    assert probe_rows() == []
    pipelined.send([("BEGIN", None), ("INSERT INTO pipelined_probe (n) VALUES (%s)", [6])])
    pipelined.send([("COMMIT", None)])
    assert probe_rows() == [6]


def test_statements_are_prepared_once_and_run_with_their_generic_plan():
    sql = "SELECT n FROM pipelined_probe WHERE n = %s"
    for n in range(3):
        pipelined.send([(sql, [n])])
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
                       ["%FROM pipelined_probe WHERE n = $1%"])
        assert len(cursor.fetchall()) == 1
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone() == ("force_generic_plan",)
