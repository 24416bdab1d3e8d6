"""`make bench-alloc`: allocate+release throughput through the service vs bare PostgreSQL INSERTs.

Each operation (one allocation or one release) is one transaction through `spiderweb.ipam.allocation`; the
baseline is one single-row INSERT transaction per operation on the same server, at the same concurrency. All
allocation workers share ONE pool (the honest contention case). It runs at 1, 8 and 32 processes
(BENCH_CONCURRENCY overrides) because allocation must scale with concurrency, not only be fast alone. Then
BENCH_EXTRA_POOLS (default 1000) more pools are created through the service and the one-pool figures are taken again
at 1 and 8 processes: an allocation must not slow down with the number of pools in the cluster (an auto pool per
application adds up). Last line: alloc_vs_bare_postgres=<the MINIMUM ratio over the concurrencies> (the worst
case is the figure).

Both measure the steady state: each worker connects and does one untimed operation (the service's first one on a
connection loads its catalog, prepares its statements and has the server compile its functions, ~45 ms) before
the common start time; operations are counted from then until the deadline.

Where the ratio comes from is printed with it: the CPU time per operation of the client processes and of their
PostgreSQL backends (read from /proc, so only when the server runs on this machine), and the same two calls sent
by pgbench without the Python client ("server alone"), against pgbench's bare INSERTs at the same concurrencies:
the ratio the server's work alone allows, whatever the client does.
"""

import base64
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

from tests.bench.common import now, run_processes, setup_django_on_bench_db

DURATION = float(os.environ.get("BENCH_SECONDS", "6"))
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,8,32").split(",")]
EXTRA_POOLS = int(os.environ.get("BENCH_EXTRA_POOLS", "1000"))


WARM_UP = 3.0  # seconds from the fork to the common start time: time for 32 workers to warm up on 2 cores


def _pair(index: int, pool: str = "bench") -> tuple[str, str]:
    """One pod's allocation and release through the service, as the portal does them; the pod's name and UID."""
    from spiderweb.engine.facts import PodFacts, TopController
    from spiderweb.ipam import allocation

    uid = str(uuid.uuid4())
    facts = PodFacts(namespace="bench", name=f"p{index}-{uid[:8]}", uid=uid, node="node-1", labels={},
                     annotations=_pool_annotation(pool),
                     owner=TopController("Pod", "p", uid, "v1"), namespace_labels={}, namespace_annotations={},
                     node_labels={})
    allocation.ippool_allocate(request=allocation.AllocateRequest(facts=facts, if_name="eth0"))
    allocation.ippool_release(namespace="bench", name=facts.name, pod_uid=uid, reason="bench")
    return facts.name, uid


@functools.cache
def _pool_annotation(pool: str) -> dict:
    """The pod annotation naming `pool`, encoded once: the timed loop measures the service, not the bench."""
    return {"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pool]})}


def _alloc_worker(index: int, start: float, deadline: float, queue) -> None:
    from django.db import connection, connections

    connections.close_all()
    _pair(index)  # the warm-up, untimed
    backend = connection.connection.info.backend_pid
    _sleep_until(start)
    before = _Cpu.now(backend)
    ops = 0
    while now() < deadline:
        _pair(index)
        ops += 2
    queue.put((ops, _Cpu.now(backend) - before))
    connections.close_all()


def _bare_worker(index: int, start: float, deadline: float, queue) -> None:
    import psycopg

    def insert() -> None:
        conn.execute("INSERT INTO bench_bare (pod, address) VALUES (%s, %s)", (str(uuid.uuid4()), "10.0.0.1"))

    ops = 0
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        insert()  # the warm-up, untimed
        _sleep_until(start)
        before = _Cpu.now(conn.info.backend_pid)
        while now() < deadline:
            insert()
            ops += 1
        queue.put((ops, _Cpu.now(conn.info.backend_pid) - before))


def _sleep_until(start: float) -> None:
    time.sleep(max(0.0, start - now()))


class _Cpu(NamedTuple):
    """CPU seconds (user + system) of this process and of its PostgreSQL backend (None: not on this machine)."""

    client: float
    server: float | None

    @classmethod
    def now(cls, backend_pid: int) -> "_Cpu":
        times = os.times()
        server = None
        try:  # fields 14 and 15 of /proc/PID/stat: utime and stime, in clock ticks
            comm, rest = Path(f"/proc/{backend_pid}/stat").read_text().rsplit(")", 1)
            fields = rest.split()
            if comm.endswith("(postgres"):  # not a local process that happens to have a remote backend's PID
                server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
        return cls(times.user + times.system, server)

    def __sub__(self, other: "_Cpu") -> "_Cpu":
        server = None if self.server is None or other.server is None else self.server - other.server
        return _Cpu(self.client - other.client, server)


class _Run(NamedTuple):
    rate: float  # operations per second
    client_ms: float  # CPU per operation in the client processes
    server_ms: float | None  # ... and in their PostgreSQL backends

    def cpu(self) -> str:
        server = "?" if self.server_ms is None else f"{self.server_ms:.2f}"
        return f"{self.client_ms:.2f} + {server}"


def _rate(worker, procs: int) -> _Run:
    """Operations per second of `procs` workers over DURATION seconds, after their warm-up, and their CPU."""
    start = now() + WARM_UP
    results = run_processes(worker, procs, start, start + DURATION)
    ops = sum(count for count, _ in results)
    per_op = 1000 / max(ops, 1)
    servers = [cpu.server for _, cpu in results]
    return _Run(ops / DURATION, sum(cpu.client for _, cpu in results) * per_op,
                None if None in servers else sum(servers) * per_op)


def main() -> None:
    setup_django_on_bench_db()
    import psycopg
    from django.db import connection

    from spiderweb.ipam import services
    from spiderweb.tenancy.models import Tenant

    with connection.cursor() as cur:
        cur.execute("CREATE TABLE bench_bare (id bigserial PRIMARY KEY, pod text NOT NULL, address inet NOT NULL)")
    tenant = Tenant.objects.create(name="bench")
    spec = {"subnet": "10.30.0.0/16", "ips": ["10.30.0.1-10.30.255.254"]}
    services.ippool_create(tenant=tenant, name="bench", spec=spec)
    print(f"bench-alloc: {DURATION:.0f} s per run, one shared /16 pool, PostgreSQL {connection.pg_version}")
    print(f"{'procs':>5} {'alloc+release ops/s':>20} {'bare INSERT tx/s':>17} {'ratio':>6}   "
          "CPU ms per op, client + server: alloc | bare")
    worst = float("inf")
    alloc_rates: dict[int, float] = {}
    for procs in CONCURRENCY:
        alloc = _rate(_alloc_worker, procs)
        bare = _rate(_bare_worker, procs)
        alloc_rates[procs] = alloc.rate
        ratio = alloc.rate / bare.rate
        worst = min(worst, ratio)
        print(f"{procs:>5} {alloc.rate:>20.0f} {bare.rate:>17.0f} {ratio:>6.2f}   {alloc.cpu()} | {bare.cpu()}")
        sys.stdout.flush()
    _server_alone(tenant)
    _with_more_pools(tenant, {procs: rate for procs, rate in alloc_rates.items() if procs in (1, 8)})
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        live = conn.execute("SELECT count(*) FROM ipam_allocation").fetchone()[0]
    print(f"live allocations left after the runs: {live} (must be 0)")
    print(f"alloc_vs_bare_postgres={worst:.2f}")


def _server_alone(tenant) -> None:
    """The two calls one pair sends, replayed by pgbench (prepared, a new pod name and UID each time) against
    pgbench's bare INSERTs: the ratio the server's share of the work allows with a client that costs nothing. On a
    pool of its own, so that the runs after it find as many never-used addresses as before."""
    from spiderweb.ipam import services

    pgbench = shutil.which("pgbench")
    if pgbench is None:
        print("server alone: pgbench not found, skipped")
        return
    services.ippool_create(tenant=tenant, name="bench-server", spec={"subnet": "10.31.0.0/16",
                                                                     "ips": ["10.31.0.1-10.31.255.254"]})
    calls = _recorded_pair("bench-server")
    print("server alone (pgbench sends the same two calls; the Python client's work removed):")
    with tempfile.TemporaryDirectory() as scratch:
        pair_script = Path(scratch, "pair.sql")
        pair_script.write_text(_PGBENCH_POD + "".join(f"{_pgbench_call(sql, params)};\n" for sql, params in calls))
        bare_script = Path(scratch, "bare.sql")
        bare_script.write_text(f"{_PGBENCH_POD}INSERT INTO bench_bare (pod, address) "
                               f"VALUES ({_MARKS['bench-pod-name']}, '10.0.0.1');\n")
        for procs in CONCURRENCY:
            released_before = _released_in("bench-server")
            try:
                pairs, pair_tps = _pgbench(pgbench, pair_script, procs)
                _, bare_rate = _pgbench(pgbench, bare_script, procs)
            except subprocess.CalledProcessError as exc:
                print(f"server alone: pgbench failed: {exc.stderr.strip()[-500:]}")
                return
            alloc_rate = 2 * pair_tps  # a pgbench transaction is both calls
            # Each pair must have taken and freed an address (a call refused off the common path does neither).
            done = _released_in("bench-server") - released_before
            print(f"{procs:>5} {alloc_rate:>20.0f} {bare_rate:>17.0f} {alloc_rate / bare_rate:>6.2f}   "
                  f"({done} of {pairs} pairs released an address)")
            sys.stdout.flush()


def _released_in(pool: str) -> int:
    from spiderweb.ipam.models import AddressHistory

    return AddressHistory.objects.filter(pool_name=pool).count()


_PGBENCH_POD = "\\set n random(1, 2000000000)\n"  # the pod of a pgbench transaction: p<n>, UID u<n>
_MARKS = {"bench-pod-name": "'p' || CAST(:n AS text)", "bench-pod-uid": "'u' || CAST(:n AS text)"}


def _recorded_pair(pool: str) -> list[tuple[str, list]]:
    """The statements one pair sends through `prepared.run`, with their parameters, the pod's name and UID replaced
    by the marks that `_pgbench_call` turns into pgbench's."""
    from django.db import connections

    from spiderweb.ipam import prepared

    calls: list[tuple[str, list]] = []
    run = prepared.run

    def record(sql, params):
        calls.append((sql, list(params)))
        return run(sql, params)

    prepared.run = record
    try:
        _pair(0, pool)
        del calls[:]  # the first pair learns the reservations and sends its allocation twice
        name, uid = _pair(0, pool)
    finally:
        prepared.run = run
        connections.close_all()
    marked = {name: "bench-pod-name", uid: "bench-pod-uid"}

    def mark(value):
        if isinstance(value, str):
            for real, placeholder in marked.items():
                value = value.replace(real, placeholder)
        return value

    return [(sql, [mark(p) for p in params]) for sql, params in calls]


def _pgbench_call(sql: str, params: list) -> str:
    """`sql` with its parameters as SQL expressions, the marks replaced server-side by the pod of pgbench's :n.

    pgbench takes every colon followed by a name for a variable, inside quotes too, so text with colons in it
    (the JSON rows' timestamps) travels base64-encoded and is decoded by the server (a microsecond or two)."""
    def literal(value) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, int):
            return str(value)
        if ":" in value:
            text = f"convert_from(decode('{base64.b64encode(value.encode()).decode()}', 'base64'), 'UTF8')"
        else:
            text = "'" + value.replace("'", "''") + "'"
        for placeholder, pgbench in _MARKS.items():
            if placeholder in value:
                text = f"replace({text}, '{placeholder}', {pgbench})"
        return text

    return sql.replace("%s", "{}").format(*(literal(p) for p in params))


def _pgbench(pgbench: str, script: Path, clients: int) -> tuple[int, float]:
    """pgbench's transactions and transactions per second, `clients` at a time for DURATION seconds."""
    out = subprocess.run(
        [pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 4)), "-T", f"{DURATION:.0f}",
         "-f", str(script), os.environ["DATABASE_URL"]],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PGOPTIONS": "-c plan_cache_mode=force_generic_plan"},  # as `prepared` sets it
    ).stdout
    lines = out.splitlines()
    processed = next(line for line in lines if line.startswith("number of transactions actually processed:"))
    tps = next(line for line in lines if line.startswith("tps = "))
    return int(processed.split(":")[1].split("/")[0]), float(tps.split()[2])


def _with_more_pools(tenant, one_pool_rates: dict[int, float]) -> None:
    """The same workload on the same pool once EXTRA_POOLS other pools exist (created through the service)."""
    from django.db import connection

    from spiderweb.ipam import services

    if not EXTRA_POOLS or not one_pool_rates:
        return
    started = now()
    for i in range(EXTRA_POOLS):
        net = f"10.{40 + i // 256}.{i % 256}"
        services.ippool_create(tenant=tenant, name=f"other-{i}", spec={"subnet": f"{net}.0/24",
                                                                       "ips": [f"{net}.10-{net}.20"]})
    with connection.cursor() as cur:
        cur.execute("ANALYZE")  # what autovacuum does soon after that many new rows
    print(f"{EXTRA_POOLS} more pools created through the service in {now() - started:.0f} s; the same runs again:")
    for procs, before in sorted(one_pool_rates.items()):
        rate = _rate(_alloc_worker, procs).rate
        print(f"{procs:>5} {rate:>20.0f}   ({rate / before:.2f} of the rate with one pool)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
