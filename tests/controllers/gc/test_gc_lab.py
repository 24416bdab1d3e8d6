"""IP GC against the real API server (tests/lab) and PostgreSQL: every case of spec §7 that Kubernetes drives.

Pods, nodes and StatefulSets live in the lab's kube-apiserver; allocations are made by the allocator from facts
built out of those pods exactly as the node agent builds them (``spiderweb.k8s.pods``). There is no kubelet: a
pod bound to a node (``spec.nodeName``) stays terminating after a graceful delete, as it would on a node whose
kubelet is gone, and pod status is patched as a kubelet would.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid

import pytest
from django.utils import timezone

from spiderweb.controllers.gc import services as gc
from spiderweb.controllers.gc.config import gc_config
from spiderweb.controllers.gc.models import TracedPod
from spiderweb.controllers.mirror.status import mirror_status_write
from spiderweb.controllers.registry import watches
from spiderweb.controllers.watcher import Watcher
from spiderweb.ipam import allocation
from spiderweb.ipam.models import Allocation, ClusterSettings, Endpoint
from spiderweb.k8s import crd, pods, resources
from spiderweb.k8s.client import KubeClient
from spiderweb.k8s.watch import WatchEvent
from tests.ipam import factories as f
from tests.mirror.lab import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]

POOL = "gc-pool"
POOL_ANNOTATION = {"ipam.spidernet.io/ippool": json.dumps({"ipv4": [POOL]})}


class TestClient(KubeClient):
    """The lab's client, knowing the test's own namespace."""

    __test__ = False

    def __init__(self, api, *, namespace_name: str):
        super().__init__(api)
        self.namespace_name = namespace_name


@pytest.fixture
def kube(mirror_lab, monkeypatch):
    """The lab's client, a namespace of the test's own, Ready node ``gc-node``, a pool, and the GC switched on."""
    from spiderweb.controllers.config import kube_client, kube_config

    monkeypatch.setenv("KUBECONFIG", str(mirror_lab.plane.kubeconfig))
    for cache in (kube_client, kube_config, gc_config):
        cache.cache_clear()
    namespace = f"gc-{uuid.uuid4().hex[:8]}"
    client = TestClient(mirror_lab.api, namespace_name=namespace)
    client.create(resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    node_set(client, "gc-node", ready=True)
    f.pool(POOL, "10.44.0.0/24", ["10.44.0.10-10.44.0.60"])
    yield client
    _namespace_empty(client, namespace)
    for cache in (kube_client, kube_config, gc_config):
        cache.cache_clear()


def _namespace_empty(client, namespace: str) -> None:
    """Leave nothing behind for other tests of the shared lab: the namespace's SpiderEndpoints (with Spiderpool's
    finalizer), pods and StatefulSets."""
    for obj in client.list(crd.SPIDER_ENDPOINT, namespace=namespace)[0]:
        client.delete(crd.SPIDER_ENDPOINT, obj["metadata"]["name"], namespace=namespace)
        fresh = client.get(crd.SPIDER_ENDPOINT, obj["metadata"]["name"], namespace=namespace)
        if fresh is not None:
            client.finalizer_remove(crd.SPIDER_ENDPOINT, fresh)
    for resource in (resources.STATEFULSET, resources.POD):
        for obj in client.list(resource, namespace=namespace)[0]:
            client.request("DELETE", resource.path(obj["metadata"]["name"], namespace=namespace),
                           body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})


def node_set(client, name: str, *, ready: bool) -> None:
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    if client.get(resources.NODE, name) is None:
        client.create(resources.NODE, body)
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": "Test",
                              "lastHeartbeatTime": timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")}]}
    client.patch(resources.NODE, name, {"status": status}, subresource="status")


def pod_create(client, name: str, *, node: str = "gc-node", grace: int = 30) -> dict:
    metadata = {"name": name, "namespace": client.namespace_name, "annotations": POOL_ANNOTATION}
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": grace,
                     "containers": [{"name": "c", "image": "pause"}]}}
    return client.create(resources.POD, body)


def pod_allocate(client, pod: dict) -> list[str]:
    """What the agent does on ADD: facts from the pod as the API server has it, then the allocator."""
    owner = pods.top_controller(pod, client.owner)
    facts = pods.pod_facts(pod, owner=owner, namespace=None, node=None, default_node="gc-node")
    result = allocation.ippool_allocate(request=allocation.AllocateRequest(facts=facts, if_name="eth0"))
    addresses = [ip["address"].split("/")[0] for ip in result["ips"]]
    status = {"phase": "Running", "podIP": addresses[0], "podIPs": [{"ip": a} for a in addresses]}
    client.patch(resources.POD, pod["metadata"]["name"], {"status": status}, namespace=client.namespace_name,
                 subresource="status")
    return addresses


def pod_delete(client, name: str, *, grace: int = 0) -> None:
    client.request("DELETE", resources.POD.path(name, namespace=client.namespace_name),
                   body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": grace})


def held(name: str, namespace: str) -> list[str]:
    return sorted(Allocation.objects.filter(endpoint__namespace=namespace, endpoint__name=name)
                  .values_list("address", flat=True))


def statefulset_create(client, name: str, replicas: int) -> dict:
    """A StatefulSet whose pods the lab's kube-controller-manager creates (unscheduled: deleted at once)."""
    body = {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": client.namespace_name},
            "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}, "annotations": POOL_ANNOTATION},
                                  "spec": {"containers": [{"name": "c", "image": "pause"}]}}}}
    return client.create(resources.STATEFULSET, body)


def statefulset_scale(client, name: str, replicas: int) -> None:
    client.patch(resources.STATEFULSET, name, {"spec": {"replicas": replicas}}, namespace=client.namespace_name)


def controller_pod(client, name: str, *, not_uid: str = "") -> dict:
    """The pod the controller-manager made (a newer incarnation than ``not_uid`` when given)."""
    def made():
        pod = client.pod(client.namespace_name, name)
        return pod if pod is not None and pod["metadata"]["uid"] != not_uid else None
    return wait_for(f"the controller-manager to create {name}", made, timeout=30)


def pod_gone(client, name: str, uid: str) -> None:
    wait_for(f"{name} ({uid}) to be gone", lambda: (client.pod(client.namespace_name, name) or {})
             .get("metadata", {}).get("uid") != uid, timeout=30)


# ---------------------------------------------------------------------------------------------------- tracing


def test_a_pod_deleted_without_cni_del_is_released_by_the_watcher_and_the_sweep(kube):
    """Given a running pod whose node never runs CNI DEL, when the pod is force-deleted, then the watcher (the real
    one, on a real watch stream) records a trace and the sweep releases the address."""
    namespace = kube.namespace_name
    pod = pod_create(kube, "web-a")
    assert pod_allocate(kube, pod)
    gc_watches = [w for w in watches() if w.controller == "gc"]
    watcher = Watcher(kube, gc_watches, watch_timeout=5, lease_ttl=6)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        wait_for("the watcher to lead", lambda: watcher.threads, timeout=15)
        time.sleep(1)  # the pod watch has listed and is streaming
        pod_delete(kube, "web-a")
        traced = wait_for("a trace of the deleted pod",
                          lambda: TracedPod.objects.filter(uid=pod["metadata"]["uid"]).first(), timeout=20)
    finally:
        watcher.shutdown()
        thread.join(timeout=10)
    assert traced.reason == "pod deleted"
    assert gc.traced_pods_sweep(client=kube) == {"released": 1}
    assert held("web-a", namespace) == []
    assert not TracedPod.objects.exists()


def test_a_terminating_pod_is_released_at_its_deletion_timestamp_not_before(kube):
    """A13: the deadline is deletionTimestamp (+ delay), not deletionTimestamp + grace again."""
    namespace = kube.namespace_name
    pod = pod_create(kube, "web-b", grace=30)
    addresses = pod_allocate(kube, pod)
    pod_delete(kube, "web-b", grace=30)
    terminating = kube.pod(namespace, "web-b")
    assert terminating["metadata"]["deletionTimestamp"]
    gc.pod_event_trace(WatchEvent("MODIFIED", terminating))
    traced = TracedPod.objects.get(uid=pod["metadata"]["uid"])
    deadline = traced.stop_at
    assert gc.traced_pods_sweep(client=kube, now=deadline - dt.timedelta(seconds=1)) == {}
    assert held("web-b", namespace) == addresses
    assert gc.traced_pods_sweep(client=kube, now=deadline) == {"released": 1}
    assert held("web-b", namespace) == []


def test_the_additional_grace_delay_moves_the_deadline(kube, monkeypatch):
    monkeypatch.setenv("SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY", "40")
    gc_config.cache_clear()
    pod = pod_create(kube, "web-c", grace=30)
    pod_allocate(kube, pod)
    pod_delete(kube, "web-c", grace=30)
    terminating = kube.pod(kube.namespace_name, "web-c")
    gc.pod_event_trace(WatchEvent("MODIFIED", terminating))
    deletion = dt.datetime.fromisoformat(terminating["metadata"]["deletionTimestamp"].replace("Z", "+00:00"))
    assert TracedPod.objects.get(uid=pod["metadata"]["uid"]).stop_at == deletion + dt.timedelta(seconds=40)


@pytest.mark.parametrize("node_ready, switch, released", [
    (False, "SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_NOT_READY_NODE_ENABLED", False),
    (False, "SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED", True),
    (True, "SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED", False),
])
def test_the_node_gate_switches_decide_for_zombies(kube, monkeypatch, node_ready, switch, released):
    """A terminating pod past its deadline on a NotReady (or Ready) node is reclaimed only when its switch is on."""
    monkeypatch.setenv(switch, "false")
    gc_config.cache_clear()
    node_set(kube, "gc-node", ready=node_ready)
    pod = pod_create(kube, "web-d", grace=1)
    addresses = pod_allocate(kube, pod)
    pod_delete(kube, "web-d", grace=1)
    traced = gc.trace_record(namespace=kube.namespace_name, name="web-d", uid=pod["metadata"]["uid"], node="gc-node",
                             decision=gc.podgc.Decision("trace", "pod terminating", timezone.now()))
    later = traced.stop_at + dt.timedelta(seconds=5)
    gc.traced_pods_sweep(client=kube, now=later)
    assert held("web-d", kube.namespace_name) == ([] if released else addresses)
    # and the full scan agrees
    assert gc.gc_scan(client=kube, now=later)["released"] == 0


def test_finished_and_evicted_pods_are_released(kube):
    namespace = kube.namespace_name
    done, evicted = pod_create(kube, "job-a", grace=0), pod_create(kube, "web-e", grace=0)
    pod_allocate(kube, done)
    pod_allocate(kube, evicted)
    ended = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    kube.patch(resources.POD, "job-a", {"status": {"phase": "Succeeded", "containerStatuses": [
        {"name": "c", "ready": False, "restartCount": 0, "image": "pause", "imageID": "",
         "state": {"terminated": {"exitCode": 0, "finishedAt": ended}}}]}}, namespace=namespace,
        subresource="status")
    kube.patch(resources.POD, "web-e", {"status": {"phase": "Failed", "reason": "Evicted"}}, namespace=namespace,
               subresource="status")
    for name in ("job-a", "web-e"):
        gc.pod_event_trace(WatchEvent("MODIFIED", kube.pod(namespace, name)))
    assert gc.traced_pods_sweep(client=kube, now=timezone.now() + dt.timedelta(seconds=2)) == {"released": 2}
    assert held("job-a", namespace) == held("web-e", namespace) == []


def test_a_pod_alive_again_is_not_released_by_a_stale_trace(kube):
    pod = pod_create(kube, "web-f")
    addresses = pod_allocate(kube, pod)
    gc.trace_record(namespace=kube.namespace_name, name="web-f", uid=pod["metadata"]["uid"], node="gc-node",
                    decision=gc.podgc.Decision("trace", "stale", timezone.now()))
    assert gc.traced_pods_sweep(client=kube) == {"kept: pod alive": 1}
    assert held("web-f", kube.namespace_name) == addresses


# ------------------------------------------------------------------------------------------- StatefulSets


def test_a_statefulset_pod_keeps_its_address_while_its_ordinal_is_wanted(kube):
    namespace = kube.namespace_name
    statefulset_create(kube, "db", replicas=2)
    pod = controller_pod(kube, "db-1")
    addresses = pod_allocate(kube, pod)
    assert Endpoint.objects.get(namespace=namespace, name="db-1").owner_kind == "StatefulSet"
    pod_delete(kube, "db-1")  # its DEL never ran; the controller-manager re-creates it
    controller_pod(kube, "db-1", not_uid=pod["metadata"]["uid"])
    gc.pod_event_trace(WatchEvent("DELETED", pod))
    assert gc.traced_pods_sweep(client=kube) == {"kept: StatefulSet/VM still wants it": 1}
    assert gc.gc_scan(client=kube)["released"] == 0
    assert held("db-1", namespace) == addresses
    # scaled down past the ordinal while the pod's DEL never ran: the full scan releases it
    statefulset_scale(kube, "db", 1)
    wait_for("db-1 to be deleted", lambda: kube.pod(namespace, "db-1") is None, timeout=30)
    assert gc.gc_scan(client=kube)["released"] == 1
    assert held("db-1", namespace) == []


def test_with_enable_statefulset_off_a_statefulset_pod_is_stateless(kube):
    settings = ClusterSettings.load()
    settings.enable_statefulset = False
    settings.save()
    statefulset_create(kube, "db2", replicas=3)
    pod = controller_pod(kube, "db2-0")
    pod_allocate(kube, pod)
    pod_delete(kube, "db2-0")
    controller_pod(kube, "db2-0", not_uid=pod["metadata"]["uid"])
    assert gc.gc_scan(client=kube)["released"] == 1


# ----------------------------------------------------------------------------------------------- full scan


def test_the_full_scan_releases_leaks_and_keeps_live_pods(kube):
    namespace = kube.namespace_name
    live, gone, pending = pod_create(kube, "web-g"), pod_create(kube, "web-h"), pod_create(kube, "web-i")
    live_addresses = pod_allocate(kube, live)
    pod_allocate(kube, gone)
    pod_allocate(kube, pending)
    kube.patch(resources.POD, "web-i", {"status": {"phase": "Pending", "podIPs": None, "podIP": None}},
               namespace=namespace, subresource="status")
    pod_delete(kube, "web-h")
    counts = gc.gc_scan(client=kube)
    assert (counts["released"], counts["kept"]) == (1, 2)
    assert held("web-g", namespace) == live_addresses
    assert held("web-h", namespace) == []
    assert held("web-i", namespace)


def test_a_recreated_stateless_pod_frees_the_old_incarnation_only(kube):
    namespace = kube.namespace_name
    old = pod_create(kube, "web-j")
    old_addresses = pod_allocate(kube, old)
    pod_delete(kube, "web-j")
    new = pod_create(kube, "web-j")
    # the new incarnation is scheduled but its ADD has not run yet: the old addresses are garbage
    assert gc.gc_scan(client=kube)["released"] == 1
    assert held("web-j", namespace) == []
    assert pod_allocate(kube, new) != []
    assert Endpoint.objects.get(namespace=namespace, name="web-j").uid == new["metadata"]["uid"]
    assert old_addresses


def test_a_pod_recreated_between_the_scans_read_and_its_write_keeps_its_address(kube, monkeypatch):
    """The race of issue 7: the scan decides to release the old incarnation; before its write, the pod is
    re-created with the same name and set up. The UID-guarded release under the endpoint lock leaves the new
    incarnation's address alone."""
    namespace = kube.namespace_name
    statefulset_create(kube, "db3", replicas=1)
    old = controller_pod(kube, "db3-0")
    address = pod_allocate(kube, old)
    statefulset_scale(kube, "db3", 0)  # scaled down; the pod's DEL never ran
    pod_gone(kube, "db3-0", old["metadata"]["uid"])
    real_release = gc.ippool_release
    recreated = {}

    def release_after_the_other_writer(**kwargs):
        # the other writer, at the exact point between the decision and the write: scaled up again, the pod is
        # re-created and set up (the allocator re-binds the recorded address to the new UID)
        statefulset_scale(kube, "db3", 1)
        recreated["pod"] = controller_pod(kube, "db3-0", not_uid=old["metadata"]["uid"])
        recreated["addresses"] = pod_allocate(kube, recreated["pod"])
        return real_release(**kwargs)

    monkeypatch.setattr(gc, "ippool_release", release_after_the_other_writer)
    counts = gc.gc_scan(client=kube)
    assert "pod" in recreated, "the scan decided to release"
    assert counts["released"] == 0
    assert recreated["addresses"] == address, "the StatefulSet pod got its own address back"
    assert held("db3-0", namespace) == address
    assert Allocation.objects.get(address=address[0]).pod_uid == recreated["pod"]["metadata"]["uid"]


def test_two_scans_never_run_at_once():
    from spiderweb.controllers.leases import lease_acquire
    from workers.gc import SCAN_LEASE, gc_scan_task

    assert lease_acquire(SCAN_LEASE, holder="another-worker", ttl=60)
    assert gc_scan_task.apply().get() == "another scan is running"


# ------------------------------------------------------------------------------------------ SpiderEndpoint


def test_spiderendpoints_get_spiderpools_lifecycle(kube):
    """Spec §6: finalizer and an ownerReference to the pod (none for StatefulSet pods); gone once released."""
    namespace = kube.namespace_name
    statefulset_create(kube, "db4", replicas=1)
    plain, stateful = pod_create(kube, "web-k"), controller_pod(kube, "db4-0")
    pod_allocate(kube, plain)
    pod_allocate(kube, stateful)
    mirror_status_write(client=kube)
    cr = kube.get(crd.SPIDER_ENDPOINT, "web-k", namespace=namespace)
    assert cr["metadata"]["finalizers"] == [crd.FINALIZER]
    assert cr["metadata"]["ownerReferences"][0]["uid"] == plain["metadata"]["uid"]
    assert not kube.get(crd.SPIDER_ENDPOINT, "db4-0", namespace=namespace)["metadata"].get("ownerReferences")
    pod_delete(kube, "web-k")
    gc.gc_scan(client=kube)
    mirror_status_write(client=kube)
    assert wait_for("the SpiderEndpoint to go", lambda: kube.get(crd.SPIDER_ENDPOINT, "web-k",
                                                                 namespace=namespace) is None, timeout=10)
    assert kube.get(crd.SPIDER_ENDPOINT, "db4-0", namespace=namespace) is not None
