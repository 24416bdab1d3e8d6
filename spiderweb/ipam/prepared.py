"""The allocation hot path's statements, prepared on Django's PostgreSQL connection and run through libpq directly.

A statement Django sends is bound client-side and parsed, analysed and planned by the server every time. Here each
statement is prepared once per connection and later sent as Bind/Execute only, in one round trip. The hot path is
two such statements, a new pod's allocation and a release, each a call of a server-side function (migration 0010);
their inner statements are planned once per session too (PL/pgSQL caches them). Persistent connections
(`SPIDERWEB_DB_CONN_MAX_AGE`) keep both.

They go through psycopg's libpq wrapper (`psycopg.pq`), not a psycopg cursor: the cursor's query conversion,
parameter adaptation and result loading cost about 70 µs of CPU per call here, more than the rest of the client's
work for a pod. The price is a narrow interface: parameters are `str`, `int` or None, and values come back as
PostgreSQL's text output. libpq waits for the answer with the GIL released, as psycopg's cursor does.
"""

from __future__ import annotations

import itertools
import re
import weakref
from collections.abc import Sequence
from functools import cache

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg.pq import ExecStatus

# Prepared statements run with their generic plan: planning again for every execution (PostgreSQL's custom plans)
# would cost most of what preparing saves. It affects nothing else Django sends (never prepared), and PL/pgSQL.
_GENERIC_PLANS = b"SET plan_cache_mode = force_generic_plan"

# Per psycopg connection, the statements prepared on it (by name). A new connection (Django reconnected) starts
# empty; the server forgets a connection's statements with it.
_prepared_on: weakref.WeakKeyDictionary[psycopg.Connection, set[bytes]] = weakref.WeakKeyDictionary()


def run(sql: str, params: Sequence[str | int | None]) -> list[tuple[str | None, ...]]:
    """Run one statement (`%s` placeholders), prepared, and return its rows as text (empty if it returns none).

    Outside a transaction of Django's it is a transaction of its own. The first call on a connection sets its plan
    mode (for the session). Errors raise as Django's `DatabaseError` family, as a Django cursor would raise them.
    """
    conn = connections[DEFAULT_DB_ALIAS]  # once: each attribute of Django's `connection` proxy is a lookup
    conn.ensure_connection()
    raw = conn.connection
    name, native = _native(sql)
    values = [None if p is None else (p if isinstance(p, str) else str(_integer(p))).encode() for p in params]
    with conn.wrap_database_errors:
        done = _prepared_on.get(raw)
        if done is None:  # the connection's first use here
            _check(raw, raw.pgconn.exec_(_GENERIC_PLANS))
            done = _prepared_on[raw] = set()
        if name not in done:
            _check(raw, raw.pgconn.prepare(name, native))
            done.add(name)
        result = _check(raw, raw.pgconn.exec_prepared(name, values))
        if result.status != ExecStatus.TUPLES_OK:
            return []
        encoding = raw.info.encoding
        return [tuple(None if (v := result.get_value(row, col)) is None else v.decode(encoding)
                      for col in range(result.nfields)) for row in range(result.ntuples)]


_names = itertools.count(1)


@cache
def _native(sql: str) -> tuple[bytes, bytes]:
    """The statement's name (one per text, for the process's life) and its text with PostgreSQL's numbered
    placeholders ($1, $2, ...)."""
    numbers = itertools.count(1)
    native = re.sub(r"%s", lambda _: f"${next(numbers)}", sql)
    return f"spiderweb_{next(_names)}".encode(), native.encode()


def _integer(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"prepared.run takes str, int or None parameters, not {type(value).__name__}")
    return value


def _check(raw: psycopg.Connection, result):
    """The result, or its error raised as psycopg raises it (Django's wrapper then makes it Django's)."""
    if result.status in (ExecStatus.FATAL_ERROR, ExecStatus.NONFATAL_ERROR, ExecStatus.BAD_RESPONSE):
        raise psycopg.errors.error_from_result(result, encoding=raw.info.encoding)
    return result
