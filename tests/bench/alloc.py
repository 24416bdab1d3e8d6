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
"""

import json
import os
import sys
import time
import uuid

from tests.bench.common import now, run_processes, setup_django_on_bench_db

DURATION = float(os.environ.get("BENCH_SECONDS", "6"))
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,8,32").split(",")]
EXTRA_POOLS = int(os.environ.get("BENCH_EXTRA_POOLS", "1000"))


WARM_UP = 3.0  # seconds from the fork to the common start time: time for 32 workers to warm up on 2 cores


def _alloc_worker(index: int, start: float, deadline: float, queue) -> None:
    from django.db import connections

    from spiderweb.engine.facts import PodFacts, TopController
    from spiderweb.ipam import allocation

    connections.close_all()
    annotations = {"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["bench"]})}

    def pair() -> None:
        uid = str(uuid.uuid4())
        facts = PodFacts(namespace="bench", name=f"p{index}-{uid[:8]}", uid=uid, node="node-1", labels={},
                         annotations=annotations, owner=TopController("Pod", "p", uid, "v1"), namespace_labels={},
                         namespace_annotations={}, node_labels={})
        allocation.ippool_allocate(request=allocation.AllocateRequest(facts=facts, if_name="eth0"))
        allocation.ippool_release(namespace="bench", name=facts.name, pod_uid=uid, reason="bench")

    pair()  # the warm-up, untimed
    _sleep_until(start)
    ops = 0
    while now() < deadline:
        pair()
        ops += 2
    connections.close_all()
    queue.put(ops)


def _bare_worker(index: int, start: float, deadline: float, queue) -> None:
    import psycopg

    def insert() -> None:
        conn.execute("INSERT INTO bench_bare (pod, address) VALUES (%s, %s)", (str(uuid.uuid4()), "10.0.0.1"))

    ops = 0
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        insert()  # the warm-up, untimed
        _sleep_until(start)
        while now() < deadline:
            insert()
            ops += 1
    queue.put(ops)


def _sleep_until(start: float) -> None:
    time.sleep(max(0.0, start - now()))


def _rate(worker, procs: int) -> float:
    """Operations per second of `procs` workers over DURATION seconds, after their warm-up."""
    start = now() + WARM_UP
    return sum(run_processes(worker, procs, start, start + DURATION)) / DURATION


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
    print(f"{'procs':>5} {'alloc+release ops/s':>20} {'bare INSERT tx/s':>17} {'ratio':>6}")
    worst = float("inf")
    alloc_rates: dict[int, float] = {}
    for procs in CONCURRENCY:
        alloc_rate = alloc_rates[procs] = _rate(_alloc_worker, procs)
        bare_rate = _rate(_bare_worker, procs)
        ratio = alloc_rate / bare_rate
        worst = min(worst, ratio)
        print(f"{procs:>5} {alloc_rate:>20.0f} {bare_rate:>17.0f} {ratio:>6.2f}")
        sys.stdout.flush()
    _with_more_pools(tenant, {procs: rate for procs, rate in alloc_rates.items() if procs in (1, 8)})
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        live = conn.execute("SELECT count(*) FROM ipam_allocation").fetchone()[0]
    print(f"live allocations left after the runs: {live} (must be 0)")
    print(f"alloc_vs_bare_postgres={worst:.2f}")


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
        rate = _rate(_alloc_worker, procs)
        print(f"{procs:>5} {rate:>20.0f}   ({rate / before:.2f} of the rate with one pool)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
