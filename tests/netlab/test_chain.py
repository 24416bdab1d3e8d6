"""The whole CNI path on a real kernel: macvlan → our IPAM → agent → portal → PostgreSQL, coordinator chained.

Invoked exactly as a container runtime invokes a conflist (tests/netlab/runtime.py), in two nodes joined by a
bridge that plays the underlay switch.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.netlab.conftest import conflist
from tests.netlab.runtime import CniFailure, pod_args
from tests.netlab.topology import GATEWAY4, GATEWAY6, sh

pytestmark = [pytest.mark.netns, pytest.mark.slow]
VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


class Pod:
    """A pod sandbox: a netns plus the identity the runtime passes in CNI_ARGS."""

    def __init__(self, world, runtime, node: str, name: str | None = None, version: str = "1.0.0", **conf):
        self.world, self.runtime, self.node = world, runtime, node
        self.name = name or f"pod-{uuid.uuid4().hex[:6]}"
        self.uid = str(uuid.uuid4())
        self.container_id = uuid.uuid4().hex
        self.netns = world["topology"].pod_netns(self.name)
        self.netns_path = f"/var/run/netns/{self.netns}"
        self.conflist = conflist(version, world["agents"][node].socket, **conf)
        self.result = None

    @property
    def args(self) -> str:
        return pod_args("default", self.name, self.uid, self.container_id)

    def add(self) -> dict:
        self.result = self.runtime.add(self.conflist, container_id=self.container_id, netns=self.netns_path,
                                       ifname="eth0", args=self.args)
        return self.result

    def check(self) -> None:
        self.runtime.check(self.conflist, container_id=self.container_id, netns=self.netns_path, ifname="eth0",
                           args=self.args, cached=self.result)

    def delete(self) -> None:
        self.runtime.delete(self.conflist, container_id=self.container_id, netns=self.netns_path, ifname="eth0",
                            args=self.args, cached=self.result)

    def ip(self, *args: str) -> list | dict:
        return json.loads(sh("ip", "-j", *args, netns=self.netns).stdout or "[]")

    def ping(self, address: str) -> bool:
        six = ["-6"] if ":" in address else []
        done = sh("ping", *six, "-c", "2", "-W", "2", address, netns=self.netns, check=False)
        if done.returncode != 0:
            print(f"ping {address} from {self.name} failed: {done.stdout} {done.stderr}")
            for what in (["addr"], ["route"], ["-6", "route"], ["rule"], ["neigh"]):
                print(" ".join(what), sh("ip", *what, netns=self.netns, check=False).stdout)
        return done.returncode == 0

    def addresses(self, family: str) -> list[str]:
        cidrs = [ip["address"] for ip in self.result["ips"]]
        return [c.split("/")[0] for c in cidrs if (":" in c) == (family == "6")]


def _db_allocations(pod):
    from spiderweb.ipam.models import Allocation

    return sorted(Allocation.objects.filter(pod_uid=pod.uid).values_list("address", "pool__name"))


def _node_state(world, node: str) -> dict:
    netns = world["topology"].nodes[node].netns
    links = [link["ifname"] for link in json.loads(sh("ip", "-j", "link", netns=netns).stdout)]
    table500 = sh("ip", "route", "show", "table", "500", netns=netns, check=False).stdout.strip()
    return {"veths": [name for name in links if name.startswith("veth")], "table500": table500}


@pytest.mark.parametrize("version", VERSIONS)
def test_add_check_repeat_del_for_every_cni_version(world, runtime_for, version):
    pod = Pod(world, runtime_for("node-a"), "node-a", version=version)
    # When the runtime adds the pod
    result = pod.add()
    # Then it has one address per family from the node's pool and the shared v6 pool
    v4, v6 = pod.addresses("4"), pod.addresses("6")
    assert len(v4) == 1 and v4[0].startswith("10.77.1.") and len(v6) == 1 and v6[0].startswith("fd77::1:")
    assert _db_allocations(pod) == sorted([(v4[0], "pool-a"), (v6[0], "pool-v6")])
    assert result["cniVersion"] == version
    if version in ("0.3.0", "0.3.1", "0.4.0"):  # "version" per IP was dropped in 1.0.0
        assert {ip["version"] for ip in result["ips"]} == {"4", "6"}
    else:
        assert all("version" not in ip for ip in result["ips"])
    # and the kernel agrees: the addresses are on eth0, the default route goes to the gateway
    [eth0] = pod.ip("addr", "show", "dev", "eth0")
    assert {a["local"] for a in eth0["addr_info"]} >= {v4[0], v6[0]}
    main = pod.ip("route", "show", "table", "main")
    assert {"dst": "default", "gateway": GATEWAY4, "dev": "eth0"}.items() <= next(
        r for r in main if r["dst"] == "default").items()
    # and the coordinator gave the pod a veth to its node with a host route and a neighbour entry
    node = world["topology"].nodes["node-a"]
    assert any(r["dst"] == node.ipv4 and r["dev"] == "veth0" for r in main)
    assert any(r["dst"] == "169.254.0.0/16" and r["dev"] == "veth0" for r in main)
    neighbours = pod.ip("neigh", "show", "dev", "veth0")
    assert any(n["dst"] == node.ipv4 and "PERMANENT" in n["state"] for n in neighbours)
    rules = pod.ip("rule", "show")
    assert any(r.get("fwmark") == "0x1" and r.get("table") == "100" for r in rules)
    state = _node_state(world, "node-a")
    assert len(state["veths"]) == 1 and v4[0] in state["table500"]
    if version not in ("0.3.0", "0.3.1"):  # CHECK arrived with 0.4.0
        pod.check()
    # When the runtime repeats the ADD (sandbox re-created), the same addresses come back
    ipam_conf = {**pod.conflist["plugins"][0], "name": pod.conflist["name"], "cniVersion": version}
    again = pod.runtime.exec_plugin("spiderpool", "ADD", ipam_conf, container_id=pod.container_id,
                                    netns=pod.netns_path, ifname="eth0", args=pod.args)
    assert sorted(ip["address"] for ip in again["ips"]) == sorted(ip["address"] for ip in result["ips"])
    # When the pod is deleted, nothing is left: no allocation, no host veth, no table-500 route
    pod.delete()
    assert _db_allocations(pod) == []
    assert _node_state(world, "node-a") == {"veths": [], "table500": ""}
    # and a second DEL (runtime retry) still succeeds
    pod.delete()
    world["topology"].remove_netns(pod.netns)


def test_pods_reach_each_other_across_nodes_and_their_own_node(world, runtime_for):
    a = Pod(world, runtime_for("node-a"), "node-a")
    b = Pod(world, runtime_for("node-b"), "node-b")
    a.add()
    b.add()
    assert a.addresses("4")[0].startswith("10.77.1.") and b.addresses("4")[0].startswith("10.77.2.")
    # pod ↔ pod across nodes over the underlay, both families
    assert a.ping(b.addresses("4")[0]) and b.ping(a.addresses("4")[0])
    assert a.ping(b.addresses("6")[0])
    # pod → its own node through the coordinator's veth (macvlan alone cannot reach its parent)
    assert a.ping(world["topology"].nodes["node-a"].ipv4)
    # pod → gateway
    assert a.ping(GATEWAY4) and a.ping(GATEWAY6)
    for pod in (a, b):
        pod.delete()
        world["topology"].remove_netns(pod.netns)


def test_address_live_on_the_segment_is_refused_and_released(world, runtime_for):
    from spiderweb.ipam import services
    from spiderweb.ipam.models import Allocation, ClusterSettings

    services.ippool_create(tenant=world["tenant"], name="pool-c", spec={
        "subnet": "10.77.0.0/16", "ips": ["10.77.3.1-10.77.3.2"], "gateway": GATEWAY4})
    services.cluster_settings_update(changes={"enable_ip_conflict_detection": True})
    ClusterSettings.invalidate_cache()
    world["topology"].intruder("10.77.3.1", 16)  # someone outside Kubernetes already uses the first address
    pod = Pod(world, runtime_for("node-a"), "node-a", v4=("pool-c",), v6=())
    with pytest.raises(CniFailure) as failure:
        pod.add()
    assert "10.77.3.1" in failure.value.error["msg"] and "conflict" in failure.value.error["msg"].lower()
    assert not Allocation.objects.filter(pod_uid=pod.uid).exists()
    assert _node_state(world, "node-a")["veths"] == []
    # The runtime retries: the conflicting address is now the least wanted, the pod gets the other one
    result = pod.add()
    assert [ip["address"] for ip in result["ips"]] == ["10.77.3.2/16"]
    pod.delete()
    world["topology"].remove_netns(pod.netns)


def test_unreachable_gateway_fails_the_add_when_detection_is_on(world, runtime_for):
    from spiderweb.ipam import services
    from spiderweb.ipam.models import Allocation, ClusterSettings

    services.ippool_create(tenant=world["tenant"], name="pool-d", spec={
        "subnet": "10.77.0.0/16", "ips": ["10.77.4.1-10.77.4.9"], "gateway": "10.77.9.9"})
    services.cluster_settings_update(changes={"enable_gateway_detection": True})
    ClusterSettings.invalidate_cache()
    pod = Pod(world, runtime_for("node-a"), "node-a", v4=("pool-d",), v6=())
    with pytest.raises(CniFailure) as failure:
        pod.add()
    assert "10.77.9.9" in failure.value.error["msg"] and "unreachable" in failure.value.error["msg"]
    assert not Allocation.objects.filter(pod_uid=pod.uid).exists()
    world["topology"].remove_netns(pod.netns)
