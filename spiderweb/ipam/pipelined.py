"""The allocation hot path's statements, prepared and pipelined on Django's PostgreSQL connection.

A statement Django sends is bound client-side and parsed, analysed and planned by the server every time; for the
few large statements a CNI ADD or DEL runs, that work was most of the server's time. Here each statement is
prepared once per connection (psycopg keeps the names) and later sent as Bind/Execute only, and the statements
of one step travel together in pipeline mode: one round trip for several statements, each with its own snapshot,
as separate statements have. Persistent connections (`SPIDERWEB_DB_CONN_MAX_AGE`) keep the prepared statements.

Statements sent together without BEGIN are one implicit transaction, committed when the last succeeds and rolled
back entirely when one fails. A caller spanning several round trips sends BEGIN and COMMIT among its statements
(Django's connection stays in autocommit) and, after an error, ROLLBACK (`rollback_quietly`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import psycopg
from django.db import DatabaseError, connection
from psycopg.pq import ExecStatus

log = logging.getLogger(__name__)

Params = Sequence | Mapping | None
TUPLES_OK = ExecStatus.TUPLES_OK

# psycopg prepares a statement run this many times even unasked; Django's cursors never prepare (client-side
# binding), so only the statements sent here with prepare=True are.
_ONLY_WHEN_ASKED = 2**31 - 1
# Prepared statements run with their generic plan: planning again for every execution (PostgreSQL's custom plans)
# would cost most of what preparing saves. It affects nothing else Django sends (never prepared), and PL/pgSQL.
_GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"


def send(statements: Sequence[tuple[str, Params]]) -> list[list[tuple]]:
    """Run `statements` in one round trip and return the rows of each (empty for those that return none).

    Called outside a transaction of Django's (the first call on a connection sets its plan mode, for the session).
    A statement with parameters is prepared; BEGIN, COMMIT and the like (None) are sent as they are. The first
    error raises as Django's `DatabaseError` family, as a Django cursor would raise it; the statements after it
    did not run.
    """
    connection.ensure_connection()
    raw = connection.connection
    cursors = [psycopg.Cursor(raw) for _ in statements]
    with connection.wrap_database_errors:
        if raw.prepare_threshold is None:  # the connection's first use here (Django turned preparing off)
            raw.execute(_GENERIC_PLANS)
            raw.prepare_threshold = _ONLY_WHEN_ASKED
        _pipeline(raw, cursors, statements)
        return [cursor.fetchall() if cursor.pgresult.status == TUPLES_OK else [] for cursor in cursors]


def _pipeline(raw: psycopg.Connection, cursors: list[psycopg.Cursor], statements: Sequence[tuple[str, Params]]
              ) -> None:
    """Send, then sync; raise the first statement's error. An error seen while sending is kept until the pipeline
    has ended cleanly (raised inside it, psycopg would log the statements it skipped as errors of their own)."""
    first_error = None
    try:
        with raw.pipeline():
            try:
                for cursor, (sql, params) in zip(cursors, statements, strict=True):
                    if params is None:
                        cursor.execute(sql, prepare=False)
                    else:
                        cursor.execute(sql, params, prepare=True)
            except psycopg.Error as error:
                first_error = error
    except psycopg.Error as error:
        first_error = first_error or error
    if first_error is not None:
        raise first_error


def rollback_quietly() -> None:
    """End a transaction `send` began and could not finish; a lost connection is for the next statement to report."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("ROLLBACK")
    except DatabaseError:
        log.warning("could not roll back an abandoned pipelined transaction", exc_info=True)
