"""Bulk-inserted allocations for page tests and the portal benchmark (the allocator would take minutes for 60,000).

The rows are what the allocator writes (an endpoint per pod, an allocation per address, keys in the engine's
format); the unique constraints still check them.
"""

import uuid

from spiderweb.engine.ranges import address_key, int_to_ip
from spiderweb.ipam.models import Allocation, Endpoint, IPPool


def bulk_allocate(pool: IPPool, count: int, *, namespace: str = "bulk", batch_size: int = 5000) -> list[str]:
    """Give the first `count` addresses of `pool` to `count` new pods; returns the addresses, in order."""
    version = pool.ip_version
    numbers = []
    for n in pool.total_ranges.iter_addresses():
        if len(numbers) == count:
            break
        numbers.append(n)
    if len(numbers) < count:
        raise ValueError(f"{pool.name} has only {len(numbers)} addresses, {count} asked")
    endpoints = Endpoint.objects.bulk_create(
        [Endpoint(namespace=namespace, name=f"{pool.name}-pod-{i}", uid=str(uuid.uuid4()), node="node-1")
         for i in range(count)], batch_size=batch_size)
    prefix = pool.network.prefixlen
    Allocation.objects.bulk_create(
        [Allocation(endpoint=endpoint, pool=pool, ip_version=version, address=int_to_ip(n, version),
                    address_key=address_key(n, version), prefix_length=prefix, interface="eth0",
                    pod_uid=endpoint.uid, node="node-1")
         for endpoint, n in zip(endpoints, numbers, strict=True)], batch_size=batch_size)
    return [int_to_ip(n, version) for n in numbers]
