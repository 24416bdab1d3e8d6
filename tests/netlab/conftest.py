"""The two-node network-namespace lab: real kernel, real macvlan plugin, our IPAM, agents and portal.

Per test module: a switch netns with a bridge (the underlay, holding the gateway addresses), two node netns
plugged into it, one agent process per node (in the root netns, reaching the portal on loopback, doing its
host-side netlink work in its node's netns), and the portal served by pytest-django's live server on the real
PostgreSQL test database.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.netlab.runtime import Runtime
from tests.netlab.topology import Topology

ROOT = Path(__file__).resolve().parents[2]


def _need_root_and_netns() -> None:
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root (network namespaces, veth, macvlan)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip`) is not installed")


def main_plugin_dir() -> str:
    """Where the reference plugins (macvlan, ...) are: the lab's Go build, else Debian's package."""
    cache = Path(os.environ.get("SPIDERWEB_LAB_CACHE", "/var/cache/spiderweb-lab"))
    for candidate in sorted(cache.glob("*/bin/macvlan")):
        return str(candidate.parent)
    if Path("/usr/lib/cni/macvlan").exists():
        return "/usr/lib/cni"
    pytest.skip("no macvlan CNI plugin: run `make test-deps` (or apt-get install containernetworking-plugins)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgentProcess:
    """`python -m agent` for one node, standalone mode (pod facts from CNI_ARGS)."""

    def __init__(self, node, portal_url: str, token: str, workdir: Path):
        self.node = node
        self.socket = str(workdir / f"{node.name}.sock")
        self.health_port = _free_port()
        self.metrics_port = _free_port()
        self.log = open(workdir / f"agent-{node.name}.log", "w")  # noqa: SIM115 - closed in stop()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SPIDERWEB_NODE_NAME": node.name,
            "SPIDERWEB_PORTAL_URL": portal_url,
            "SPIDERWEB_NODE_TOKEN": token,
            "SPIDERWEB_AGENT_MODE": "standalone",
            "SPIDERWEB_AGENT_SOCKET": self.socket,
            "SPIDERWEB_AGENT_HEALTH_PORT": str(self.health_port),
            "SPIDERWEB_AGENT_METRICS_PORT": str(self.metrics_port),
            "SPIDERWEB_CNI_BIN_DIR": "",
            "SPIDERWEB_AGENT_HOST_NETNS": node.netns_path,
            "SPIDERWEB_AGENT_LOG_LEVEL": "info",
        }
        self.proc = subprocess.Popen([sys.executable, "-m", "agent"], cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log_text = (workdir / f"agent-{node.name}.log").read_text()
                raise RuntimeError(f"agent for {node.name} did not start: {log_text}")
            time.sleep(0.1)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def topology():
    _need_root_and_netns()
    topo = Topology().build()
    yield topo
    topo.teardown()
    assert topo.leftovers() == []


@pytest.fixture(scope="module")
def cni_bin(tmp_path_factory):
    """Our packaged executables next to the reference plugins, as on a node's /opt/cni/bin."""
    from cni.package import build

    directory = tmp_path_factory.mktemp("cni-bin")
    build(directory)
    return [str(directory), main_plugin_dir()]


@pytest.fixture
def world(transactional_db, live_server, topology):
    """Tenant, pools (one per node by nodeName, a dual-stack v6 pool), coordinator, node credentials, agents."""
    from spiderweb.ipam import services
    from spiderweb.ipam.models import ClusterSettings
    from spiderweb.tenancy.models import Tenant
    from tests.ipam import factories

    tenant = Tenant.objects.create(name="lab")
    gw4, gw6 = "10.77.0.1", "fd77::1"
    services.ippool_create(tenant=tenant, name="pool-a", spec={
        "subnet": "10.77.0.0/16", "ips": ["10.77.1.1-10.77.1.254"], "gateway": gw4, "node_name": ["node-a"]})
    services.ippool_create(tenant=tenant, name="pool-b", spec={
        "subnet": "10.77.0.0/16", "ips": ["10.77.2.1-10.77.2.254"], "gateway": gw4, "node_name": ["node-b"]})
    services.ippool_create(tenant=tenant, name="pool-v6", spec={
        "subnet": "fd77::/64", "ips": ["fd77::1:1-fd77::1:ffff"], "gateway": gw6})
    factories.coordinator(factories.coordinator_document(mode="auto", service_cidr=["10.96.0.0/12"]), owner=tenant)
    ClusterSettings.load()
    ClusterSettings.invalidate_cache()
    workdir = Path(tempfile.mkdtemp(prefix="swlab-", dir="/tmp"))
    agents = {}
    try:
        for name, node in topology.nodes.items():
            _, token = services.node_credential_issue(node_name=name)
            agents[name] = AgentProcess(node, live_server.url, token, workdir)
        yield {"topology": topology, "agents": agents, "tenant": tenant, "workdir": workdir}
    finally:
        for agent in agents.values():
            agent.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def conflist(version: str, socket_path: str, *, v4=("pool-a", "pool-b"), v6=("pool-v6",), name="macvlan-underlay",
             coordinator=True) -> dict:
    plugins = [{
        "type": "macvlan",
        "master": "eth0",
        "mode": "bridge",
        "ipam": {"type": "spiderpool", "ipam_unix_socket_path": socket_path,
                 "default_ipv4_ippool": list(v4), "default_ipv6_ippool": list(v6)},
    }]
    if coordinator:
        plugins.append({"type": "coordinator", "unix_socket_path": socket_path})
    return {"cniVersion": version, "name": name, "plugins": plugins}


@pytest.fixture
def runtime_for(world, cni_bin):
    def make(node_name: str) -> Runtime:
        return Runtime(cni_path=cni_bin, node_netns=world["topology"].nodes[node_name].netns)

    return make
