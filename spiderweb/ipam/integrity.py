"""Invariant checks the database constraints cannot express (ranges live in JSON)."""

import logging

from spiderweb.ipam.models import Allocation, IPPool
from spiderweb.ipam.validation import reserved_ranges

log = logging.getLogger(__name__)


def allocation_integrity_report() -> dict:
    """Count allocations outside their pool's total addresses or on reserved addresses, and log each one.

    These can only appear after an operator edited data around the service layer; they are reported, not
    released, because a live pod holds them.
    """
    outside, reserved = [], []
    blocked = {4: reserved_ranges(4), 6: reserved_ranges(6)}
    for pool in IPPool.objects.all():
        for address in Allocation.objects.filter(pool=pool).values_list("address", flat=True).iterator():
            if address not in pool.total_ranges:
                outside.append(f"{pool.name}:{address}")
            elif address in blocked[pool.ip_version]:
                reserved.append(f"{pool.name}:{address}")
    for item in outside:
        log.warning("allocation %s is outside its pool's addresses", item)
    for item in reserved:
        log.warning("allocation %s sits on a reserved address", item)
    return {"outside": outside, "reserved": reserved}
