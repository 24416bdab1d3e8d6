"""Races a concurrent hammer on the internal API found (issue 7 §4), each replayed at an exact interleaving.

"The other writer" runs in a thread with its own database connection and is stopped at an exact point: inside
the allocation transaction (after it inserted its rows, before it commits) or waiting on a lock the test holds.
The test then waits until PostgreSQL reports the racing backend as waiting on a lock, so the order of events is
the same on every run and no test depends on sleeps.
"""

import json
import threading
import time

import pytest
from django.db import connection, connections
from django.urls import reverse
from rest_framework.test import APIClient

from spiderweb.engine.errors import Exhausted
from spiderweb.ipam import allocation, services
from spiderweb.ipam.models import Allocation, Endpoint, ReleasedAddress
from tests.ipam import factories as f

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks, lock modes and deferred foreign-key checks are PostgreSQL's; SQLite has one writer",
    ),
]

ALLOCATE = reverse("internal-allocate")
RELEASE = reverse("internal-release")
WAIT = 20.0  # seconds; only reached when something is broken


class Writer(threading.Thread):
    """Runs `work` on a database connection of its own and keeps its outcome (a result or an exception)."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work = work
        self.pid: int | None = None
        self.connected = threading.Event()
        self.result = None
        self.error: BaseException | None = None

    def run(self):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            self.connected.set()
            self.result = self.work()
        except BaseException as exc:  # handed to the test, which asserts on it
            self.error = exc
        finally:
            self.connected.set()
            connections.close_all()

    def begin(self) -> "Writer":
        self.start()
        assert self.connected.wait(WAIT), "the writer thread never connected"
        return self

    def outcome(self):
        self.join(WAIT)
        assert not self.is_alive(), "the writer is still running: a lock was never released"
        return self.error or self.result


def wait_until_waiting_on_a_lock(writer: Writer) -> bool:
    """Block until `writer`'s backend waits on a lock (True) or the writer has finished (False)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if not writer.is_alive():
            return False
        with connection.cursor() as cursor:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [writer.pid])
            row = cursor.fetchone()
        if row and row[0] == "Lock":
            return True
        time.sleep(0.01)
    raise AssertionError(f"backend {writer.pid} neither waited on a lock nor finished")


def usual_transaction_only(monkeypatch):
    """Allocations take the usual transaction, not the one-call path (one statement on the server): only the usual
    one has a point in Python where its rows are inserted and not committed yet."""
    monkeypatch.setattr(allocation, "_one_call_possible", lambda request: False)


class StallInsideAllocation:
    """Stops allocations inside their transaction until `go()`, right after `allocation.<seam>` returned.

    The seam, `_lock_and_take`, has inserted the rows (the usual transaction only: see `usual_transaction_only`).
    `first_only`: later allocations run through. `fail`: the stalled allocation raises
    after `go()`, so that its transaction rolls back."""

    def __init__(self, monkeypatch, *, seam="_lock_and_take", first_only=False, fail=False):
        self.reached = threading.Event()
        self._go = threading.Event()
        self._first = threading.Lock()
        self.calls: list[dict] = []  # the keyword arguments of each call of the seam
        if seam == "_lock_and_take":
            usual_transaction_only(monkeypatch)
        original = getattr(allocation, seam)

        def stalled(*args, **kwargs):
            self.calls.append(kwargs)
            result = original(*args, **kwargs)
            if not first_only or self._first.acquire(blocking=False):  # never released: only the first stops
                self.reached.set()
                self._go.wait(WAIT)
                if fail:
                    raise RuntimeError("the stalled allocation fails after taking its address")
            return result

        monkeypatch.setattr(allocation, seam, stalled)

    def wait_reached(self):
        assert self.reached.wait(WAIT), "the allocation never reached its stall point"

    def go(self):
        self._go.set()


class OtherTransaction:
    """A transaction on a connection of the test's own, to hold a row lock while others run."""

    def __init__(self):
        self.db = connections.create_connection("default")
        self.db.set_autocommit(False)

    def execute(self, sql: str, params=()):
        with self.db.cursor() as cursor:
            cursor.execute(sql, params)

    def end(self):
        self.db.rollback()
        self.db.close()


def node_client(node_name="node-1") -> APIClient:
    _, token = services.node_credential_issue(node_name=node_name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def pool_annotations(**families) -> dict:
    return {"ipam.spidernet.io/ippool": json.dumps(families)}


def add_body(facts, if_name="eth0", container_id="sandbox-1", default_ipv4_pool=None):
    body = {"facts": facts.to_dict(), "ifName": if_name, "containerID": container_id}
    if default_ipv4_pool:
        body["cni"] = {"default_ipv4_ippool": [default_ipv4_pool]}  # the NIC's conflist names its pool
    return body


def del_body(facts, if_name="eth0", container_id="sandbox-1"):
    """The agent's release for a DEL of a pod Kubernetes says is deleted (the only DELs it forwards there)."""
    return {"podNamespace": facts.namespace, "podName": facts.name, "podUID": facts.uid, "ifName": if_name,
            "containerID": container_id, "podDead": True}


# ------------------------------------------------------------------------------------------- fault 1: DEL first


def test_a_del_arriving_while_the_first_add_is_in_flight_waits_for_it_and_releases_its_address(monkeypatch):
    # Given a pod whose first ADD has taken its address but not committed yet
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    client = node_client()
    facts = f.facts("web-0", annotations=pool_annotations(ipv4=["p1"]))
    stall = StallInsideAllocation(monkeypatch)
    add = Writer(lambda: client.post(ALLOCATE, add_body(facts), format="json")).begin()
    stall.wait_reached()
    # When the runtime's DEL for the pod arrives meanwhile
    delete = Writer(lambda: client.post(RELEASE, del_body(facts), format="json")).begin()
    waited = wait_until_waiting_on_a_lock(delete)
    stall.go()
    # Then the ADD completes, and the DEL waited for it and released what it took
    added, deleted = add.outcome(), delete.outcome()
    assert added.status_code == 200, added.content
    assert deleted.status_code == 200, deleted.content
    assert deleted.json() == {"released": ["10.1.0.10"]}
    assert waited
    # and nothing is left held by the deleted pod
    assert not Allocation.objects.exists()
    assert not Endpoint.objects.exists()


def test_a_del_arriving_while_a_new_pods_one_call_add_holds_its_pod_lock_waits_for_it_and_releases_its_address(
        monkeypatch):
    # Given a pod whose first ADD (one call on the server) holds its pod lock and waits for its pool, which an edit
    # has locked
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    client = node_client()
    facts = f.facts("web-0", annotations=pool_annotations(ipv4=["p1"]))
    calls = []
    real_run = allocation.prepared.run
    monkeypatch.setattr(allocation.prepared, "run", lambda sql, params: calls.append(sql) or real_run(sql, params))
    edit = OtherTransaction()
    edit.execute("SELECT 1 FROM ipam_ippool WHERE name = 'p1' FOR UPDATE")
    try:
        add = Writer(lambda: client.post(ALLOCATE, add_body(facts), format="json")).begin()
        assert wait_until_waiting_on_a_lock(add)
        assert calls and calls[-1] == allocation._ALLOCATE_SQL  # the one-call path, not the usual one
        # When the runtime's DEL for the pod arrives meanwhile
        delete = Writer(lambda: client.post(RELEASE, del_body(facts), format="json")).begin()
        waited = wait_until_waiting_on_a_lock(delete)
    finally:
        edit.end()
    # Then the ADD completes, and the DEL waited for it and released what it took
    added, deleted = add.outcome(), delete.outcome()
    assert added.status_code == 200, added.content
    assert deleted.json() == {"released": ["10.1.0.10"]} and waited
    assert not Allocation.objects.exists() and not Endpoint.objects.exists()


def test_an_add_that_arrives_after_its_own_del_is_refused_and_takes_nothing():
    # Given a DEL that overtook its pod's first ADD on the way to the portal (it found nothing to release)
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    client = node_client()
    facts = f.facts("web-0", annotations=pool_annotations(ipv4=["p1"]))
    deleted = client.post(RELEASE, del_body(facts), format="json")
    assert deleted.json() == {"released": []}
    # When the overtaken ADD of that sandbox arrives
    added = client.post(ALLOCATE, add_body(facts), format="json")
    # Then it is refused for good (409, not a retryable status) and holds nothing
    assert added.status_code == 409, added.content
    assert added.json()["code"] == "conflict"
    assert "sandbox-1" in added.json()["message"] and "already deleted" in added.json()["message"]
    assert not Allocation.objects.exists()
    # while a new sandbox of the same pod (kubelet re-creating it) is served
    again = client.post(ALLOCATE, add_body(facts, container_id="sandbox-2"), format="json")
    assert again.status_code == 200, again.content


def test_a_del_the_agent_cannot_call_final_leaves_no_tombstone_so_the_container_may_be_added_again():
    # Given a standalone agent's DEL: it cannot know whether the runtime will ADD the same container again
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    client = node_client()
    facts = f.facts("web-0", annotations=pool_annotations(ipv4=["p1"]))
    assert client.post(ALLOCATE, add_body(facts), format="json").status_code == 200
    deleted = client.post(RELEASE, {**del_body(facts), "podDead": False}, format="json")
    assert deleted.json() == {"released": ["10.1.0.10"]}
    # When the runtime ADDs the container again (CNI allows ADD after DEL of the same container)
    again = client.post(ALLOCATE, add_body(facts), format="json")
    # Then it is served
    assert again.status_code == 200, again.content


# ------------------------------------------------------------------------------------- fault 2: lock ordering


@pytest.mark.parametrize("first_pool_version", [6, 4], ids=["ipv6-pool-locked-first", "ipv4-pool-locked-first"])
def test_a_dual_stack_add_and_a_del_in_the_same_pools_do_not_deadlock(first_pool_version):
    """The allocator locks pool rows in primary-key order; a DEL's deferred foreign-key checks take FOR KEY SHARE
    on the same rows at commit in the order of its rows. Whichever order that is, one of the two cases is the
    reverse of the allocator's; a lock mode that does not conflict with FOR KEY SHARE cannot deadlock in either.
    """
    # Given dual-stack pools (the one created first is locked first) and a pod holding an address in each
    specs = {
        4: ("dual4", "10.4.0.0/24", ["10.4.0.10-10.4.0.19"]),
        6: ("dual6", "fd00:6::/64", ["fd00:6::10-fd00:6::19"]),
    }
    second_pool_version = 10 - first_pool_version
    f.pool(*specs[first_pool_version])
    second = f.pool(*specs[second_pool_version])
    dual = pool_annotations(ipv4=["dual4"], ipv6=["dual6"])
    gone = f.facts("gone-0", annotations=dual)
    f.allocate(gone)
    # and another release in the second pool checking its foreign key at commit (FOR KEY SHARE on the pool row)
    other = OtherTransaction()
    other.execute("SELECT id FROM ipam_ippool WHERE id = %s FOR KEY SHARE", [second.pk])
    try:
        # When a dual-stack ADD locks the pools
        add = Writer(lambda: f.allocate(f.facts("new-0", annotations=dual))).begin()
        wait_until_waiting_on_a_lock(add)
        # and the DEL of the first pod commits meanwhile
        delete = Writer(lambda: f.release(gone)).begin()
        wait_until_waiting_on_a_lock(delete)
    finally:
        other.end()
    # Then both succeed: no deadlock, no error
    added, released = add.outcome(), delete.outcome()
    assert not isinstance(added, BaseException), repr(added)
    assert not isinstance(released, BaseException), repr(released)
    assert len(added["ips"]) == 2
    assert sorted(released) == ["10.4.0.10", "fd00:6::10"]


def test_a_del_does_not_wait_for_an_add_in_the_same_pools(monkeypatch):
    """FOR NO KEY UPDATE on the pool rows leaves room for the FOR KEY SHARE of a release's foreign-key checks."""
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    annotations = pool_annotations(ipv4=["p1"])
    gone = f.facts("gone-0", annotations=annotations)
    f.allocate(gone)
    # Given an ADD in the same pool that holds the pool's row lock (stopped inside its transaction)
    stall = StallInsideAllocation(monkeypatch)
    try:
        add = Writer(lambda: f.allocate(f.facts("new-0", annotations=annotations))).begin()
        stall.wait_reached()
        # When another pod's DEL runs
        delete = Writer(lambda: f.release(gone)).begin()
        waited = wait_until_waiting_on_a_lock(delete)
        # Then it completes without waiting for the ADD
        assert not waited
        assert delete.outcome() == ["10.1.0.10"]
    finally:
        stall.go()
    assert not isinstance(add.outcome(), BaseException)
    assert ReleasedAddress.objects.count() == 1


# ------------------------------------------------------------------------------ fault 5: DEL racing a second NIC


def test_a_del_racing_the_add_of_a_second_nic_releases_both_nics(monkeypatch):
    # Given a pod with eth0, whose net1 ADD (Multus: one ADD per NIC) has taken its address but not committed yet
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    f.pool("p2", "10.2.0.0/24", ["10.2.0.10-10.2.0.19"])
    client = node_client()
    facts = f.facts("web-0")
    assert client.post(ALLOCATE, add_body(facts, default_ipv4_pool="p1"), format="json").status_code == 200
    stall = StallInsideAllocation(monkeypatch)
    net1 = add_body(facts, if_name="net1", default_ipv4_pool="p2")
    add = Writer(lambda: client.post(ALLOCATE, net1, format="json")).begin()
    stall.wait_reached()
    # When the pod's DEL arrives and the net1 ADD then commits
    delete = Writer(lambda: client.post(RELEASE, del_body(facts), format="json")).begin()
    wait_until_waiting_on_a_lock(delete)
    stall.go()
    # Then the DEL releases both NICs' addresses
    added, deleted = add.outcome(), delete.outcome()
    assert added.status_code == 200, added.content
    assert deleted.status_code == 200, deleted.content
    assert sorted(deleted.json()["released"]) == ["10.1.0.10", "10.2.0.10"]
    # and leaves neither an allocation nor the endpoint behind
    assert not Allocation.objects.exists()
    assert not Endpoint.objects.exists()


# ------------------------------------------------------------- issue 11 §3: allocations of one pool do not queue


def addresses(result) -> list[str]:
    return [ip["address"] for ip in result["ips"]]


def test_an_add_does_not_wait_for_another_add_in_flight_in_the_same_pool(monkeypatch):
    # Given an ADD in pool p1 that has taken its address and not committed yet
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    annotations = pool_annotations(ipv4=["p1"])
    stall = StallInsideAllocation(monkeypatch, first_only=True)
    try:
        first = Writer(lambda: f.allocate(f.facts("first-0", annotations=annotations))).begin()
        stall.wait_reached()
        # When another pod's ADD in the same pool runs
        second = Writer(lambda: f.allocate(f.facts("second-0", annotations=annotations))).begin()
        waited = wait_until_waiting_on_a_lock(second)
        # Then it completes without waiting for the first, with the next address
        assert not waited
        assert addresses(second.outcome()) == ["10.1.0.11/24"]
    finally:
        stall.go()
    assert addresses(first.outcome()) == ["10.1.0.10/24"]


@pytest.mark.parametrize("first_commits", [True, False], ids=["first-commits", "first-rolls-back"])
def test_an_add_waits_for_an_in_flight_claim_of_the_last_address_rather_than_call_the_pool_exhausted(
    monkeypatch, first_commits
):
    # Given a one-address pool whose address an ADD in flight has taken
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10"])
    annotations = pool_annotations(ipv4=["p1"])
    stall = StallInsideAllocation(monkeypatch, first_only=True, fail=not first_commits)
    try:
        first = Writer(lambda: f.allocate(f.facts("first-0", annotations=annotations))).begin()
        stall.wait_reached()
        # When another pod's ADD in the same pool runs
        second = Writer(lambda: f.allocate(f.facts("second-0", annotations=annotations))).begin()
        # Then it waits for the outcome of the first
        assert wait_until_waiting_on_a_lock(second)
    finally:
        stall.go()
    # and is told the pool is exhausted if the first committed, or gets the address if the first rolled back
    taken, outcome = first.outcome(), second.outcome()
    if first_commits:
        assert addresses(taken) == ["10.1.0.10/24"]
        assert isinstance(outcome, Exhausted), repr(outcome)
    else:
        assert isinstance(taken, RuntimeError), repr(taken)
        assert addresses(outcome) == ["10.1.0.10/24"]
    assert Allocation.objects.count() == 1
