"""Mirror services that need only the database: which watch events cost a task, the resync sweep, leases."""

import datetime

import pytest
from django.utils import timezone

from spiderweb.controllers import leases
from spiderweb.controllers.mirror import reconcile as mirror
from spiderweb.controllers.mirror.config import mirror_config
from spiderweb.controllers.mirror.models import MirrorState
from spiderweb.controllers.mirror.status import mirror_status_write
from spiderweb.controllers.models import Lease
from spiderweb.ipam import services
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db


def _obj(generation, labels=None, uid="u1", **meta):
    return {"metadata": {"name": "p1", "uid": uid, "generation": generation, "labels": labels or {}, **meta}}


def test_status_only_events_cost_no_task():
    MirrorState.objects.create(kind="SpiderIPPool", name="p1", k8s_uid="u1", generation=3,
                               synced_spec={"spec": {}, "labels": {"team": "a"}})
    needs = mirror.event_needs_reconcile
    assert needs("SpiderIPPool", _obj(3, {"team": "a"}), "MODIFIED") is False, "status or managedFields only"
    assert needs("SpiderIPPool", _obj(4, {"team": "a"}), "MODIFIED") is True, "spec changed"
    assert needs("SpiderIPPool", _obj(3, {"team": "b"}), "MODIFIED") is True, "labels changed"
    assert needs("SpiderIPPool", _obj(3, {"team": "a"}, uid="u2"), "MODIFIED") is True, "another incarnation"
    assert needs("SpiderIPPool", _obj(3, {"team": "a"}, deletionTimestamp="t"), "MODIFIED") is True
    assert needs("SpiderIPPool", _obj(3, {"team": "a"}), "DELETED") is True
    assert needs("SpiderCoordinator", _obj(3), "MODIFIED") is True


def test_resync_plan_finds_unpushed_edited_terminating_and_deleted_rows(monkeypatch):
    monkeypatch.setenv("SPIDERWEB_MIRROR_ENABLED", "true")
    mirror_config.cache_clear()
    fresh = f.pool("fresh", "10.1.0.0/24", ["10.1.0.1"])
    synced = f.pool("synced", "10.2.0.0/24", ["10.2.0.1"])
    type(synced).objects.filter(pk=synced.pk).update(k8s_uid="u", synced_generation=synced.generation)
    edited = f.pool("edited", "10.3.0.0/24", ["10.3.0.1"])
    type(edited).objects.filter(pk=edited.pk).update(k8s_uid="u", synced_generation=edited.generation - 1)
    dying = f.pool("dying", "10.4.0.0/24", ["10.4.0.1"])
    type(dying).objects.filter(pk=dying.pk).update(k8s_uid="u", terminating=True)
    MirrorState.objects.create(kind="SpiderIPPool", name="gone", object_id=999999)
    plan = mirror.mirror_resync_plan()
    assert ("out", "SpiderIPPool", fresh.pk) in plan and ("out", "SpiderIPPool", edited.pk) in plan
    assert ("in", "SpiderIPPool", "dying") in plan and ("out", "SpiderIPPool", 999999) in plan
    assert not [p for p in plan if p[2] in (synced.pk, "synced")]


def test_resync_and_status_do_nothing_while_the_mirror_is_off():
    f.pool("fresh", "10.1.0.0/24", ["10.1.0.1"])
    assert mirror.mirror_resync_plan() == []
    assert mirror_status_write() == {"disabled": True}


def test_reconcile_refuses_to_run_inside_a_transaction():
    """Its CRD writes call our own webhook, which takes the spec lock: a held transaction would deadlock."""
    pool = f.pool("p1", "10.1.0.0/24", ["10.1.0.1"])
    with pytest.raises(RuntimeError, match="inside a database transaction"):
        mirror.mirror_out(kind="SpiderIPPool", pk=pool.pk)


def test_a_lease_has_one_holder_until_it_expires_or_is_released():
    assert leases.lease_acquire("job", holder="a", ttl=60) is True
    assert leases.lease_acquire("job", holder="b", ttl=60) is False
    assert leases.lease_acquire("job", holder="a", ttl=60) is True, "renewal"
    leases.lease_release("job", holder="a")
    assert leases.lease_acquire("job", holder="b", ttl=60) is True, "released"
    Lease.objects.filter(name="job").update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert leases.lease_acquire("job", holder="c", ttl=60) is True, "b's lease expired"


def test_portal_writes_are_not_echoed_when_they_come_from_kubernetes(monkeypatch, django_capture_on_commit_callbacks):
    from spiderweb.controllers import enqueue
    from spiderweb.controllers.mirror import signals

    sent = []
    monkeypatch.setattr(enqueue, "task_send", lambda name, *args: sent.append((name, args)))
    monkeypatch.setenv("SPIDERWEB_MIRROR_ENABLED", "true")
    mirror_config.cache_clear()
    with django_capture_on_commit_callbacks(execute=True):
        pool = f.pool("p1", "10.1.0.0/24", ["10.1.0.1"])
    assert sent == [("workers.mirror.mirror_out_task", ("SpiderIPPool", pool.pk))]
    with django_capture_on_commit_callbacks(execute=True), signals.from_kubernetes():
        services.ippool_update(pool=pool, spec={"default": True})
    assert len(sent) == 1, "a write from Kubernetes enqueues nothing"


def test_a_pool_cut_from_a_subnet_is_pushed_with_the_subnets_controller_reference():
    from spiderweb.controllers.mirror.documents import MIRROR_KINDS, crd_body, doc_from_row
    from spiderweb.ipam.models import Subnet

    subnet = services.subnet_create(tenant=f.tenant(), name="s1", spec={"subnet": "10.3.0.0/24",
                                                                        "ips": ["10.3.0.1-10.3.0.50"]})
    Subnet.objects.filter(pk=subnet.pk).update(k8s_uid="uid-s1")
    pool = f.pool("p1", "10.3.0.0/24", ["10.3.0.1-10.3.0.5"])
    mk = MIRROR_KINDS["SpiderIPPool"]
    body = crd_body(mk, pool, doc_from_row(mk, pool))
    assert body["metadata"]["ownerReferences"] == [{"apiVersion": "spiderpool.spidernet.io/v2beta1",
                                                     "kind": "SpiderSubnet", "name": "s1", "uid": "uid-s1",
                                                     "controller": True, "blockOwnerDeletion": True}]
    existing = {**body, "metadata": {**body["metadata"], "ownerReferences": [], "resourceVersion": "7"}}
    assert crd_body(mk, pool, doc_from_row(mk, pool), existing=existing)["metadata"]["ownerReferences"][0]["uid"] \
        == "uid-s1"
