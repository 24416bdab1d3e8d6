"""Multi-NIC pods through Multus (issue 9): SpiderMultusConfigs applied to the API server become NetworkAttachment-
Definitions (written by the controller in the worker, spec §10.3), which the real Multus thin plugin runs with the
real macvlan/bridge/host-local plugins, our IPAM and our coordinator, in real network namespaces.

Every node gets two more underlay segments (``eth1`` 10.78.0.0/16 and ``eth2`` 10.79.0.0/16, the switch holding
each gateway). The cluster network stays the package's macvlan NAD on ``eth0``; secondary NICs come from the
SMCs' NADs. The switch and the nodes run with ``rp_filter=1``, so a reply that leaves by another NIC than its
request came in on is dropped: a ping through every NIC proves the coordinator's per-NIC policy routing.
"""

from __future__ import annotations

import ipaddress
import json
import uuid

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spiderweb.k8s.crd import GROUP, VERSION
from tests.lab.controlplane import POD_CIDR, SERVICE_CIDR
from tests.mirror.lab import wait_for
from tests.netlab.topology import GATEWAY4, sh

pytestmark = [pytest.mark.lab, pytest.mark.netns, pytest.mark.slow]

TIMEOUT = 60
NAD_GROUP, NAD_VERSION, NADS = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"
GW_ETH1, GW_ETH2 = "10.78.0.1", "10.79.0.1"
POOLS = {  # name: (subnet, range, gateway)
    "mn-eth0": ("10.77.0.0/16", "10.77.30.1-10.77.30.30", GATEWAY4),
    "mn-eth1": ("10.78.0.0/16", "10.78.30.1-10.78.30.30", GW_ETH1),
    "mn-eth2": ("10.79.0.0/16", "10.79.30.1-10.79.30.30", GW_ETH2),
}
# The API server fills the CRD's defaults into the SMC (coordinator hostRuleTable 500, txQueueLen 0), and every
# number that is set is written into the NAD (spec A8).
COORDINATOR = '{"type":"coordinator","mode":"auto","tunePodRoutes":true,"txQueueLen":0,"podRPFilter":0,' \
              '"hostRuleTable":500}'


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def segments(e2e):
    """eth1 and eth2 on every node; rp_filter=1 on the switch and the nodes (strict: asymmetric replies drop)."""
    gateways = {"eth1": e2e.topology.segment_add("eth1", "10.78"), "eth2": e2e.topology.segment_add("eth2", "10.79")}
    netns = [e2e.topology.switch, *(n.netns for n in e2e.topology.nodes.values())]
    for name in netns:
        for key in ("all", "default"):
            sh("sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=1", netns=name)
        for link in json.loads(sh("ip", "-j", "link", "show", netns=name).stdout):
            sh("sysctl", "-qw", f"net.ipv4.conf.{link['ifname']}.rp_filter=1", netns=name, check=False)
    yield gateways
    for name in netns:
        for key in ("all", "default"):
            sh("sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0", netns=name)
    e2e.topology.segment_remove("eth1")
    e2e.topology.segment_remove("eth2")


@pytest.fixture(scope="module")
def pools(e2e):
    """One pool per segment, created as kubectl would (the admission webhook takes them in)."""
    for name, (subnet, ips, gateway) in POOLS.items():
        e2e.custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": name},
            "spec": {"subnet": subnet, "ips": [ips], "gateway": gateway}})
    yield POOLS
    for name in POOLS:
        try:
            e2e.custom.delete_cluster_custom_object(GROUP, VERSION, "spiderippools", name)
        except ApiException:
            pass


SMCS = {  # name: (spec, annotations)
    "net1-eth1": ({"cniType": "macvlan", "macvlan": {"master": ["eth1"], "ippools": {"ipv4": ["mn-eth1"]}}}, {}),
    "net2-eth2": ({"cniType": "macvlan", "macvlan": {"master": ["eth2"], "ippools": {"ipv4": ["mn-eth2"]}}}, {}),
    "net1-default-route": ({"cniType": "macvlan", "macvlan": {"master": ["eth1"]},
                            "coordinator": {"podDefaultRouteNIC": "net1", "tunePodRoutes": True}},
                           {"multus.spidernet.io/cni-version": "1.0.0"}),
    # VLAN 100 on eth2: the NAD's logic is checked; this kernel has no 8021q, so running it must fail clearly.
    "vlan100-eth2": ({"cniType": "macvlan", "macvlan": {"master": ["eth2"], "vlanID": 100}},
                     {"multus.spidernet.io/cr-name": "eth2-vlan100"}),
}


@pytest.fixture(scope="module")
def networks(e2e, segments, pools):
    """A namespace with the SMCs applied as kubectl would; their NADs are written by the controller (watcher →
    Celery worker), never by this test."""
    namespace = f"multus-{uuid.uuid4().hex[:5]}"
    e2e.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    for name, (spec, notes) in SMCS.items():
        e2e.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "spidermultusconfigs", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderMultusConfig",
            "metadata": {"name": name, "annotations": notes}, "spec": spec})
    for name, (_, notes) in SMCS.items():
        target = notes.get("multus.spidernet.io/cr-name", name)
        wait_for(f"the controller to write NAD {target}", lambda t=target: nad_get(e2e, namespace, t), TIMEOUT)
    yield namespace
    for pod in e2e.core.list_namespaced_pod(namespace).items:
        e2e.core.delete_namespaced_pod(pod.metadata.name, namespace)
    wait_for("the pods of the namespace to be gone", lambda: not e2e.core.list_namespaced_pod(namespace).items,
             TIMEOUT)
    e2e.core.delete_namespace(namespace)


# --------------------------------------------------------------------------------------------- helpers


def nad_get(e2e, namespace: str, name: str) -> dict | None:
    try:
        return e2e.custom.get_namespaced_custom_object(NAD_GROUP, NAD_VERSION, namespace, NADS, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def pod_start(e2e, namespace: str, name: str, annotations: dict, *, node: str | None = None):
    spec = {"containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}]}
    if node:
        spec["nodeName"] = node
    e2e.core.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod",
                                               "metadata": {"name": name, "annotations": annotations}, "spec": spec})

    def running():
        pod = e2e.core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase == "Running" and (namespace, name) in e2e.kubelet.sandboxes else None

    return wait_for(f"pod {namespace}/{name} to run", running, TIMEOUT)


def pod_delete(e2e, namespace: str, name: str) -> None:
    e2e.core.delete_namespaced_pod(name, namespace)

    def gone():
        try:
            e2e.core.read_namespaced_pod(name, namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(f"pod {namespace}/{name} to be deleted", gone, TIMEOUT)


def ip_json(netns: str, *args: str) -> list:
    out = sh("ip", "-j", *args, netns=netns).stdout.strip()
    return json.loads(out) if out else []


def addresses(netns: str, device: str) -> list[str]:
    return [a["local"] for link in ip_json(netns, "-4", "addr", "show", "dev", device)
            for a in link.get("addr_info", [])]


def ping(netns: str, address: str, *, source: str | None = None) -> bool:
    extra = ["-I", source] if source else []
    return sh("ping", "-c", "1", "-W", "2", *extra, address, netns=netns, check=False).returncode == 0


def in_pool(address: str, pool: str) -> bool:
    first, last = (ipaddress.ip_address(a) for a in POOLS[pool][1].split("-"))
    return first <= ipaddress.ip_address(address) <= last


def rule_tables(netns: str, source: str) -> list[str]:
    return [str(r["table"]) for r in ip_json(netns, "rule", "show") if r.get("src") == source]


def defaults(netns: str, table: str = "main") -> list[tuple[str, str]]:
    return [(r.get("gateway", ""), r["dev"]) for r in ip_json(netns, "-4", "route", "show", "table", table)
            if r["dst"] == "default"]


def route_dev(netns: str, destination: str) -> str:
    return ip_json(netns, "route", "get", destination)[0]["dev"]


def host_side(e2e, node: str) -> dict:
    """What the coordinator left on the node: host veths and the routes of its host rule table (500)."""
    netns = e2e.topology.nodes[node].netns
    links = [link["ifname"] for link in ip_json(netns, "link", "show") if link["ifname"].startswith("veth")]
    routes = [r["dst"] for r in ip_json(netns, "-4", "route", "show", "table", "500")]
    return {"veths": links, "table500": routes}


# --------------------------------------------------------------------------------------------- tests


def test_smcs_become_nads_that_match_the_spec_byte_for_byte(e2e, networks):
    configs = {name: nad_get(e2e, networks, SMCS[name][1].get("multus.spidernet.io/cr-name", name))
               for name in SMCS}
    assert configs["net1-eth1"]["spec"]["config"] == (
        '{"cniVersion":"0.3.1","name":"net1-eth1","plugins":[{"type":"macvlan","master":"eth1","mode":"bridge",'
        '"mtu":0,"ipam":{"type":"spiderpool","default_ipv4_ippool":["mn-eth1"]}},' + COORDINATOR + ']}')
    assert configs["vlan100-eth2"]["spec"]["config"] == (
        '{"cniVersion":"0.3.1","name":"eth2-vlan100","plugins":[{"type":"ifacer","interfaces":["eth2"],'
        '"vlanID":100},{"type":"macvlan","master":"eth2.100","mode":"bridge","mtu":0,"ipam":{"type":"spiderpool"}},'
        + COORDINATOR + ']}')
    assert configs["net1-default-route"]["spec"]["config"] == (
        '{"cniVersion":"1.0.0","name":"net1-default-route","plugins":[{"type":"macvlan","master":"eth1",'
        '"mode":"bridge","mtu":0,"ipam":{"type":"spiderpool"}},{"type":"coordinator","mode":"auto",'
        '"podDefaultRouteNic":"net1","tunePodRoutes":true,"txQueueLen":0,"podRPFilter":0,"hostRuleTable":500}]}')
    for name, nad in configs.items():
        smc = e2e.custom.get_namespaced_custom_object(GROUP, VERSION, networks, "spidermultusconfigs", name)
        [owner] = nad["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "SpiderMultusConfig", name, smc["metadata"]["uid"], True)


def test_a_two_nic_pod_gets_an_address_per_pool_symmetric_routes_and_del_removes_everything(e2e, networks):
    from spiderweb.ipam.models import Allocation

    pod = pod_start(e2e, networks, "two-nics", {
        "k8s.v1.cni.cncf.io/networks": f"{networks}/net1-eth1",
        "ipam.spidernet.io/ippools": json.dumps([{"interface": "eth0", "ipv4": ["mn-eth0"]},
                                                 {"interface": "net1", "ipv4": ["mn-eth1"]}])})
    sandbox = e2e.kubelet.sandboxes[(networks, "two-nics")]
    netns, node = sandbox.netns, pod.spec.node_name
    [eth0] = addresses(netns, "eth0")
    [net1] = addresses(netns, "net1")
    assert in_pool(eth0, "mn-eth0") and in_pool(net1, "mn-eth1")
    rows = {(r.interface, r.address, r.pool.name) for r in Allocation.objects.filter(pod_uid=pod.metadata.uid)}
    assert rows == {("eth0", eth0, "mn-eth0"), ("net1", net1, "mn-eth1")}
    status = json.loads(pod.metadata.annotations["k8s.v1.cni.cncf.io/network-status"])
    assert [(s["interface"], s["ips"]) for s in status] == [("eth0", [eth0]), ("net1", [net1])]

    # The coordinator: eth0 keeps the default route; net1's routes live in table 101, chosen by its source address;
    # the cluster's pod and service CIDRs (discovered by the coordinator controller) go to the node through veth0.
    assert defaults(netns) == [(GATEWAY4, "eth0")]
    assert rule_tables(netns, net1) == ["101"] and defaults(netns, "101") == [(GW_ETH1, "net1")]
    assert route_dev(netns, "10.0.0.10") == route_dev(netns, "10.244.7.7") == "veth0"
    assert {POD_CIDR, SERVICE_CIDR, "169.254.0.0/16"} <= {r["dst"] for r in ip_json(netns, "-4", "route")}

    # Replies leave by the NIC their request came in on: with rp_filter=1 on the switch a reply from net1's address
    # sent through eth0 would be dropped. The pod reaches its node (through veth0) and both gateways.
    assert ping(e2e.topology.switch, eth0) and ping(e2e.topology.switch, net1)
    assert ping(netns, e2e.topology.nodes[node].ipv4) and ping(netns, GW_ETH1, source=net1)
    before = host_side(e2e, node)
    host_veth = f"veth{sandbox.container_id[:11]}"
    assert host_veth in before["veths"] and {f"{eth0}", f"{net1}"} <= set(before["table500"])

    pod_delete(e2e, networks, "two-nics")
    after = host_side(e2e, node)
    assert host_veth not in after["veths"] and not {eth0, net1} & set(after["table500"])
    assert not Allocation.objects.filter(pod_uid=pod.metadata.uid).exists()
    assert sandbox.netns not in sh("ip", "netns", "list").stdout


def test_pod_default_route_nic_in_the_nad_moves_the_default_route(e2e, networks):
    pod_start(e2e, networks, "default-net1", {
        "k8s.v1.cni.cncf.io/networks": f"{networks}/net1-default-route",
        "ipam.spidernet.io/ippools": json.dumps([{"interface": "eth0", "ipv4": ["mn-eth0"]},
                                                 {"interface": "net1", "ipv4": ["mn-eth1"]}])})
    netns = e2e.kubelet.sandboxes[(networks, "default-net1")].netns
    [eth0] = addresses(netns, "eth0")
    [net1] = addresses(netns, "net1")
    assert defaults(netns) == [(GW_ETH1, "net1")]
    assert rule_tables(netns, eth0) == ["101"] and defaults(netns, "101") == [(GATEWAY4, "eth0")]
    assert route_dev(netns, "192.0.2.1") == "net1"
    assert ping(e2e.topology.switch, eth0) and ping(e2e.topology.switch, net1)
    pod_delete(e2e, networks, "default-net1")


def test_three_nics_with_names_of_their_own_answer_through_every_nic(e2e, networks):
    pod = pod_start(e2e, networks, "three-nics", {
        "k8s.v1.cni.cncf.io/networks": json.dumps([
            {"name": "net1-eth1", "namespace": networks, "interface": "data1"},
            {"name": "net2-eth2", "namespace": networks, "interface": "storage0"}]),
        "ipam.spidernet.io/ippools": json.dumps([{"interface": "eth0", "ipv4": ["mn-eth0"]},
                                                 {"interface": "data1", "ipv4": ["mn-eth1"]},
                                                 {"interface": "storage0", "ipv4": ["mn-eth2"]}])})
    netns = e2e.kubelet.sandboxes[(networks, "three-nics")].netns
    nics = {nic: addresses(netns, nic)[0] for nic in ("eth0", "data1", "storage0")}
    assert in_pool(nics["eth0"], "mn-eth0") and in_pool(nics["data1"], "mn-eth1")
    assert in_pool(nics["storage0"], "mn-eth2")
    assert rule_tables(netns, nics["data1"]) == ["101"] and rule_tables(netns, nics["storage0"]) == ["102"]
    assert defaults(netns, "101") == [(GW_ETH1, "data1")] and defaults(netns, "102") == [(GW_ETH2, "storage0")]
    for address in nics.values():
        assert ping(e2e.topology.switch, address), f"no answer from {address} with rp_filter=1 on the switch"
    assert ping(netns, e2e.topology.nodes[pod.spec.node_name].ipv4)
    pod_delete(e2e, networks, "three-nics")


def test_overlay_mode_a_foreign_default_network_and_an_smc_secondary(e2e, networks, workdir):
    """The pod's first NIC is the bridge plugin with host-local (a cluster network that is not ours); net1 comes from
    the SMC. The coordinator runs in overlay mode: the node and the Service range are reached through eth0 by its
    hijack routes, net1 answers from its own table."""
    node = e2e.topology.nodes["node-a"]
    overlay = {"cniVersion": "1.0.0", "name": "bridge-net", "plugins": [{
        "type": "bridge", "bridge": "cni0", "isDefaultGateway": True,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]],
                 "dataDir": str(workdir / "host-local")}}]}
    e2e.custom.create_namespaced_custom_object(NAD_GROUP, NAD_VERSION, networks, NADS, {
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "bridge-net"}, "spec": {"config": json.dumps(overlay)}})
    sh("ip", "addr", "add", "10.0.0.10/32", "dev", "lo", netns=node.netns)  # a Service IP the node answers
    try:
        pod_start(e2e, networks, "overlay", {
            "v1.multus-cni.io/default-network": f"{networks}/bridge-net",
            "k8s.v1.cni.cncf.io/networks": f"{networks}/net1-eth1",
            "ipam.spidernet.io/ippool": json.dumps({"ipv4": ["mn-eth1"]})}, node="node-a")
        netns = e2e.kubelet.sandboxes[(networks, "overlay")].netns
        [eth0] = addresses(netns, "eth0")
        [net1] = addresses(netns, "net1")
        assert ipaddress.ip_address(eth0) in ipaddress.ip_network("10.244.1.0/24") and in_pool(net1, "mn-eth1")
        assert "veth0" not in [link["ifname"] for link in ip_json(netns, "link", "show")], "overlay: no veth0"
        hijacked = {r["dst"]: (r.get("gateway"), r["dev"]) for r in ip_json(netns, "-4", "route")}
        assert hijacked[SERVICE_CIDR] == hijacked[POD_CIDR] == ("10.244.1.1", "eth0")
        assert defaults(netns) == [("10.244.1.1", "eth0")]
        assert rule_tables(netns, net1) == ["101"] and defaults(netns, "101") == [(GW_ETH1, "net1")]
        assert ping(netns, "10.0.0.10") and ping(netns, node.ipv4)
        assert ping(e2e.topology.switch, net1)
        pod_delete(e2e, networks, "overlay")
    finally:
        sh("ip", "addr", "del", "10.0.0.10/32", "dev", "lo", netns=node.netns, check=False)


def test_the_vlan_nad_runs_ifacer_first_which_says_why_this_kernel_cannot(e2e, networks):
    """Logic only: the kernel of this host has no 8021q module, so ifacer (first in the NAD) must refuse clearly;
    the pod stays Pending with the reason in its FailedCreatePodSandBox event, and nothing stays allocated."""
    from spiderweb.ipam.models import Allocation

    e2e.core.create_namespaced_pod(networks, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": "vlan", "annotations": {
                "k8s.v1.cni.cncf.io/networks": f"{networks}/eth2-vlan100",
                "ipam.spidernet.io/ippools": json.dumps([{"interface": "eth0", "ipv4": ["mn-eth0"]},
                                                         {"interface": "net1", "ipv4": ["mn-eth2"]}])}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}]}})

    def failed():
        events = e2e.core.list_namespaced_event(networks, field_selector="involvedObject.name=vlan").items
        return [e for e in events if e.reason == "FailedCreatePodSandBox"]

    [event, *_] = wait_for("the pod's FailedCreatePodSandBox event", failed, TIMEOUT)
    assert 'plugin type="ifacer" failed (add): ifacer failed to create VLAN eth2.100 (id 100) on eth2: ' \
           "Operation not supported (the node's kernel lacks the 8021q or bonding module?)" in event.message
    pod = e2e.core.read_namespaced_pod("vlan", networks)
    assert pod.status.phase == "Pending"
    pod_delete(e2e, networks, "vlan")
    # The failed sandboxes never reached a CNI DEL of their own: the IP GC releases what they held once the pod is gone.
    wait_for("the IP GC to release the failed pod's addresses",
             lambda: not Allocation.objects.filter(pod_uid=pod.metadata.uid).exists(), TIMEOUT)
