"""`make bench-scale`: allocation latency in pools that already hold many live allocations.

A /16 pool is filled to 1,000 and then 60,000 live allocations (bulk-inserted rows, exactly what the allocator
would have written), and a /64 IPv6 pool to 60,000; then SAMPLES allocations are timed through the service,
each followed by an (untimed) release. Last line: scale_p50_ratio=<p50 at 60k / p50 at 1k>.
"""

import json
import os
import uuid

from tests.bench.common import now, percentile, setup_django_on_bench_db

SAMPLES = int(os.environ.get("BENCH_SAMPLES", "300"))


def _fill(pool, count: int, first: int) -> None:
    """Insert `count` live allocations from address number `first` up, like `count` finished ADDs."""
    from django.utils import timezone

    from spiderweb.engine.ranges import address_key, int_to_ip
    from spiderweb.ipam.models import Allocation, Endpoint

    batch = 5000
    stamp = timezone.now()
    for start in range(0, count, batch):
        size = min(batch, count - start)
        endpoints = Endpoint.objects.bulk_create(
            [Endpoint(namespace="fill", name=f"{pool.name}-{first + start + i}", uid=str(uuid.uuid4()), node="node-1")
             for i in range(size)]
        )
        Allocation.objects.bulk_create(
            [
                Allocation(endpoint=e, pool=pool, ip_version=pool.ip_version, address=int_to_ip(first + start + i,
                           pool.ip_version), address_key=address_key(first + start + i, pool.ip_version),
                           prefix_length=pool.network.prefixlen, interface="eth0", pod_uid=e.uid, node="node-1",
                           bound_at=stamp)
                for i, e in enumerate(endpoints)
            ]
        )


def _measure(pool_name: str, version: int) -> list[float]:
    from spiderweb.engine.facts import PodFacts, TopController
    from spiderweb.ipam import allocation

    annotations = {"ipam.spidernet.io/ippool": json.dumps({f"ipv{version}": [pool_name]})}
    latencies = []
    for i in range(SAMPLES + 20):
        uid = str(uuid.uuid4())
        facts = PodFacts(namespace="bench", name=f"s{i}-{uid[:6]}", uid=uid, node="node-1", labels={},
                         annotations=annotations, owner=TopController("Pod", "p", uid, "v1"), namespace_labels={},
                         namespace_annotations={}, node_labels={})
        start = now()
        allocation.ippool_allocate(request=allocation.AllocateRequest(facts=facts, if_name="eth0"))
        elapsed = now() - start
        allocation.ippool_release(namespace="bench", name=facts.name, pod_uid=uid, reason="bench")
        if i >= 20:  # the first ones warm caches and walk up to the scan hint
            latencies.append(elapsed)
    return latencies


def main() -> None:
    setup_django_on_bench_db()
    from spiderweb.engine.ranges import ip_to_int
    from spiderweb.ipam import services
    from spiderweb.ipam.models import Allocation
    from spiderweb.tenancy.models import Tenant

    tenant = Tenant.objects.create(name="bench")
    v4 = services.ippool_create(tenant=tenant, name="v4", spec={"subnet": "10.40.0.0/16",
                                                                 "ips": ["10.40.0.1-10.40.255.254"]})
    v6 = services.ippool_create(tenant=tenant, name="v6", spec={"subnet": "fd00:40::/64",
                                                                 "ips": ["fd00:40::1-fd00:40::ffff:ffff:ffff:ffff"]})
    base4 = ip_to_int("10.40.0.1")[0]
    base6 = ip_to_int("fd00:40::1")[0]
    print(f"bench-scale: {SAMPLES} timed allocations per case (each released again, untimed)")
    print(f"{'case':<28} {'live':>7} {'p50 ms':>8} {'p99 ms':>8}")
    results = {}
    _fill(v4, 1000, base4)
    for label, pool, version, live in (("IPv4 /16", v4, 4, 1000),):
        lat = _measure(pool.name, version)
        results[live] = percentile(lat, 0.5)
        print(f"{label:<28} {live:>7} {percentile(lat, 0.5) * 1e3:>8.2f} {percentile(lat, 0.99) * 1e3:>8.2f}")
    _fill(v4, 59000, base4 + 1000 + SAMPLES + 40)
    lat = _measure("v4", 4)
    results[60000] = percentile(lat, 0.5)
    print(f"{'IPv4 /16':<28} {Allocation.objects.filter(pool=v4).count():>7} "
          f"{percentile(lat, 0.5) * 1e3:>8.2f} {percentile(lat, 0.99) * 1e3:>8.2f}")
    _fill(v6, 60000, base6)
    lat = _measure("v6", 6)
    print(f"{'IPv6 /64':<28} {Allocation.objects.filter(pool=v6).count():>7} "
          f"{percentile(lat, 0.5) * 1e3:>8.2f} {percentile(lat, 0.99) * 1e3:>8.2f}")
    print(f"scale_p50_ratio={results[60000] / results[1000]:.2f}")


if __name__ == "__main__":
    main()
