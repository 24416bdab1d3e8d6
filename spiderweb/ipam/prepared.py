"""The allocation hot path's statements, prepared on Django's PostgreSQL connection.

A statement Django sends is bound client-side and parsed, analysed and planned by the server every time. Here each
statement is prepared once per connection (psycopg keeps the names) and later sent as Bind/Execute only, in one
round trip. The hot path is two such statements, a new pod's allocation and a release, each a call of a server-side
function (migration 0010); their inner statements are planned once per session too (PL/pgSQL caches them).
Persistent connections (`SPIDERWEB_DB_CONN_MAX_AGE`) keep both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import psycopg
from django.db import connection
from psycopg.pq import ExecStatus

Params = Sequence | Mapping | None

# psycopg prepares a statement run this many times even unasked; Django's cursors never prepare (client-side
# binding), so only the statements sent here are.
_ONLY_WHEN_ASKED = 2**31 - 1
# Prepared statements run with their generic plan: planning again for every execution (PostgreSQL's custom plans)
# would cost most of what preparing saves. It affects nothing else Django sends (never prepared), and PL/pgSQL.
_GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"


def run(sql: str, params: Params) -> list[tuple]:
    """Run one statement, prepared, and return its rows (empty if it returns none).

    Outside a transaction of Django's it is a transaction of its own. The first call on a connection sets its plan
    mode (for the session). Errors raise as Django's `DatabaseError` family, as a Django cursor would raise them.
    """
    connection.ensure_connection()
    raw = connection.connection
    with connection.wrap_database_errors:
        if raw.prepare_threshold is None:  # the connection's first use here (Django turned preparing off)
            raw.execute(_GENERIC_PLANS)
            raw.prepare_threshold = _ONLY_WHEN_ASKED
        cursor = psycopg.Cursor(raw)
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall() if cursor.pgresult.status == ExecStatus.TUPLES_OK else []
