"""Multi-process races on one small pool: distinct addresses, then only clean "exhausted" errors."""

import json
import multiprocessing
import uuid

import pytest
from django.db import connections

from spiderweb.engine.errors import Exhausted
from spiderweb.ipam.models import Allocation
from tests.ipam import factories as f

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
WORKERS = 8


def _allocate_until_exhausted(worker: int, annotations: dict, queue) -> None:
    """Child process: allocate one pod after another until the pool says it is exhausted."""
    connections.close_all()  # never share the parent's socket
    got, errors = [], []
    try:
        while True:
            pod = f.facts(name=f"w{worker}-{uuid.uuid4().hex[:8]}", annotations=annotations)
            try:
                result = f.allocate(pod)
            except Exhausted as exc:
                errors.append(exc.code)
                if len(errors) >= 3:
                    break
                continue
            got.append(tuple(ip["address"] for ip in result["ips"]))
    except Exception as exc:  # reported to the parent, which fails the test with it
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        connections.close_all()
    queue.put((got, errors))


def _race(annotations: dict) -> tuple[list, list]:
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_allocate_until_exhausted, args=(i, annotations, queue)) for i in range(WORKERS)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=240) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    got = [a for r in results for a in r[0]]
    errors = [e for r in results for e in r[1]]
    return got, errors


def _assert_full_and_distinct(got, errors, size):
    assert set(errors) == {"ip_exhausted"}, errors
    assert len(got) == size
    flat = [a for t in got for a in t]
    assert len(set(flat)) == len(flat)


def test_512_ipv4_addresses_eight_processes():
    f.pool("race4", "10.20.0.0/16", ["10.20.0.1-10.20.2.0"])  # exactly 512
    got, errors = _race({"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["race4"]})})
    _assert_full_and_distinct(got, errors, 512)
    assert Allocation.objects.filter(pool__name="race4").count() == 512


def test_512_ipv6_addresses_eight_processes():
    f.pool("race6", "fd00:20::/64", ["fd00:20::1-fd00:20::200"])
    got, errors = _race({"ipam.spidernet.io/ippool": json.dumps({"ipv6": ["race6"]})})
    _assert_full_and_distinct(got, errors, 512)


def test_512_dual_stack_pairs_eight_processes():
    f.pool("pair4", "10.21.0.0/16", ["10.21.0.1-10.21.2.0"])
    f.pool("pair6", "fd00:21::/64", ["fd00:21::1-fd00:21::200"])
    got, errors = _race({"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["pair4"], "ipv6": ["pair6"]})})
    _assert_full_and_distinct(got, errors, 512)
    assert all(len(pair) == 2 for pair in got)
    assert Allocation.objects.filter(ip_version=4).count() == Allocation.objects.filter(ip_version=6).count() == 512
