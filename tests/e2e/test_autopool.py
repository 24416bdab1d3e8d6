"""End to end: SpiderSubnet auto pools (spec §4) for every kind of workload, in the lab.

Workloads are applied to the real API server. The application controller (``k8s_watch`` → Celery) sizes their pools,
the mirror publishes them as SpiderIPPools, the fake kubelet runs the pods through Multus, and the agents allocate
from the pools. Subnets and hand-made pools are CRs, written to the database by the admission webhooks. The
database is only read, to check what the portal holds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spiderweb.engine.keys import (
    ANNO_IPPOOL_IP_NUMBER,
    ANNO_IPPOOL_RECLAIM,
    ANNO_MULTUS_NETWORKS,
    ANNO_SUBNET,
    ANNO_SUBNETS,
    APP_API_GROUP,
    APP_KIND,
    APP_NAME,
    APP_NAMESPACE,
    LABEL_INTERFACE,
    LABEL_IP_VERSION,
    LABEL_IPPOOL_RECLAIM,
    LABEL_OWNER_APP_GV,
    LABEL_OWNER_APP_KIND,
    LABEL_OWNER_APP_NAME,
    LABEL_OWNER_APP_NAMESPACE,
    LABEL_OWNER_APP_UID,
    LABEL_OWNER_SUBNET,
)
from spiderweb.engine.ranges import RangeSet
from spiderweb.k8s.crd import GROUP, VERSION
from tests.e2e.fake_kubelet import ANNO_RUN_SECONDS
from tests.e2e.stack import NAD_NAMESPACE, underlay_conflist
from tests.e2e.test_deployment import allocations, deployment, new_namespace, pods_of, running_pods
from tests.mirror.lab import wait_for
from tests.netlab.topology import sh

pytestmark = [pytest.mark.lab, pytest.mark.netns, pytest.mark.slow]

TIMEOUT = 90
# The beat resync (60 s) is what reclaims a third-party controller's pools; its pods' release comes first.
RESYNC_TIMEOUT = 150
# SpiderSubnet name -> (CIDR, ips, gateway). CIDRs of their own: no pool of another e2e module is adopted by them.
SUBNETS = {
    "e2e-sub-web": ("10.88.0.0/16", ["10.88.1.1-10.88.1.40"], "10.88.0.1"),
    "e2e-sub-nic0": ("10.89.0.0/16", ["10.89.1.1-10.89.1.20"], "10.89.0.1"),
    "e2e-sub-nic1": ("10.90.0.0/16", ["10.90.1.1-10.90.1.20"], "10.90.0.1"),
    "e2e-sub-apps": ("10.91.0.0/16", ["10.91.1.1-10.91.1.60"], "10.91.0.1"),
}
SECOND_NAD = "macvlan-second"  # the net1 attachment of the two-NIC case
EXAMPLE = Path(__file__).resolve().parents[1] / "helm" / "examples" / "dual-stack-subnet.yaml"
# The third-party controller: a CRD of our own whose objects own pods (as an OpenKruise CloneSet would).
PODSET_GROUP, PODSET_VERSION, PODSET_PLURAL = "e2e.spiderweb.io", "v1", "podsets"


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def subnets(e2e):
    """The SpiderSubnets, created as kubectl would; ready once the mirror has published their status."""
    for name, (cidr, ips, gateway) in SUBNETS.items():
        e2e.custom.create_cluster_custom_object(GROUP, VERSION, "spidersubnets", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderSubnet", "metadata": {"name": name},
            "spec": {"subnet": cidr, "ips": ips, "gateway": gateway}})
    for name in SUBNETS:
        wait_for(f"status of SpiderSubnet {name}", lambda n=name: subnet_status(e2e, n).get("totalIPCount"), TIMEOUT)
    return SUBNETS


@pytest.fixture(scope="module")
def second_nad(e2e):
    """``kube-system/macvlan-second``: the same macvlan + spiderpool + coordinator chain, attached as net1."""
    first = e2e.custom.get_namespaced_custom_object("k8s.cni.cncf.io", "v1", NAD_NAMESPACE,
                                                    "network-attachment-definitions", "macvlan-underlay")
    socket_path = json.loads(first["spec"]["config"])["plugins"][0]["ipam"]["ipam_unix_socket_path"]
    config = underlay_conflist(socket_path) | {"name": SECOND_NAD}
    e2e.custom.create_namespaced_custom_object("k8s.cni.cncf.io", "v1", NAD_NAMESPACE,
                                               "network-attachment-definitions", {
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": SECOND_NAD, "namespace": NAD_NAMESPACE}, "spec": {"config": json.dumps(config)}})
    return f"{NAD_NAMESPACE}/{SECOND_NAD}"


@pytest.fixture(scope="module", autouse=True)
def podset_crd(e2e):
    """A namespaced kind ``PodSet`` of our own: any object of it may own pods (a third-party controller).

    Made before this module's first test: the controller-manager's garbage collector learns new kinds from
    discovery periodically (every 30 s), and only then does an owner's deletion reach its pods at once."""
    extensions = k8s.ApiextensionsV1Api(e2e.api)
    name = f"{PODSET_PLURAL}.{PODSET_GROUP}"
    extensions.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": name},
        "spec": {"group": PODSET_GROUP, "scope": "Namespaced",
                 "names": {"plural": PODSET_PLURAL, "singular": "podset", "kind": "PodSet"},
                 "versions": [{"name": PODSET_VERSION, "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}})
    wait_for("the PodSet CRD established", lambda: any(
        c.type == "Established" and c.status == "True"
        for c in extensions.read_custom_resource_definition(name).status.conditions or []), TIMEOUT)
    yield "PodSet"
    extensions.delete_custom_resource_definition(name)


# --------------------------------------------------------------------------------------------- helpers


def subnet_status(e2e, name: str) -> dict:
    return e2e.custom.get_cluster_custom_object(GROUP, VERSION, "spidersubnets", name).get("status") or {}


def subnet_free(e2e, name: str) -> int:
    """``totalIPCount - allocatedIPCount`` of the SpiderSubnet (the addresses no pool of it holds), once the status
    the mirror published agrees with the database (it publishes every second: a pool deleted a moment ago may still
    be counted)."""
    from spiderweb.ipam.models import IPPool, Subnet

    def published():
        status = subnet_status(e2e, name)
        free = status["totalIPCount"] - (status.get("allocatedIPCount") or 0)
        subnet = Subnet.objects.get(name=name)
        held = sum(p.total_ranges.intersect(subnet.total_ranges).count()
                   for p in IPPool.objects.filter(owner_subnet=subnet))
        return [free] if free == subnet.total_ranges.count() - held else None

    return wait_for(f"the status of SpiderSubnet {name}", published, TIMEOUT)[0]


def wait_subnet_free(e2e, name: str, free: int) -> None:
    def published():
        status = subnet_status(e2e, name)
        return status["totalIPCount"] - (status.get("allocatedIPCount") or 0) == free

    wait_for(f"SpiderSubnet {name} with {free} free addresses", published, TIMEOUT)


def app_pools(e2e, namespace: str, app: str) -> list[dict]:
    """``kubectl get spiderippool -l ipam.spidernet.io/owner-application-namespace=…,…-name=…``."""
    selector = f"{LABEL_OWNER_APP_NAMESPACE}={namespace},{LABEL_OWNER_APP_NAME}={app}"
    return e2e.custom.list_cluster_custom_object(GROUP, VERSION, "spiderippools", label_selector=selector)["items"]


def pool_ips(pool: dict) -> RangeSet:
    return RangeSet.parse(pool["spec"].get("ips") or [], pool["spec"].get("ipVersion"))


def wait_pool(e2e, namespace: str, app: str, size: int, *, version: int = 4, interface: str = "eth0") -> dict:
    """The application's SpiderIPPool for ``interface`` and IPv``version`` once it holds ``size`` addresses, in its
    spec and in its status (the mirror wrote both)."""

    def ready():
        for pool in app_pools(e2e, namespace, app):
            labels = pool["metadata"]["labels"]
            if (labels.get(LABEL_IP_VERSION), labels.get(LABEL_INTERFACE)) != (f"IPv{version}", interface):
                continue
            if pool_ips(pool).count() == size and (pool.get("status") or {}).get("totalIPCount") == size:
                return pool
        return None

    return wait_for(f"auto pool of {namespace}/{app} ({interface}, IPv{version}) with {size} addresses", ready,
                    TIMEOUT)


def pool_gone(e2e, name: str) -> bool:
    """Neither the SpiderIPPool nor its database row exists."""
    from spiderweb.ipam.models import IPPool

    try:
        e2e.custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", name)
    except ApiException as exc:
        return exc.status == 404 and not IPPool.objects.filter(name=name).exists()
    return False


def wait_running(e2e, namespace: str, app: str, count: int, timeout: float = TIMEOUT) -> list:
    return wait_for(f"{count} running pods of {namespace}/{app}", lambda: running_pods(e2e, namespace, app, count),
                    timeout)


def addresses_from(pods: list, pool: dict) -> list[str]:
    """The pods' addresses of ``pool``'s family: distinct, and every one of them in the pool."""
    version = pool["spec"]["ipVersion"]
    addresses = [ip.ip for p in pods for ip in p.status.pod_ips or [] if (":" in ip.ip) == (version == 6)]
    assert len(addresses) == len(pods) == len(set(addresses)), addresses
    assert all(a in pool_ips(pool) for a in addresses), (addresses, pool["spec"]["ips"])
    return addresses


def sandbox_failures(e2e, namespace: str) -> list:
    """The kubelet's ``FailedCreatePodSandBox`` Warning Events in ``namespace``."""
    return [e for e in e2e.core.list_namespaced_event(namespace).items if e.reason == "FailedCreatePodSandBox"]


def scale(e2e, kind: str, namespace: str, name: str, replicas: int) -> None:
    patch = {"Deployment": e2e.apps.patch_namespaced_deployment_scale,
             "StatefulSet": e2e.apps.patch_namespaced_stateful_set_scale}[kind]
    patch(name, namespace, {"spec": {"replicas": replicas}})


def rollout_done(e2e, namespace: str, name: str, replicas: int) -> bool:
    d = e2e.apps.read_namespaced_deployment(name, namespace)
    s = d.status
    return (s.observed_generation == d.metadata.generation and s.updated_replicas == replicas
            and s.replicas == replicas and s.available_replicas == replicas)


def subnet_template(subnet: str, ip_number: str | None = "+1", **extra: str) -> dict:
    annotations = {ANNO_SUBNET: json.dumps({"ipv4": [subnet]}), **extra}
    if ip_number is not None:
        annotations[ANNO_IPPOOL_IP_NUMBER] = ip_number
    return annotations


def pod_template(name: str, annotations: dict, restart: str = "Always") -> dict:
    return {"metadata": {"labels": {"app": name}, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}],
                     "restartPolicy": restart, "terminationGracePeriodSeconds": 30}}


def released(namespace: str) -> bool:
    return not allocations(endpoint__namespace=namespace)


def finished_pods(e2e, namespace: str, app: str, count: int) -> list | None:
    pods = pods_of(e2e, namespace, app)
    return pods if len(pods) == count and all(p.status.phase == "Succeeded" for p in pods) else None


# --------------------------------------------------------------------------------------------- Deployments


def test_deployment_pool_follows_replicas_and_goes_with_the_deployment(e2e, subnets):
    """2 replicas with ``+1`` → a pool of 3; 10 → 11; 3 → 4 keeping the addresses in use; a rolling update that
    completes with no pod left Pending; delete → the pool is gone and the subnet has all its addresses back."""
    from spiderweb.ipam.models import IPPool

    subnet = "e2e-sub-web"
    namespace = new_namespace(e2e, "e2e-auto")
    free = subnet_free(e2e, subnet)
    uid = e2e.apps.create_namespaced_deployment(namespace, deployment("web", 2, subnet_template(subnet))).metadata.uid

    pool = wait_pool(e2e, namespace, "web", 3)
    name = pool["metadata"]["name"]
    assert name == f"auto4-web-eth0-{uid.rsplit('-', 1)[-1][:5]}"
    labels = pool["metadata"]["labels"]
    assert {k: labels.get(k) for k in (LABEL_OWNER_SUBNET, LABEL_OWNER_APP_GV, LABEL_OWNER_APP_KIND,
                                       LABEL_OWNER_APP_NAMESPACE, LABEL_OWNER_APP_NAME, LABEL_OWNER_APP_UID,
                                       LABEL_INTERFACE, LABEL_IP_VERSION, LABEL_IPPOOL_RECLAIM)} == {
        LABEL_OWNER_SUBNET: subnet, LABEL_OWNER_APP_GV: "apps_v1", LABEL_OWNER_APP_KIND: "Deployment",
        LABEL_OWNER_APP_NAMESPACE: namespace, LABEL_OWNER_APP_NAME: "web", LABEL_OWNER_APP_UID: uid,
        LABEL_INTERFACE: "eth0", LABEL_IP_VERSION: "IPv4", LABEL_IPPOOL_RECLAIM: "true"}
    assert pool["metadata"]["annotations"][ANNO_IPPOOL_IP_NUMBER] == "+1"
    affinity = pool["spec"]["podAffinity"]["matchLabels"]
    assert (affinity[APP_API_GROUP], affinity[APP_KIND], affinity[APP_NAMESPACE], affinity[APP_NAME]) == (
        "apps", "Deployment", namespace, "web")
    assert (pool["spec"]["subnet"], pool["spec"]["gateway"]) == ("10.88.0.0/16", "10.88.0.1")
    assert pool_ips(pool).issubset(RangeSet.parse(SUBNETS[subnet][1]))
    wait_subnet_free(e2e, subnet, free - 3)

    def check(count: int, size: int) -> list:
        current = wait_pool(e2e, namespace, "web", size)
        pods = wait_running(e2e, namespace, "web", count)
        addresses_from(pods, current)
        assert {a[2] for a in allocations(endpoint__namespace=namespace)} == {name}
        return pods

    check(2, 3)
    scale(e2e, "Deployment", namespace, "web", 10)
    check(10, 11)
    wait_subnet_free(e2e, subnet, free - 11)

    scale(e2e, "Deployment", namespace, "web", 3)
    kept = check(3, 4)  # the three pods left keep their addresses: only free ones were dropped
    wait_subnet_free(e2e, subnet, free - 4)

    # A rolling update (maxSurge 1, maxUnavailable 0 of 3): the spare address lets a new pod start before an old
    # one goes, so the rollout completes. With no spare (`+0`) the first new pod would wait for ever. (A new pod may
    # still meet a full pool for a moment, while the old pod it replaces terminates: the kubelet retries it.)
    before = {e.metadata.uid for e in sandbox_failures(e2e, namespace)}
    e2e.apps.patch_namespaced_deployment("web", namespace, {"spec": {"template": {"metadata": {
        "annotations": {"e2e.spiderweb.io/revision": "2"}}}}})
    wait_for("the rolling update", lambda: rollout_done(e2e, namespace, "web", 3), TIMEOUT)
    pods = check(3, 4)
    assert not {p.metadata.uid for p in pods} & {p.metadata.uid for p in kept}, "every pod was replaced"
    assert all(p.status.phase == "Running" for p in pods_of(e2e, namespace, "web")), "no pod is left Pending"
    during = [e.message for e in sandbox_failures(e2e, namespace) if e.metadata.uid not in before]
    assert all("addresses are in use" in m for m in during), "the pool was neither missing nor resized: " + str(during)

    e2e.apps.delete_namespaced_deployment("web", namespace)
    wait_for(f"pods of {namespace}/web gone", lambda: not pods_of(e2e, namespace, "web"), TIMEOUT)
    wait_for(f"auto pool {name} deleted", lambda: pool_gone(e2e, name), TIMEOUT)
    wait_subnet_free(e2e, subnet, free)
    assert released(namespace)
    assert not IPPool.objects.filter(auto_app_uid=uid).exists()
    e2e.core.delete_namespace(namespace)


def test_chart_dual_stack_subnet_example_runs_with_an_auto_pool_per_family(e2e):
    """``helm/…/examples/dual-stack-subnet.yaml`` as shipped: its pods run with an IPv4 and an IPv6 address from
    the Deployment's auto pools (2 replicas, ``+2`` → 4 addresses each), not from the example's hand-made pools."""
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    namespace = new_namespace(e2e, "e2e-example")
    plurals = {"SpiderSubnet": "spidersubnets", "SpiderIPPool": "spiderippools"}
    for doc in docs:
        if doc["kind"] in plurals:
            e2e.custom.create_cluster_custom_object(GROUP, VERSION, plurals[doc["kind"]], doc)
    [workload] = [d for d in docs if d["kind"] == "Deployment"]
    app = workload["metadata"]["name"]
    e2e.apps.create_namespaced_deployment(namespace, workload)

    pool4 = wait_pool(e2e, namespace, app, 4, version=4)
    pool6 = wait_pool(e2e, namespace, app, 4, version=6)
    assert (pool4["metadata"]["labels"][LABEL_OWNER_SUBNET], pool6["metadata"]["labels"][LABEL_OWNER_SUBNET]) == (
        "subnet-demo-v4", "subnet-demo-v6")
    pods = wait_running(e2e, namespace, app, 2)
    addresses_from(pods, pool4)
    addresses_from(pods, pool6)
    hand_made = pool_ips(e2e.custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", "demo-v4-ippool"))
    assert not any(p.status.pod_ip in hand_made for p in pods)
    for pod in pods:  # both addresses are on the pod's eth0
        sandbox = e2e.kubelet.sandboxes[(namespace, pod.metadata.name)]
        [eth0] = json.loads(sh("ip", "-j", "addr", "show", "dev", "eth0", netns=sandbox.netns).stdout)
        assert {ip.ip for ip in pod.status.pod_ips} <= {a["local"] for a in eth0["addr_info"]}

    e2e.apps.delete_namespaced_deployment(app, namespace)
    for pool in (pool4, pool6):
        wait_for(f"auto pool {pool['metadata']['name']} deleted", lambda p=pool: pool_gone(e2e, p["metadata"]["name"]),
                 TIMEOUT)
    assert released(namespace)
    for doc in docs:  # the example's own objects go too (pools before their subnets)
        if doc["kind"] == "SpiderIPPool":
            e2e.custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", doc["metadata"]["name"])
    for doc in docs:
        if doc["kind"] == "SpiderIPPool":
            wait_for(f"pool {doc['metadata']['name']} deleted", lambda d=doc: pool_gone(e2e, d["metadata"]["name"]),
                     TIMEOUT)
    for doc in docs:
        if doc["kind"] == "SpiderSubnet":
            e2e.custom.delete_cluster_custom_object(GROUP, VERSION, "spidersubnets", doc["metadata"]["name"])
    e2e.core.delete_namespace(namespace)


def test_two_nics_get_a_pool_each_from_the_subnets_annotation(e2e, subnets, second_nad):
    """``ipam.spidernet.io/subnets`` with eth0 and net1 (a second Multus attachment): one pool per NIC, from each
    NIC's subnet; each NIC's address is on that NIC in the pod; both pools follow the replicas."""
    namespace = new_namespace(e2e, "e2e-twonic")
    annotations = {
        ANNO_MULTUS_NETWORKS: second_nad,
        ANNO_SUBNETS: json.dumps([{"interface": "eth0", "ipv4": ["e2e-sub-nic0"]},
                                  {"interface": "net1", "ipv4": ["e2e-sub-nic1"]}]),
        ANNO_IPPOOL_IP_NUMBER: "+1",
    }
    e2e.apps.create_namespaced_deployment(namespace, deployment("duo", 1, annotations))

    def check(count: int) -> list:
        eth0 = wait_pool(e2e, namespace, "duo", count + 1, interface="eth0")
        net1 = wait_pool(e2e, namespace, "duo", count + 1, interface="net1")
        assert (eth0["metadata"]["labels"][LABEL_OWNER_SUBNET], net1["metadata"]["labels"][LABEL_OWNER_SUBNET]) == (
            "e2e-sub-nic0", "e2e-sub-nic1")
        pods = wait_running(e2e, namespace, "duo", count)
        addresses_from(pods, eth0)
        for pod in pods:
            status = {n["interface"]: n for n in json.loads(pod.metadata.annotations[
                "k8s.v1.cni.cncf.io/network-status"])}
            assert status["eth0"]["ips"] == [pod.status.pod_ip]
            [address] = status["net1"]["ips"]
            assert address in pool_ips(net1) and status["net1"]["name"] == second_nad
            sandbox = e2e.kubelet.sandboxes[(namespace, pod.metadata.name)]
            [nic] = json.loads(sh("ip", "-j", "-4", "addr", "show", "dev", "net1", netns=sandbox.netns).stdout)
            assert [a["local"] for a in nic["addr_info"]] == [address]
        rows = allocations(endpoint__namespace=namespace)
        assert sorted(r[2] for r in rows) == sorted([eth0["metadata"]["name"], net1["metadata"]["name"]] * count)
        return [eth0, net1]

    check(1)
    scale(e2e, "Deployment", namespace, "duo", 2)
    pools = check(2)

    e2e.apps.delete_namespaced_deployment("duo", namespace)
    for pool in pools:
        wait_for(f"auto pool {pool['metadata']['name']} deleted", lambda p=pool: pool_gone(e2e, p["metadata"]["name"]),
                 TIMEOUT)
    assert released(namespace)
    wait_subnet_free(e2e, "e2e-sub-nic0", 20)
    wait_subnet_free(e2e, "e2e-sub-nic1", 20)
    e2e.core.delete_namespace(namespace)


def test_reclaim_false_pool_outlives_its_deployment_and_is_re_adopted(e2e, subnets):
    """``ippool-reclaim: "false"``: deleting the Deployment releases the pods' addresses but keeps the pool; a new
    Deployment of the same name takes the same pool over (new owner UID) and allocates from it."""
    from spiderweb.ipam.models import IPPool

    subnet = "e2e-sub-apps"
    namespace = new_namespace(e2e, "e2e-keep")
    free = subnet_free(e2e, subnet)
    template = subnet_template(subnet, **{ANNO_IPPOOL_RECLAIM: "false"})
    first = e2e.apps.create_namespaced_deployment(namespace, deployment("keep", 1, template)).metadata.uid
    pool = wait_pool(e2e, namespace, "keep", 2)
    name, ips = pool["metadata"]["name"], pool_ips(pool)
    assert pool["metadata"]["labels"][LABEL_IPPOOL_RECLAIM] == "false"
    wait_running(e2e, namespace, "keep", 1)

    e2e.apps.delete_namespaced_deployment("keep", namespace)
    wait_for(f"pods of {namespace}/keep gone", lambda: not pods_of(e2e, namespace, "keep"), TIMEOUT)
    wait_for(f"allocations of {namespace} released", lambda: released(namespace), TIMEOUT)
    time.sleep(3)  # the reclaim that follows the DELETED event has had its chance to (wrongly) delete the pool
    kept = e2e.custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", name)
    assert pool_ips(kept) == ips and kept["metadata"]["labels"][LABEL_OWNER_APP_UID] == first
    assert subnet_free(e2e, subnet) == free - 2

    second = e2e.apps.create_namespaced_deployment(namespace, deployment("keep", 1, template)).metadata.uid
    adopted = wait_for(f"{name} owned by the new Deployment", lambda: next(
        (p for p in app_pools(e2e, namespace, "keep") if p["metadata"]["labels"][LABEL_OWNER_APP_UID] == second),
        None), TIMEOUT)
    assert adopted["metadata"]["name"] == name and pool_ips(adopted) == ips
    assert [p["metadata"]["name"] for p in app_pools(e2e, namespace, "keep")] == [name], "no second pool was made"
    assert IPPool.objects.get(name=name).auto_app_uid == second
    [pod] = wait_running(e2e, namespace, "keep", 1)
    assert pod.status.pod_ip in ips

    e2e.apps.delete_namespaced_deployment("keep", namespace)
    wait_for(f"allocations of {namespace} released", lambda: released(namespace), TIMEOUT)
    e2e.custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", name)  # the user's to delete
    wait_for(f"{name} deleted", lambda: pool_gone(e2e, name), TIMEOUT)
    wait_subnet_free(e2e, subnet, free)
    e2e.core.delete_namespace(namespace)


# --------------------------------------------------------------------------------------------- other native kinds


def test_statefulset_pods_keep_their_addresses_while_the_pool_follows_replicas(e2e, subnets):
    """A StatefulSet's pool follows its replicas (3 → 2 → 3, ``+1``); a re-created pod keeps its address, and the
    ordinals that stay keep theirs through scale down and up."""
    subnet = "e2e-sub-apps"
    namespace = new_namespace(e2e, "e2e-sts")
    free = subnet_free(e2e, subnet)
    e2e.apps.create_namespaced_stateful_set(namespace, {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": "db"}}, "template": pod_template("db", subnet_template(subnet))}})

    pool = wait_pool(e2e, namespace, "db", 4)
    assert pool["metadata"]["labels"][LABEL_OWNER_APP_KIND] == "StatefulSet"
    pods = wait_running(e2e, namespace, "db", 3)
    addresses_from(pods, pool)
    first = {p.metadata.name: p.status.pod_ip for p in pods}

    # A pod deleted and re-created by the StatefulSet controller (new UID) comes back with its address.
    old = e2e.core.read_namespaced_pod("db-1", namespace).metadata.uid
    e2e.core.delete_namespaced_pod("db-1", namespace)
    pods = wait_for("db-1 re-created and running", lambda: (
        (found := running_pods(e2e, namespace, "db", 3))
        and next(p for p in found if p.metadata.name == "db-1").metadata.uid != old and found), TIMEOUT)
    assert {p.metadata.name: p.status.pod_ip for p in pods} == first

    # Scale down and up: the ordinals that stay keep their addresses; the pool sheds and regains only free ones.
    # (The removed ordinal's address is released on its DEL, so db-2 may come back with another: spec §5.1.)
    scale(e2e, "StatefulSet", namespace, "db", 2)
    pool = wait_pool(e2e, namespace, "db", 3)
    pods = wait_running(e2e, namespace, "db", 2)
    addresses_from(pods, pool)
    kept = {p.metadata.name: p.status.pod_ip for p in pods}
    assert kept == {name: first[name] for name in ("db-0", "db-1")}
    wait_subnet_free(e2e, subnet, free - 3)

    scale(e2e, "StatefulSet", namespace, "db", 3)
    pool = wait_pool(e2e, namespace, "db", 4)
    pods = wait_running(e2e, namespace, "db", 3)
    addresses_from(pods, pool)
    assert {p.metadata.name: p.status.pod_ip for p in pods if p.metadata.name != "db-2"} == kept

    e2e.apps.delete_namespaced_stateful_set("db", namespace)
    wait_for(f"auto pool {pool['metadata']['name']} deleted", lambda: pool_gone(e2e, pool["metadata"]["name"]),
             TIMEOUT)
    assert released(namespace)
    wait_subnet_free(e2e, subnet, free)
    e2e.core.delete_namespace(namespace)


def test_daemonset_pool_is_sized_by_its_scheduled_pods(e2e, subnets):
    """A DaemonSet on two nodes with ``+1``: ``desiredNumberScheduled`` 2 → a pool of 3, one pod per node."""
    namespace = new_namespace(e2e, "e2e-ds")
    free = subnet_free(e2e, "e2e-sub-apps")
    e2e.apps.create_namespaced_daemon_set(namespace, {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent"},
        "spec": {"selector": {"matchLabels": {"app": "node-agent"}},
                 "template": pod_template("node-agent", subnet_template("e2e-sub-apps"))}})

    pool = wait_pool(e2e, namespace, "node-agent", 3)
    assert pool["metadata"]["labels"][LABEL_OWNER_APP_KIND] == "DaemonSet"
    pods = wait_running(e2e, namespace, "node-agent", 2)
    assert sorted(p.spec.node_name for p in pods) == sorted(e2e.topology.nodes)
    addresses_from(pods, pool)

    e2e.apps.delete_namespaced_daemon_set("node-agent", namespace)
    wait_for(f"auto pool {pool['metadata']['name']} deleted", lambda: pool_gone(e2e, pool["metadata"]["name"]),
             TIMEOUT)
    assert released(namespace)
    wait_subnet_free(e2e, "e2e-sub-apps", free)
    e2e.core.delete_namespace(namespace)


def test_job_pool_serves_its_pods_until_the_job_is_deleted(e2e, subnets):
    """A Job (completions 3, parallelism 3, ``+1``) → a pool of 4; its pods run with addresses from it and finish
    (addresses released); the pool stays while the Job exists and goes with it."""
    batch = k8s.BatchV1Api(e2e.api)
    namespace = new_namespace(e2e, "e2e-job")
    free = subnet_free(e2e, "e2e-sub-apps")
    template = pod_template("crunch", subnet_template("e2e-sub-apps", **{ANNO_RUN_SECONDS: "2"}), restart="Never")
    batch.create_namespaced_job(namespace, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "crunch"},
        "spec": {"completions": 3, "parallelism": 3, "template": template}})

    pool = wait_pool(e2e, namespace, "crunch", 4)
    assert pool["metadata"]["labels"][LABEL_OWNER_APP_KIND] == "Job"
    wait_for("the Job complete", lambda: (batch.read_namespaced_job("crunch", namespace).status.succeeded or 0) == 3,
             TIMEOUT)
    pods = finished_pods(e2e, namespace, "crunch", 3)
    assert pods and all(p.status.pod_ip in pool_ips(pool) for p in pods)
    wait_for(f"allocations of {namespace} released", lambda: released(namespace), TIMEOUT)
    assert pool_ips(wait_pool(e2e, namespace, "crunch", 4)) == pool_ips(pool), "the finished Job keeps its pool"

    batch.delete_namespaced_job("crunch", namespace, propagation_policy="Background")
    wait_for(f"auto pool {pool['metadata']['name']} deleted", lambda: pool_gone(e2e, pool["metadata"]["name"]),
             TIMEOUT)
    wait_subnet_free(e2e, "e2e-sub-apps", free)
    e2e.core.delete_namespace(namespace)


def test_cronjob_pool_serves_the_jobs_it_owns(e2e, subnets):
    """A CronJob's pool is made from its job template (no Job yet); a Job it owns (``kubectl create job
    --from=cronjob/…``) runs its pod from that pool, not from a pool of its own; the pool goes with the CronJob."""
    batch = k8s.BatchV1Api(e2e.api)
    namespace = new_namespace(e2e, "e2e-cron")
    free = subnet_free(e2e, "e2e-sub-apps")
    template = pod_template("nightly", subnet_template("e2e-sub-apps", **{ANNO_RUN_SECONDS: "1"}), restart="Never")
    cron = batch.create_namespaced_cron_job(namespace, {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": template}}}})

    pool = wait_pool(e2e, namespace, "nightly", 2)  # neither parallelism nor completions: 1 replica, +1
    assert pool["metadata"]["labels"][LABEL_OWNER_APP_KIND] == "CronJob"
    # What `kubectl create job --from=cronjob/nightly` sends: the template, owned by the CronJob.
    batch.create_namespaced_job(namespace, {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "nightly-manual", "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                                          "uid": cron.metadata.uid, "controller": True}]},
        "spec": {"template": template}})
    [pod] = wait_for("the Job's pod finished", lambda: finished_pods(e2e, namespace, "nightly", 1), TIMEOUT)
    assert pod.status.pod_ip in pool_ips(pool)
    assert [p["metadata"]["name"] for p in app_pools(e2e, namespace, "nightly")] == [pool["metadata"]["name"]]
    assert not app_pools(e2e, namespace, "nightly-manual"), "a CronJob's Job has no pool of its own"
    wait_for(f"allocations of {namespace} released", lambda: released(namespace), TIMEOUT)

    batch.delete_namespaced_cron_job("nightly", namespace, propagation_policy="Background")
    wait_for(f"auto pool {pool['metadata']['name']} deleted", lambda: pool_gone(e2e, pool["metadata"]["name"]),
             TIMEOUT)
    wait_subnet_free(e2e, "e2e-sub-apps", free)
    e2e.core.delete_namespace(namespace)


# --------------------------------------------------------------------------------------------- third party


def test_third_party_controller_pool_is_made_at_add_and_reclaimed_with_its_owner(e2e, subnets, podset_crd):
    """Pods owned by a ``PodSet`` (a CRD of ours, as an OpenKruise CloneSet): the agent's ADD makes the pool, sized
    by ``ippool-ip-number`` alone (``2``), both pods share it; deleting the PodSet reclaims it."""
    from spiderweb.ipam.models import IPPool

    subnet = "e2e-sub-apps"
    namespace = new_namespace(e2e, "e2e-3rd")
    free = subnet_free(e2e, subnet)
    custom = e2e.custom
    owner = custom.create_namespaced_custom_object(PODSET_GROUP, PODSET_VERSION, namespace, PODSET_PLURAL, {
        "apiVersion": f"{PODSET_GROUP}/{PODSET_VERSION}", "kind": podset_crd, "metadata": {"name": "members"}})
    uid = owner["metadata"]["uid"]
    assert not IPPool.objects.filter(auto_app_uid=uid).exists(), "no controller makes it before a pod's ADD"
    for i in range(2):
        e2e.core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"members-{i}", "labels": {"app": "members"},
                         "annotations": subnet_template(subnet, ip_number="2"),
                         "ownerReferences": [{"apiVersion": f"{PODSET_GROUP}/{PODSET_VERSION}", "kind": podset_crd,
                                              "name": "members", "uid": uid, "controller": True}]},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}]}})

    pool = wait_pool(e2e, namespace, "members", 2)
    labels = pool["metadata"]["labels"]
    assert (labels[LABEL_OWNER_APP_GV], labels[LABEL_OWNER_APP_KIND], labels[LABEL_OWNER_APP_UID]) == (
        f"{PODSET_GROUP}_{PODSET_VERSION}", podset_crd, uid)
    assert pool["metadata"]["annotations"][ANNO_IPPOOL_IP_NUMBER] == "2"
    assert pool["spec"]["podAffinity"]["matchLabels"][APP_API_GROUP] == PODSET_GROUP
    pods = wait_running(e2e, namespace, "members", 2)
    addresses_from(pods, pool)
    wait_subnet_free(e2e, subnet, free - 2)

    custom.delete_namespaced_custom_object(PODSET_GROUP, PODSET_VERSION, namespace, PODSET_PLURAL, "members")
    wait_for(f"pods of {namespace}/members gone (garbage collector)", lambda: not pods_of(e2e, namespace, "members"),
             RESYNC_TIMEOUT)
    wait_for(f"auto pool {pool['metadata']['name']} reclaimed", lambda: pool_gone(e2e, pool["metadata"]["name"]),
             RESYNC_TIMEOUT)
    assert released(namespace)
    wait_subnet_free(e2e, subnet, free)
    e2e.core.delete_namespace(namespace)
