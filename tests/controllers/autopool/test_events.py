"""The application controller's listener: a workload event costs a task only when its pools are not what it asks
for (every pod start rewrites a Deployment's status; those events must not each cost a reconcile)."""

import uuid

import pytest

from spiderweb.controllers.autopool import services
from spiderweb.engine.autopool import App, IPNumber, SubnetRequest
from spiderweb.ipam import services as ipam_services
from spiderweb.ipam.autopools import autopools_reconcile
from spiderweb.ipam.models import IPPool
from spiderweb.k8s.watch import WatchEvent
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db


def deployment(uid, replicas=2, annotations=None, deleting=False):
    meta = {"name": "web", "namespace": "default", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-04T10:00:00Z"
    template_annotations = {"ipam.spidernet.io/subnet": '{"ipv4": ["s4"]}', **(annotations or {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": replicas, "template": {"metadata": {"annotations": template_annotations}}}}


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(services, "task_send", lambda name, *args: calls.append((name, args)))
    ipam_services.subnet_create(tenant=f.tenant(), name="s4", spec={"subnet": "10.70.0.0/24",
                                                                    "ips": ["10.70.0.10-10.70.0.40"]})
    return calls


def pools_for(uid, replicas):
    autopools_reconcile(app=App("apps/v1", "Deployment", "default", "web", uid),
                        requests=[SubnetRequest("eth0", v4="s4")], ip_number=IPNumber(True, 1), replicas=replicas,
                        reclaim=True)
    return list(IPPool.objects.filter(auto_app_uid=uid))


def test_a_new_workload_asking_for_a_subnet_is_reconciled(sent):
    uid = str(uuid.uuid4())
    services.application_event("Deployment", WatchEvent("ADDED", deployment(uid)))
    assert sent == [(services.RECONCILE_TASK, ("Deployment", "default", "web", uid))]


def test_a_status_only_change_costs_nothing_but_a_replica_change_does(sent):
    uid = str(uuid.uuid4())
    pools_for(uid, 2)
    services.application_event("Deployment", WatchEvent("MODIFIED", deployment(uid, replicas=2)))
    assert sent == []
    services.application_event("Deployment", WatchEvent("MODIFIED", deployment(uid, replicas=5)))
    assert len(sent) == 1


@pytest.mark.parametrize("change", [{"ipam.spidernet.io/ippool-ip-number": "+3"},
                                    {"ipam.spidernet.io/ippool-reclaim": "false"},
                                    {"ipam.spidernet.io/subnet": '{"ipv4": ["other"]}'}])
def test_a_changed_request_is_reconciled(sent, change):
    uid = str(uuid.uuid4())
    pools_for(uid, 2)
    services.application_event("Deployment", WatchEvent("MODIFIED", deployment(uid, annotations=change)))
    assert len(sent) == 1


def test_deletion_and_a_deleted_workload_reclaim(sent):
    uid = str(uuid.uuid4())
    pools_for(uid, 1)
    services.application_event("Deployment", WatchEvent("MODIFIED", deployment(uid, deleting=True)))
    services.application_event("Deployment", WatchEvent("DELETED", deployment(uid)))
    assert [name for name, _ in sent] == [services.RECONCILE_TASK, services.RECLAIM_TASK]


def test_a_deployments_replicaset_is_not_an_application(sent):
    rs = deployment(str(uuid.uuid4()))
    rs["metadata"]["ownerReferences"] = [{"kind": "Deployment", "name": "web", "controller": True}]
    services.application_event("ReplicaSet", WatchEvent("ADDED", rs))
    assert sent == []
