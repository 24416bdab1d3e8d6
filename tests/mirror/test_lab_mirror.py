"""The mirror against a real kube-apiserver: kubectl-style writes pass through our HTTPS admission webhooks into the
database; portal writes, status and SpiderEndpoints flow out; deletions and both-sides edits reconcile.

Every write to the API server here uses the official ``kubernetes`` client, as kubectl would; the portal side uses
``spiderweb.ipam.services`` and the mirror services with an explicit client (the mirror is off in this process).
"""

import json
import threading

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spiderweb.changelog.models import ObjectChange
from spiderweb.controllers.mirror import reconcile as mirror
from spiderweb.controllers.mirror import status as mirror_status
from spiderweb.ipam import services
from spiderweb.ipam.models import ClusterSettings, IPPool, Subnet
from spiderweb.k8s.crd import FINALIZER, GROUP, VERSION
from tests.ipam import factories as f

from .lab import crs_delete_all, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
POOLS = "spiderippools"


@pytest.fixture
def lab(mirror_lab, webhook_portal, transactional_db):
    """The lab with webhooks active; every custom resource is deleted after the test (before the database flush)."""
    yield mirror_lab
    crs_delete_all(mirror_lab)


def pool_manifest(name, subnet, ips, **spec):
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": name},
            "spec": {"subnet": subnet, "ips": ips, **spec}}


def create_pool(lab, name, subnet, ips, **spec):
    return lab.custom.create_cluster_custom_object(GROUP, VERSION, POOLS, pool_manifest(name, subnet, ips, **spec))


def get_pool(lab, name):
    return lab.custom.get_cluster_custom_object(GROUP, VERSION, POOLS, name)


def patch_pool(lab, name, spec):
    return lab.custom.patch_cluster_custom_object(GROUP, VERSION, POOLS, name, {"spec": spec})


def allocate(pool, pod, namespace="default"):
    facts = f.facts(pod, namespace=namespace, annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pool]})})
    f.allocate(facts)
    return facts


def test_invalid_pool_is_refused_at_create_with_the_clear_message(lab):
    with pytest.raises(ApiException) as refused:
        create_pool(lab, "bad", "10.60.0.0/24", ["10.61.0.10"])
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert 'denied the request: SpiderIPPool "bad" is invalid: ips: 10.61.0.10 is outside subnet 10.60.0.0/24.' \
        in message
    assert not IPPool.objects.filter(name="bad").exists()


def test_valid_pool_comes_back_defaulted_and_is_in_the_database(lab):
    created = create_pool(lab, "p1", "10.60.0.0/24", ["10.60.0.12", "10.60.0.10-10.60.0.11", "10.60.0.20"])
    assert created["spec"]["ipVersion"] == 4
    assert created["spec"]["ips"] == ["10.60.0.10-10.60.0.12", "10.60.0.20"]
    assert created["metadata"]["labels"]["ipam.spidernet.io/ippool-cidr"] == "10-60-0-0-24"
    assert created["metadata"]["finalizers"] == [FINALIZER]
    pool = IPPool.objects.get(name="p1")
    assert pool.ips == ["10.60.0.10-10.60.0.12", "10.60.0.20"] and pool.tenant.name == "default"
    assert pool.k8s_uid == created["metadata"]["uid"], "the validating webhook sees the UID the object is stored with"


def test_dry_run_create_is_validated_but_not_written(lab):
    lab.custom.create_cluster_custom_object(GROUP, VERSION, POOLS, pool_manifest("dry", "10.60.1.0/24",
                                                                                  ["10.60.1.10"]), dry_run="All")
    assert not IPPool.objects.filter(name="dry").exists()


def test_pool_inherits_from_the_subnet_of_its_cidr(lab):
    subnet = lab.custom.create_cluster_custom_object(GROUP, VERSION, "spidersubnets", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderSubnet", "metadata": {"name": "s1"},
        "spec": {"subnet": "10.62.0.0/16", "ips": ["10.62.0.1-10.62.0.100"], "gateway": "10.62.0.254"}})
    assert Subnet.objects.get(name="s1").k8s_uid == subnet["metadata"]["uid"]
    pool = create_pool(lab, "child", "10.62.0.0/16", ["10.62.0.10-10.62.0.20"])
    assert pool["spec"]["gateway"] == "10.62.0.254"
    assert pool["metadata"]["labels"]["ipam.spidernet.io/owner-spider-subnet"] == "s1"
    [owner] = pool["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("SpiderSubnet", subnet["metadata"]["uid"], True)
    assert IPPool.objects.get(name="child").owner_subnet.name == "s1"


def test_two_overlapping_pools_applied_at_once_cannot_both_pass(lab):
    """Spiderpool SP#746: the spec lock serialises the two admissions, so the second sees the first."""
    outcomes = {}
    barrier = threading.Barrier(2)

    def apply(name, subnet, ips):
        barrier.wait()
        try:
            create_pool(lab, name, subnet, ips)
            outcomes[name] = "created"
        except ApiException as exc:
            outcomes[name] = json.loads(exc.body)["message"]

    threads = [threading.Thread(target=apply, args=("wide", "10.63.0.0/16", ["10.63.1.1-10.63.1.9"])),
               threading.Thread(target=apply, args=("narrow", "10.63.1.0/24", ["10.63.1.1-10.63.1.9"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [n for n, outcome in outcomes.items() if outcome == "created"]
    assert len(created) == 1, outcomes
    [refused] = [o for o in outcomes.values() if o != "created"]
    assert "overlaps the subnet" in refused
    assert list(IPPool.objects.values_list("name", flat=True)) == created


def test_portal_pool_appears_as_a_crd_after_mirror_out(lab):
    pool = services.ippool_create(tenant=f.tenant("team-a"), name="portal", spec={
        "subnet": "10.64.0.0/24", "ips": ["10.64.0.10-10.64.0.20"], "gateway": "10.64.0.1"})
    assert mirror.mirror_out(kind="SpiderIPPool", pk=pool.pk, client=lab.crd) == "created"
    obj = get_pool(lab, "portal")
    assert obj["spec"] == {"ipVersion": 4, "subnet": "10.64.0.0/24", "ips": ["10.64.0.10-10.64.0.20"],
                           "gateway": "10.64.0.1", "default": False, "disable": False}
    assert obj["metadata"]["labels"]["spiderweb.io/tenant"] == "team-a"
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    pool.refresh_from_db()
    assert pool.k8s_uid == obj["metadata"]["uid"] and pool.synced_generation == pool.generation
    assert mirror.mirror_out(kind="SpiderIPPool", pk=pool.pk, client=lab.crd) == "synced", "idempotent"

    services.ippool_update(pool=pool, spec={"ips": ["10.64.0.10-10.64.0.30"]})
    assert mirror.mirror_out(kind="SpiderIPPool", pk=pool.pk, client=lab.crd) == "pushed"
    assert get_pool(lab, "portal")["spec"]["ips"] == ["10.64.0.10-10.64.0.30"]

    services.ippool_delete(pool=IPPool.objects.get(name="portal"))
    assert mirror.mirror_out(kind="SpiderIPPool", pk=pool.pk, client=lab.crd) == "deleted-in-kubernetes"
    with pytest.raises(ApiException) as gone:
        get_pool(lab, "portal")
    assert gone.value.status == 404


def test_status_and_spiderendpoints_are_written_in_batches_only_when_changed(lab):
    create_pool(lab, "busy", "10.65.0.0/24", ["10.65.0.10-10.65.0.19"], gateway="10.65.0.1")
    assert mirror.mirror_in(kind="SpiderIPPool", name="busy", client=lab.crd) == "synced"
    web0 = allocate("busy", "web-0")
    allocate("busy", "web-1")

    counts = mirror_status.mirror_status_write(client=lab.crd)
    assert counts == {"ippools": 1, "subnets": 0, "endpoints": 2, "endpoints_deleted": 0}
    status = get_pool(lab, "busy")["status"]
    assert (status["allocatedIPCount"], status["totalIPCount"]) == (2, 10)
    assert json.loads(status["allocatedIPs"]) == {
        "10.65.0.10": {"pod": "default/web-0", "podUid": web0.uid},
        "10.65.0.11": {"pod": "default/web-1", "podUid": IPPool.objects.get(name="busy").allocations.get(
            address="10.65.0.11").pod_uid}}
    endpoint = lab.custom.get_namespaced_custom_object(GROUP, VERSION, "default", "spiderendpoints", "web-0")
    assert endpoint["status"]["current"] == {
        "uid": web0.uid, "node": "node-1",
        "ips": [{"interface": "eth0", "ipv4": "10.65.0.10/24", "ipv4Pool": "busy", "ipv4Gateway": "10.65.0.1",
                 "vlan": 0}]}
    assert (endpoint["status"]["ownerControllerType"], endpoint["status"]["ownerControllerName"]) == ("Pod", "web-0")

    assert mirror_status.mirror_status_write(client=lab.crd) == {"ippools": 0, "subnets": 0, "endpoints": 0,
                                                           "endpoints_deleted": 0}, "nothing changed: no write"
    f.release(web0)
    counts = mirror_status.mirror_status_write(client=lab.crd)
    assert counts == {"ippools": 1, "subnets": 0, "endpoints": 0, "endpoints_deleted": 1}
    assert get_pool(lab, "busy")["status"]["allocatedIPCount"] == 1
    with pytest.raises(ApiException):
        lab.custom.get_namespaced_custom_object(GROUP, VERSION, "default", "spiderendpoints", "web-0")


class _Recorded:
    """A KubeClient that notes the name of every call made through it."""

    def __init__(self, client):
        self.client, self.made = client, []

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.made.append(name)
            return attr(*args, **kwargs)

        return call


def test_a_new_pods_spiderendpoint_costs_one_call_and_a_name_already_taken_is_read_and_replaced(lab):
    create_pool(lab, "fresh", "10.68.0.0/24", ["10.68.0.10-10.68.0.19"])
    assert mirror.mirror_in(kind="SpiderIPPool", name="fresh", client=lab.crd) == "synced"
    # Given a SpiderEndpoint named like the second pod, left by an incarnation the database no longer knows
    lab.custom.create_namespaced_custom_object(GROUP, VERSION, "default", "spiderendpoints", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderEndpoint", "metadata": {"name": "api-1"}})
    allocate("fresh", "api-0")
    api1 = allocate("fresh", "api-1")
    # When the next batch writes the status
    recorded = _Recorded(lab.crd)
    counts = mirror_status.mirror_status_write(client=recorded)
    # Then the pool's status is patched, the first pod's SpiderEndpoint is created without being read first, and
    # the second's create is refused and the object read and replaced with the new pod's status
    assert counts == {"ippools": 1, "subnets": 0, "endpoints": 2, "endpoints_deleted": 0}
    assert recorded.made == ["patch", "create", "create", "get", "replace"]
    taken = lab.custom.get_namespaced_custom_object(GROUP, VERSION, "default", "spiderendpoints", "api-1")
    assert taken["status"]["current"]["uid"] == api1.uid and taken["metadata"]["finalizers"] == [FINALIZER]


def test_a_spiderendpoint_deleted_with_its_pod_only_loses_its_finalizer_once_the_address_is_released(lab):
    create_pool(lab, "leaving", "10.69.0.0/24", ["10.69.0.10-10.69.0.19"])
    assert mirror.mirror_in(kind="SpiderIPPool", name="leaving", client=lab.crd) == "synced"
    web = allocate("leaving", "web-9")
    assert mirror_status.mirror_status_write(client=lab.crd)["endpoints"] == 1
    # Given Kubernetes deleting the SpiderEndpoint with its pod (ownerReference): the finalizer holds it
    lab.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", "spiderendpoints", "web-9")
    held = lab.custom.get_namespaced_custom_object(GROUP, VERSION, "default", "spiderendpoints", "web-9")
    assert held["metadata"]["deletionTimestamp"]
    # When the address is released and the next batch runs
    f.release(web)
    recorded = _Recorded(lab.crd)
    counts = mirror_status.mirror_status_write(client=recorded)
    # Then the object is read once and its finalizer removed: no second delete, no second read
    assert counts == {"ippools": 1, "subnets": 0, "endpoints": 0, "endpoints_deleted": 1}
    assert recorded.made == ["patch", "get", "finalizer_remove"]
    with pytest.raises(ApiException) as gone:
        lab.custom.get_namespaced_custom_object(GROUP, VERSION, "default", "spiderendpoints", "web-9")
    assert gone.value.status == 404


def test_subnet_status_lists_controlled_pools(lab):
    lab.custom.create_cluster_custom_object(GROUP, VERSION, "spidersubnets", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderSubnet", "metadata": {"name": "s2"},
        "spec": {"subnet": "10.66.0.0/16", "ips": ["10.66.0.1-10.66.0.100"]}})
    create_pool(lab, "in-s2", "10.66.0.0/16", ["10.66.0.10-10.66.0.14"])
    for kind, name in (("SpiderSubnet", "s2"), ("SpiderIPPool", "in-s2")):
        mirror.mirror_in(kind=kind, name=name, client=lab.crd)
    assert mirror_status.mirror_status_write(client=lab.crd)["subnets"] == 1
    status = lab.custom.get_cluster_custom_object(GROUP, VERSION, "spidersubnets", "s2")["status"]
    assert (status["totalIPCount"], status["allocatedIPCount"]) == (100, 5)
    assert json.loads(status["controlledIPPools"]) == {"in-s2": {"ips": ["10.66.0.10-10.66.0.14"]}}


def test_deleting_the_crd_removes_or_terminates_the_row(lab):
    create_pool(lab, "empty", "10.67.0.0/24", ["10.67.0.10"])
    create_pool(lab, "held", "10.67.1.0/24", ["10.67.1.10-10.67.1.11"])
    facts = allocate("held", "db-0")
    for name in ("empty", "held"):
        lab.custom.delete_cluster_custom_object(GROUP, VERSION, POOLS, name)

    assert mirror.mirror_in(kind="SpiderIPPool", name="empty", client=lab.crd) == "deleted"
    assert not IPPool.objects.filter(name="empty").exists()
    with pytest.raises(ApiException):
        get_pool(lab, "empty")

    assert mirror.mirror_in(kind="SpiderIPPool", name="held", client=lab.crd) == "terminating (1 in use)"
    held = IPPool.objects.get(name="held")
    assert held.terminating is True
    assert get_pool(lab, "held")["metadata"]["finalizers"] == [FINALIZER], "kept until the last address goes"
    f.release(facts)
    assert mirror.mirror_in(kind="SpiderIPPool", name="held", client=lab.crd) == "deleted"
    assert not IPPool.objects.filter(name="held").exists()
    with pytest.raises(ApiException):
        get_pool(lab, "held")


def test_deleting_an_in_use_pool_is_refused_when_the_cluster_setting_is_on(lab):
    create_pool(lab, "guarded", "10.68.0.0/24", ["10.68.0.10"])
    allocate("guarded", "api-0")
    ClusterSettings.objects.filter(pk=1).update(enable_validating_resources_deleted_webhook=True)
    with pytest.raises(ApiException) as refused:
        lab.custom.delete_cluster_custom_object(GROUP, VERSION, POOLS, "guarded")
    assert "still holds 1 allocated IPs" in json.loads(refused.value.body)["message"]
    ClusterSettings.objects.filter(pk=1).update(enable_validating_resources_deleted_webhook=False)


def test_both_sides_edit_one_pool_at_once(lab):
    create_pool(lab, "shared", "10.69.0.0/24", ["10.69.0.10-10.69.0.20"])
    assert mirror.mirror_in(kind="SpiderIPPool", name="shared", client=lab.crd) == "synced"
    pool = IPPool.objects.get(name="shared")

    # Different fields: the portal sets nodeName while kubectl sets default; both survive on both sides.
    services.ippool_update(pool=pool, spec={"node_name": ["node-a"]})
    patch_pool(lab, "shared", {"default": True})
    pool.refresh_from_db()
    assert (pool.node_name, pool.default) == (["node-a"], True)
    assert mirror.mirror_out(kind="SpiderIPPool", pk=pool.pk, client=lab.crd) == "pushed"
    spec = get_pool(lab, "shared")["spec"]
    assert (spec["nodeName"], spec["default"]) == (["node-a"], True)

    # The same field: Kubernetes wins; the portal's value is in the change log and a Warning Event says so.
    services.ippool_update(pool=pool, spec={"node_name": ["portal-node"]})
    patch_pool(lab, "shared", {"nodeName": ["k8s-node"]})
    assert mirror.mirror_out(kind="SpiderIPPool", pk=pool.pk, client=lab.crd) == "synced"
    pool.refresh_from_db()
    assert pool.node_name == ["k8s-node"] and get_pool(lab, "shared")["spec"]["nodeName"] == ["k8s-node"]
    record = ObjectChange.objects.get(object_repr="shared", message__contains="conflict on spec.nodeName")
    assert record.prechange_data["node_name"] == ["portal-node"]
    assert record.postchange_data["node_name"] == ["k8s-node"]
    assert record.user_name.startswith("kubernetes:")

    def conflict_event():
        events = k8s.CoreV1Api(lab.api).list_namespaced_event("default").items
        return [e for e in events if e.involved_object.name == "shared" and e.reason == "SpiderwebConflict"]

    [event] = wait_for("the conflict's Warning Event", conflict_event, timeout=10)
    assert event.type == "Warning" and '"portal-node"' in event.message



def test_coordinator_and_multusconfig_are_defaulted_validated_and_released(lab):
    coordinators = "spidercoordinators"
    manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderCoordinator", "metadata": {"name": "default"},
                "spec": {"podCIDRType": "cluster", "hijackCIDR": ["169.254.25.10"]}}
    with pytest.raises(ApiException) as refused:
        bad = {**manifest, "spec": {**manifest["spec"], "podMACPrefix": "01:00"}}
        lab.custom.create_cluster_custom_object(GROUP, VERSION, coordinators, bad)
    assert "unicast" in json.loads(refused.value.body)["message"]
    created = lab.custom.create_cluster_custom_object(GROUP, VERSION, coordinators, manifest)
    assert (created["spec"]["mode"], created["spec"]["vethMTU"], created["spec"]["hostRuleTable"]) == ("auto", 1500,
                                                                                                        500)
    assert created["spec"]["hijackCIDR"] == ["169.254.25.10/32"] and created["metadata"]["finalizers"] == [FINALIZER]
    lab.custom.delete_cluster_custom_object(GROUP, VERSION, coordinators, "default")
    assert mirror.mirror_in(kind="SpiderCoordinator", name="default", client=lab.crd) == "deleted"
    with pytest.raises(ApiException):
        lab.custom.get_cluster_custom_object(GROUP, VERSION, coordinators, "default")

    smc = lab.custom.create_namespaced_custom_object(GROUP, VERSION, "default", "spidermultusconfigs", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderMultusConfig", "metadata": {"name": "macvlan-eth0"},
        "spec": {"cniType": "macvlan", "macvlan": {"master": ["eth0"]}}})
    assert smc["spec"]["enableCoordinator"] is True and smc["spec"]["coordinator"]["mode"] == "auto"
    assert (smc["spec"]["macvlan"]["ippools"]["ipv4"], smc["spec"]["macvlan"]["vlanID"]) == ([], 0)
    lab.custom.delete_namespaced_custom_object(GROUP, VERSION, "default", "spidermultusconfigs", "macvlan-eth0")
