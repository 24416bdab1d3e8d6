"""End to end: Deployments → controller-manager → fake kubelet → Multus → macvlan + our IPAM + coordinator → agent
(pod facts from the API server) → portal → PostgreSQL → mirror → SpiderIPPool status and SpiderEndpoints.

Every Kubernetes write here goes through the official client as kubectl would; the database is read only to check
what the portal holds.
"""

from __future__ import annotations

import ipaddress
import json
import uuid

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spiderweb.k8s.client import api_client
from spiderweb.k8s.crd import GROUP, VERSION
from tests.mirror.lab import wait_for
from tests.netlab.topology import sh

pytestmark = [pytest.mark.lab, pytest.mark.netns, pytest.mark.slow]

POOL, NS_POOL, PINNED_POOL = "e2e-deploy", "e2e-ns-default", "e2e-pinned"
POOL_RANGE = ("10.77.10.1", "10.77.10.40")
NS_POOL_RANGE = ("10.77.11.1", "10.77.11.20")
ANNO_POOL = "ipam.spidernet.io/ippool"
ANNO_NS_DEFAULT_V4 = "ipam.spidernet.io/default-ipv4-ippool"
TIMEOUT = 60


# --------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def pools(e2e):
    """Three pools created as kubectl would (admission webhook → database); one is pinned to a node we lack."""
    specs = {
        POOL: {"ips": [f"{POOL_RANGE[0]}-{POOL_RANGE[1]}"]},
        NS_POOL: {"ips": [f"{NS_POOL_RANGE[0]}-{NS_POOL_RANGE[1]}"]},
        PINNED_POOL: {"ips": ["10.77.12.1-10.77.12.10"], "nodeName": ["node-elsewhere"]},
    }
    for name, spec in specs.items():
        e2e.custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": name},
            "spec": {"subnet": "10.77.0.0/16", "gateway": "10.77.0.1", **spec}})
    for name in specs:  # the mirror has taken the pool in once its status carries the counters
        wait_for(f"status counters of {name}", lambda n=name: pool_status(e2e, n).get("totalIPCount"), TIMEOUT)
    return specs


def pool_status(e2e, name: str) -> dict:
    return e2e.custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", name).get("status") or {}


def in_range(address: str, first_last: tuple[str, str]) -> bool:
    first, last = (ipaddress.ip_address(a) for a in first_last)
    return first <= ipaddress.ip_address(address) <= last


def new_namespace(e2e, prefix: str, annotations: dict | None = None) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    e2e.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, annotations=annotations)))
    return name


def deployment(name: str, replicas: int, annotations: dict | None = None) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations or {}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}],
                         "terminationGracePeriodSeconds": 30},
            },
        },
    }


def pods_of(e2e, namespace: str, app: str) -> list:
    return e2e.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items


def running_pods(e2e, namespace: str, app: str, count: int) -> list | None:
    """Exactly ``count`` pods, all Running and Ready with a pod IP, and none terminating; else None."""
    pods = pods_of(e2e, namespace, app)
    if len(pods) != count:
        return None
    for pod in pods:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if pod.metadata.deletion_timestamp or pod.status.phase != "Running" or not ready or not pod.status.pod_ip:
            return None
    return pods


def allocations(**filters) -> list[tuple[str, str, str, str]]:
    """(pod UID, address, pool, endpoint name) of every live allocation matching ``filters``."""
    from spiderweb.ipam.models import Allocation

    return sorted(Allocation.objects.filter(**filters).values_list("pod_uid", "address", "pool__name",
                                                                    "endpoint__name"))


def spider_endpoints(e2e, namespace: str) -> dict[str, dict]:
    """``kubectl get spiderendpoints -n <namespace>``, by name."""
    items = e2e.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "spiderendpoints")["items"]
    return {item["metadata"]["name"]: item for item in items}


def endpoints_match(e2e, namespace: str, pods: list, pool: str) -> bool:
    """One SpiderEndpoint per pod and no other, each naming the pod's UID, node, address and pool."""
    found = spider_endpoints(e2e, namespace)
    if set(found) != {p.metadata.name for p in pods}:
        return False
    for pod in pods:
        current = (found[pod.metadata.name].get("status") or {}).get("current") or {}
        nics = current.get("ips") or []
        if (current.get("uid") != pod.metadata.uid or current.get("node") != pod.spec.node_name or len(nics) != 1
                or nics[0].get("ipv4") != f"{pod.status.pod_ip}/16" or nics[0].get("ipv4Pool") != pool):
            return False
    return True


def check_running(e2e, namespace: str, app: str, count: int, pool: str, first_last: tuple[str, str]) -> list:
    """The pods run with distinct addresses from ``pool``; the portal, the SpiderEndpoints and the pool agree."""
    pods = wait_for(f"{count} running pods of {namespace}/{app}", lambda: running_pods(e2e, namespace, app, count),
                    TIMEOUT)
    addresses = [p.status.pod_ip for p in pods]
    assert len(set(addresses)) == count, addresses
    assert all(in_range(a, first_last) for a in addresses), addresses
    assert all([ip.ip for ip in p.status.pod_ips] == [p.status.pod_ip] for p in pods)
    for pod in pods:
        # Multus did the ADD: it recorded the cluster network (our NAD) and its address on the pod
        [network] = json.loads(pod.metadata.annotations["k8s.v1.cni.cncf.io/network-status"])
        assert (network["name"], network["interface"], network["ips"], network["default"]) == (
            "kube-system/macvlan-underlay", "eth0", [pod.status.pod_ip], True)
        # and the address is really on the pod's eth0, in the netns the kubelet made for it
        sandbox = e2e.kubelet.sandboxes[(namespace, pod.metadata.name)]
        [eth0] = json.loads(sh("ip", "-j", "-4", "addr", "show", "dev", "eth0", netns=sandbox.netns).stdout)
        assert [a["local"] for a in eth0["addr_info"]] == [pod.status.pod_ip]
    expected = sorted((p.metadata.uid, p.status.pod_ip, pool, p.metadata.name) for p in pods)
    assert allocations(endpoint__namespace=namespace) == expected
    wait_for(f"SpiderEndpoints of {namespace}", lambda: endpoints_match(e2e, namespace, pods, pool), TIMEOUT)
    wait_for(f"{pool} allocatedIPCount == {count}",
             lambda: pool_status(e2e, pool).get("allocatedIPCount") == len(allocations(pool__name=pool)) == count,
             TIMEOUT)
    return pods


def scale(e2e, namespace: str, name: str, replicas: int) -> None:
    e2e.apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})


def delete_and_check_released(e2e, namespace: str, name: str, pool: str) -> None:
    e2e.apps.delete_namespaced_deployment(name, namespace, propagation_policy="Foreground")
    wait_for(f"pods of {namespace}/{name} gone", lambda: not pods_of(e2e, namespace, name), TIMEOUT)
    wait_for(f"allocations of {namespace} released", lambda: not allocations(endpoint__namespace=namespace), TIMEOUT)
    wait_for(f"SpiderEndpoints of {namespace} gone", lambda: not spider_endpoints(e2e, namespace), TIMEOUT)
    wait_for(f"{pool} allocatedIPCount back to 0", lambda: pool_status(e2e, pool).get("allocatedIPCount") == 0,
             TIMEOUT)
    assert pool_status(e2e, pool).get("allocatedIPs") is None
    assert not [k for k in e2e.kubelet.sandboxes if k[0] == namespace], "every sandbox torn down"


# --------------------------------------------------------------------------------------------- tests


def test_nodes_are_ready_with_lease_heartbeats_and_the_agent_identity_is_least_privilege(e2e):
    leases = k8s.CoordinationV1Api(e2e.api)
    for name, node in e2e.topology.nodes.items():
        obj = e2e.core.read_node(name)
        assert [(c.type, c.status) for c in obj.status.conditions] == [("Ready", "True")]
        assert obj.status.allocatable["pods"] == "110"
        assert {(a.type, a.address) for a in obj.status.addresses} >= {("InternalIP", node.ipv4)}
        lease = leases.read_namespaced_lease(name, "kube-node-lease")
        assert lease.spec.holder_identity == name and lease.spec.renew_time is not None
    # The agents read the API server as CN=spiderweb-agent with the chart's agent ClusterRole: reads, no writes.
    with api_client(str(e2e.agent_kubeconfig)) as agent_api:
        agent = k8s.CoreV1Api(agent_api)
        assert agent.list_pod_for_all_namespaces(limit=1) is not None
        for forbidden in (lambda: agent.list_namespaced_secret("kube-system"),
                          lambda: agent.delete_namespaced_pod("any", "default")):
            with pytest.raises(ApiException) as refused:
                forbidden()
            assert refused.value.status == 403


def test_deployment_gets_addresses_from_its_annotated_pool_through_scale_and_delete(e2e, pools):
    from spiderweb.ipam.models import Endpoint

    namespace = new_namespace(e2e, "e2e-web")
    annotation = {ANNO_POOL: json.dumps({"ipv4": [POOL]})}
    e2e.apps.create_namespaced_deployment(namespace, deployment("web", 3, annotation))

    pods = check_running(e2e, namespace, "web", 3, POOL, POOL_RANGE)
    # The agent's pod facts came from the API server: the top controller (Pod → ReplicaSet → Deployment) is known.
    owners = set(Endpoint.objects.filter(namespace=namespace).values_list("owner_kind", "owner_name", "node"))
    assert owners == {("Deployment", "web", p.spec.node_name) for p in pods}
    endpoint = spider_endpoints(e2e, namespace)[pods[0].metadata.name]["status"]
    assert (endpoint["ownerControllerType"], endpoint["ownerControllerName"]) == ("Deployment", "web")
    assert endpoint["current"]["ips"][0]["ipv4Gateway"] == "10.77.0.1"

    scale(e2e, namespace, "web", 5)
    pods = check_running(e2e, namespace, "web", 5, POOL, POOL_RANGE)
    assert {p.spec.node_name for p in pods} == {"node-a", "node-b"}, "bound round-robin over both nodes"

    scale(e2e, namespace, "web", 2)
    kept = check_running(e2e, namespace, "web", 2, POOL, POOL_RANGE)
    assert {p.metadata.uid for p in kept} <= {p.metadata.uid for p in pods}, "scale-down keeps two of the five"

    delete_and_check_released(e2e, namespace, "web", POOL)
    e2e.core.delete_namespace(namespace)


def test_namespace_default_pool_annotation(e2e, pools):
    namespace = new_namespace(e2e, "e2e-nsdef", {ANNO_NS_DEFAULT_V4: json.dumps([NS_POOL])})
    e2e.apps.create_namespaced_deployment(namespace, deployment("api", 2))  # no pool annotation on the pods

    check_running(e2e, namespace, "api", 2, NS_POOL, NS_POOL_RANGE)
    assert not allocations(endpoint__namespace=namespace, pool__name=POOL)

    delete_and_check_released(e2e, namespace, "api", NS_POOL)
    e2e.core.delete_namespace(namespace)


def test_pool_without_affinity_for_the_pod_fails_clearly_and_allocates_nothing(e2e, pools):
    namespace = new_namespace(e2e, "e2e-pinned")
    pod = e2e.core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "annotations": {ANNO_POOL: json.dumps({"ipv4": [PINNED_POOL]})}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}]}})
    uid = pod.metadata.uid

    def sandbox_failures():
        events = e2e.core.list_namespaced_event(namespace, field_selector=f"involvedObject.uid={uid}").items
        return [e for e in events if e.type == "Warning" and e.reason == "FailedCreatePodSandBox"]

    [event, *_] = wait_for("a FailedCreatePodSandBox event", sandbox_failures, TIMEOUT)
    # The CNI error names the pool and says why it cannot serve this pod.
    assert PINNED_POOL in event.message, event.message
    node = e2e.core.read_namespaced_pod("stray", namespace).spec.node_name
    assert f"node '{node}' not in nodeName ['node-elsewhere']" in event.message, event.message
    assert event.source.component == "kubelet" and event.source.host == node

    # Not an address: the pod stays Pending (the kubelet keeps retrying), nothing is allocated or published.
    stray = e2e.core.read_namespaced_pod("stray", namespace)
    assert stray.status.phase == "Pending" and not stray.status.pod_ip
    assert allocations(pod_uid=uid) == []
    assert spider_endpoints(e2e, namespace) == {}
    assert pool_status(e2e, PINNED_POOL).get("allocatedIPCount") == 0

    e2e.core.delete_namespaced_pod("stray", namespace)

    def gone():
        try:
            e2e.core.read_namespaced_pod("stray", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for("the stray pod removed by the kubelet", gone, TIMEOUT)
    assert allocations(pod_uid=uid) == []
    e2e.core.delete_namespace(namespace)


def test_node_leases_are_renewed(e2e):
    """Kept last: by now the heartbeat has run at least once (when run alone, it waits for one)."""
    leases = k8s.CoordinationV1Api(e2e.api)

    def renewed():
        for name in e2e.topology.nodes:
            created = e2e.core.read_node(name).metadata.creation_timestamp
            renew = leases.read_namespaced_lease(name, "kube-node-lease").spec.renew_time
            if (renew - created).total_seconds() < e2e.kubelet.lease_interval / 2:
                return False
        return True

    wait_for("a lease renewal of every node", renewed, e2e.kubelet.lease_interval + 10)
