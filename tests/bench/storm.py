"""`make bench-storm`: Spiderpool's own pod storm (spec §16), side by side with Whereabouts and host-local.

The e2e lab (tests/e2e/README.md), reused through its fixtures as ``tests.bench.autoscale`` does: a real kube-apiserver
and kube-controller-manager, the fake kubelet running pod sandboxes concurrently (``BENCH_STORM_KUBELET_WORKERS``,
default 16, at once) through the real Multus thin plugin, real macvlan in the pods' network namespaces, two node
namespaces; the portal, the Celery worker and watcher, one agent per node.

The same workload runs three times in one run, one IPAM after another (the pods pick it through the nodes' Multus
cluster network, a NetworkAttachmentDefinition per IPAM; everything else is the same):

* ``spiderweb``: the e2e stack's NAD (macvlan + spiderpool IPAM + coordinator), a SpiderIPPool of ``BENCH_STORM_IPS``
  addresses (default: as many as pods, Spiderpool's "IPs = Pods" case);
* ``whereabouts``: macvlan + Whereabouts v0.9.2 (``tests/lab/build-whereabouts.sh``), its CRDs applied to the lab's
  API server, its plugin talking to it with the lab's kubeconfig, a range of ``BENCH_STORM_IPS`` addresses;
* ``hostlocal``: macvlan + Debian's ``/usr/lib/cni/host-local``, one NAD per node with a range of its own (per-node
  blocks, so no contention: the floor).

Each run: ``BENCH_PODS`` (1000) pods as Deployments of ``BENCH_STORM_REPLICAS`` (10) replicas in one namespace,
created at once; ``<ipam>_s`` is the time from the first create until every pod is Running with an address (what
Spiderpool's figure measures). Then every Deployment is deleted, and the time until no pod is left and every address
is free (Spiderweb: no allocation or endpoint row in PostgreSQL; Whereabouts: no allocation in its IPPool CRs and no
OverlappingRangeIPReservation; host-local: no address file) is printed too. A 4-pod warm-up precedes each run.
Whereabouts gets ``BENCH_STORM_WHEREABOUTS_TIMEOUT`` (600 s) to become ready; past it the figure is a lower bound
(``>=``). Duplicates: the most addresses two live pods held at once, summed over the runs. Leaks: addresses still
held and sandboxes still there once a run's pods are gone (after ``SETTLE_SECONDS``). Last line:

storm pods=<n> spiderweb_s=<a> whereabouts_s=<b> hostlocal_s=<c> vs_whereabouts=<b/a> dupes=<d> leaks=<l>

Needs root, the lab build and the Whereabouts build (``make bench-storm`` makes both). Own test database
(``test_spiderweb_storm_e2e``) and Redis database (``SPIDERWEB_TEST_E2E_REDIS_DB``, default 12).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.bench.common import lab_bench_result_path, lab_bench_run
from tests.e2e import conftest as e2e_lab
from tests.e2e.fake_kubelet import discard
from tests.e2e.stack import NAD_NAME, NAD_NAMESPACE, crds_apply, kubelet_start
from tests.mirror.lab import wait_for

# The e2e lab's fixtures, as they are, except the kubelet (more workers); names in the test module win.
django_db_setup, _db_open, e2e_host, workdir, lab, lab_env = (
    e2e_lab.django_db_setup, e2e_lab._db_open, e2e_lab.e2e_host, e2e_lab.workdir, e2e_lab.lab, e2e_lab.lab_env)
portal, mirror, agent_kubeconfig, topology, cni_bin, cluster_rows, spider_coordinator, agents, e2e = (
    e2e_lab.portal, e2e_lab.mirror, e2e_lab.agent_kubeconfig, e2e_lab.topology, e2e_lab.cni_bin, e2e_lab.cluster_rows,
    e2e_lab.spider_coordinator, e2e_lab.agents, e2e_lab.e2e)

PODS = int(os.environ.get("BENCH_PODS", "1000"))
REPLICAS = int(os.environ.get("BENCH_STORM_REPLICAS", "10"))
IPS = int(os.environ.get("BENCH_STORM_IPS", str(PODS)))
KUBELET_WORKERS = int(os.environ.get("BENCH_STORM_KUBELET_WORKERS", "16"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "1800"))
WHEREABOUTS_TIMEOUT = float(os.environ.get("BENCH_STORM_WHEREABOUTS_TIMEOUT", "600"))
RESULT_ENV = "SPIDERWEB_BENCH_STORM_RESULT"
SETTLE_SECONDS = 30
POLL_SECONDS = 2.0  # listing 1,000 pods costs the kubelet's process CPU; the figures are minutes
WARMUP_PODS = 4
ROOT = Path(__file__).resolve().parents[2]
HOST_LOCAL = Path("/usr/lib/cni/host-local")  # Debian's containernetworking-plugins
WHEREABOUTS_GROUP, WHEREABOUTS_VERSION = "whereabouts.cni.cncf.io", "v1alpha1"
POOL, POOL_CIDR, POOL_FIRST = "storm-pool", "10.93.0.0/16", "10.93.1.1"
WHEREABOUTS_CIDR, WHEREABOUTS_FIRST = "10.94.0.0/16", "10.94.1.1"
HOSTLOCAL_CIDR = "10.95.0.0/16"
# The warm-up pods' addresses come from the same ranges, so they hold a few more addresses than the storm needs.
RANGE_SIZE = IPS + WARMUP_PODS


def _last(first: str, count: int) -> str:
    """The last of ``count`` consecutive addresses from ``first``: ``_last("10.0.0.1", 3) == "10.0.0.3"``."""
    return str(ipaddress.ip_address(first) + count - 1)


# --------------------------------------------------------------------------------------------- the IPAMs


def whereabouts_bin_dir() -> Path | None:
    """The Whereabouts build (``tests/lab/build-whereabouts.sh``), or ``None`` when it is not built."""
    done = subprocess.run(["bash", str(ROOT / "tests/lab/build-whereabouts.sh"), "--bin-dir"], capture_output=True,
                          text=True)
    return Path(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None


@pytest.fixture(scope="package")
def storm_bin(workdir) -> Path:
    """The node's extra CNI executables: Whereabouts' plugin and Debian's host-local (first on the CNI path, so the
    lab build's own host-local is not the one that runs)."""
    bin_dir = whereabouts_bin_dir()
    if bin_dir is None:
        pytest.skip("Whereabouts is not built (bash tests/lab/build-whereabouts.sh, or make bench-storm)")
    if not HOST_LOCAL.exists():
        pytest.skip(f"{HOST_LOCAL} is missing (Debian's containernetworking-plugins)")
    directory = workdir / "storm-bin"
    directory.mkdir()
    (directory / "whereabouts").symlink_to(bin_dir / "whereabouts")
    (directory / "host-local").symlink_to(HOST_LOCAL)
    return directory


@pytest.fixture(scope="package")
def kubelet(lab, topology, agents, cni_bin, storm_bin, workdir):
    """The e2e kubelet with ``KUBELET_WORKERS`` pod workers, the storm's executables first on its CNI path, and its
    API relays into the nodes in processes of their own (in the kubelet's process they were its bottleneck)."""
    kubelet = kubelet_start(lab.plane, lab.api, topology, workdir, [str(storm_bin), *cni_bin],
                            workers=KUBELET_WORKERS, forwarder_processes=True)
    yield kubelet
    kubelet.stop()


def whereabouts_crds_apply(api: k8s.ApiClient) -> None:
    """Whereabouts' CRDs as its module ships them (copied next to the build), established on the lab's API server."""
    crds_apply(api, whereabouts_bin_dir().parent / "crds")


def _nad(custom: k8s.CustomObjectsApi, name: str, plugins: list[dict]) -> None:
    custom.create_namespaced_custom_object("k8s.cni.cncf.io", "v1", NAD_NAMESPACE, "network-attachment-definitions", {
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": NAD_NAMESPACE},
        "spec": {"config": json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": plugins})}})


def _macvlan(ipam: dict) -> dict:
    return {"type": "macvlan", "master": "eth0", "mode": "bridge", "ipam": ipam}


class Ipam:
    """One IPAM under test: the cluster network each node uses for it, the pods' annotations, and what it holds."""

    name = ""
    annotations: dict = {}

    def networks(self, e2e) -> dict[str, str]:
        """Node name → the NAD (in ``NAD_NAMESPACE``) that node's Multus uses as its cluster network."""
        raise NotImplementedError

    def held(self, e2e, namespace: str) -> int:
        """Addresses (or address records) this IPAM still holds for pods of ``namespace``."""
        raise NotImplementedError


class Spiderweb(Ipam):
    name = "spiderweb"

    def __init__(self, e2e) -> None:
        from spiderweb.engine.keys import ANNO_IPPOOL
        from spiderweb.k8s.crd import GROUP, VERSION

        e2e.custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": POOL},
            "spec": {"subnet": POOL_CIDR, "ips": [f"{POOL_FIRST}-{_last(POOL_FIRST, RANGE_SIZE)}"],
                     "gateway": "10.93.0.1"}})
        self.annotations = {ANNO_IPPOOL: json.dumps({"ipv4": [POOL]})}

    def networks(self, e2e) -> dict[str, str]:
        return dict.fromkeys(e2e.kubelet.nodes, NAD_NAME)

    def held(self, e2e, namespace: str) -> int:
        from spiderweb.ipam.models import Allocation, Endpoint

        return (Allocation.objects.filter(endpoint__namespace=namespace).count()
                + Endpoint.objects.filter(namespace=namespace).count())


class Whereabouts(Ipam):
    """Whereabouts with the Kubernetes datastore (its only one in v0.9), in ``NAD_NAMESPACE`` (the namespace of the
    kubeconfig's context, empty here, so ``kube-system``), with its default leader-election settings."""

    name = "whereabouts"
    nad = "storm-whereabouts"

    def __init__(self, e2e) -> None:
        whereabouts_crds_apply(e2e.api)
        # The node's flat file, as Whereabouts' DaemonSet writes it to /etc/cni/net.d/whereabouts.d/whereabouts.conf:
        # v0.9.2 refuses to run without one ("config file not found"), whatever the NAD holds.
        flat = e2e.workdir / "whereabouts.conf"
        flat.write_text(json.dumps({"datastore": "kubernetes",
                                    "kubernetes": {"kubeconfig": str(e2e.lab.plane.kubeconfig)}}))
        _nad(e2e.custom, self.nad, [_macvlan({
            "type": "whereabouts", "range": WHEREABOUTS_CIDR, "range_start": WHEREABOUTS_FIRST,
            "range_end": _last(WHEREABOUTS_FIRST, RANGE_SIZE), "gateway": "10.94.0.1",
            "kubernetes": {"kubeconfig": str(e2e.lab.plane.kubeconfig)}, "configuration_path": str(flat),
            "log_file": str(e2e.workdir / "whereabouts.log")})])

    def networks(self, e2e) -> dict[str, str]:
        return dict.fromkeys(e2e.kubelet.nodes, self.nad)

    def held(self, e2e, namespace: str) -> int:
        """Distinct addresses of ``namespace``'s pods in the IPPools (keyed by offset from the range's network
        address) or in OverlappingRangeIPReservations (named by the address): one address is usually in both."""
        pools = e2e.custom.list_namespaced_custom_object(WHEREABOUTS_GROUP, WHEREABOUTS_VERSION, NAD_NAMESPACE,
                                                         "ippools")["items"]
        reservations = e2e.custom.list_namespaced_custom_object(
            WHEREABOUTS_GROUP, WHEREABOUTS_VERSION, NAD_NAMESPACE, "overlappingrangeipreservations")["items"]
        prefix = f"{namespace}/"
        addresses = {ipaddress.ip_network(pool["spec"]["range"], strict=False).network_address + int(offset)
                     for pool in pools for offset, a in ((pool.get("spec") or {}).get("allocations") or {}).items()
                     if a.get("podref", "").startswith(prefix)}
        addresses |= {ipaddress.ip_address(r["metadata"]["name"]) for r in reservations
                      if (r.get("spec") or {}).get("podref", "").startswith(prefix)}
        return len(addresses)


class HostLocal(Ipam):
    """Debian's host-local: a NAD per node with a block of its own and its files in the node's own directory."""

    name = "hostlocal"

    def __init__(self, e2e) -> None:
        self.data_dirs: dict[str, Path] = {}
        self.nads: dict[str, str] = {}
        per_node = math.ceil(RANGE_SIZE / len(e2e.kubelet.nodes)) + WARMUP_PODS
        first = ipaddress.ip_address("10.95.1.1")
        for i, node in enumerate(sorted(e2e.kubelet.nodes)):
            start = first + i * 4096
            self.nads[node] = nad = f"storm-hostlocal-{node}"
            self.data_dirs[node] = e2e.workdir / node / "host-local"
            _nad(e2e.custom, nad, [_macvlan({
                "type": "host-local", "dataDir": str(self.data_dirs[node]),
                "ranges": [[{"subnet": HOSTLOCAL_CIDR, "rangeStart": str(start),
                             "rangeEnd": _last(str(start), per_node), "gateway": "10.95.0.1"}]]})])

    def networks(self, e2e) -> dict[str, str]:
        return self.nads

    def held(self, e2e, namespace: str) -> int:
        """Address files (host-local knows no namespaces: every address it holds counts)."""
        return sum(1 for directory in self.data_dirs.values() if directory.exists()
                   for path in directory.glob("*/*") if _is_address(path.name))


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------- one run


def _deployment(name: str, run: str, replicas: int, annotations: dict) -> dict:
    labels = {"app": name, "storm": run}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"storm": run}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels, "annotations": annotations},
                                  "spec": {"containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}],
                                           "terminationGracePeriodSeconds": 30}}}}


class Storm:
    """One IPAM's run in a namespace of its own: ``replicas`` split into Deployments of ``REPLICAS``."""

    def __init__(self, e2e, ipam: Ipam, namespace: str, pods: int) -> None:
        self.e2e, self.ipam, self.namespace, self.pods = e2e, ipam, namespace, pods
        self.dupes = 0
        self.live = 0

    def _pod_list(self) -> list[dict]:
        """The namespace's pods, parsed as plain JSON (the generated models cost seconds of CPU per 1,000 pods)."""
        response = self.e2e.core.list_namespaced_pod(self.namespace, _preload_content=False)
        try:
            return json.loads(response.data)["items"]
        finally:
            response.release_conn()

    def _running(self) -> bool:
        pods = self._pod_list()
        live = [p for p in pods if p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP")
                and not p["metadata"].get("deletionTimestamp")]
        addresses = [p["status"]["podIP"] for p in live]
        self.dupes = max(self.dupes, len(addresses) - len(set(addresses)))
        self.live = len(live)
        return len(pods) == len(live) == self.pods

    def up(self, timeout: float) -> tuple[float, bool]:
        """Create the Deployments; seconds until every pod is Running with an address, and whether it got there
        within ``timeout`` (if not, the seconds are a lower bound)."""
        self.e2e.core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": self.namespace}})
        sizes = [REPLICAS] * (self.pods // REPLICAS) + ([self.pods % REPLICAS] if self.pods % REPLICAS else [])
        start = time.monotonic()
        for i, replicas in enumerate(sizes):
            body = _deployment(f"storm-{i:03d}", self.namespace, replicas, self.ipam.annotations)
            discard(self.e2e.apps.create_namespaced_deployment(self.namespace, body, _preload_content=False))
        deadline = start + timeout
        reported = start
        while not self._running():
            now = time.monotonic()
            if now > deadline:
                return now - start, False
            if now - reported >= 30:
                reported = now
                print(f"  {self.ipam.name}: {self.live}/{self.pods} running after {now - start:.0f} s", flush=True)
            time.sleep(POLL_SECONDS)
        return time.monotonic() - start, True

    def down(self, timeout: float) -> float | None:
        """Delete every Deployment; seconds until no pod is left and the IPAM holds no address for them (``None``
        when that did not happen within ``timeout``). Once the pods are gone every DEL has run: an address still
        held ``SETTLE_SECONDS`` later is a leak (Whereabouts' DEL reports success when it could not release), not
        something worth waiting ``timeout`` for."""
        start = time.monotonic()
        self.e2e.apps.delete_collection_namespaced_deployment(self.namespace, propagation_policy="Background")
        deadline = start + timeout
        while self._pod_list():
            if time.monotonic() > deadline:
                return None
            time.sleep(POLL_SECONDS)
        deadline = min(deadline, time.monotonic() + SETTLE_SECONDS)
        while self.ipam.held(self.e2e, self.namespace):
            if time.monotonic() > deadline:
                return None
            time.sleep(POLL_SECONDS)
        return time.monotonic() - start

    def leaks(self) -> dict:
        """What this run left behind once its pods are gone: addresses the IPAM holds, sandboxes the kubelet holds."""
        return {"addresses": self.ipam.held(self.e2e, self.namespace),
                "sandboxes": sum(1 for key in self.e2e.kubelet.sandboxes if key[0] == self.namespace),
                "pods": len(self._pod_list())}


def _use(e2e, ipam: Ipam) -> None:
    """Point every node's Multus at ``ipam``'s cluster network (read by the kubelet at each CNI call)."""
    for node, network in ipam.networks(e2e).items():
        e2e.kubelet.nodes[node].multus_conf["clusterNetwork"] = network


def _run(e2e, ipam: Ipam, tag: str, timeout: float) -> dict:
    _use(e2e, ipam)
    warm = Storm(e2e, ipam, f"storm-warm-{ipam.name}-{tag}", WARMUP_PODS)
    seconds, ready = warm.up(120)
    assert ready, f"{ipam.name}: the warm-up's {WARMUP_PODS} pods did not start in 120 s"
    assert warm.down(120) is not None, f"{ipam.name}: the warm-up's pods or addresses were not freed in 120 s"
    failures_before = e2e.kubelet.stats["add_failures"]
    storm = Storm(e2e, ipam, f"storm-{ipam.name}-{tag}", PODS)
    up_s, ready = storm.up(timeout)
    failed = e2e.kubelet.stats["add_failures"] - failures_before
    bound = "" if ready else ">="
    print(f"{ipam.name}: {storm.live}/{PODS} pods running with an address in {bound}{up_s:.1f} s "
          f"({failed} failed ADDs, {storm.dupes} duplicates)", flush=True)
    down_s = storm.down(TIMEOUT)
    settle = time.monotonic()
    leaks = wait_for("nothing left", lambda: (found := storm.leaks()) and (
        not any(found.values()) or time.monotonic() - settle > SETTLE_SECONDS) and found, timeout=SETTLE_SECONDS + 30)
    down = f"{down_s:.1f} s" if down_s is not None else "never (see leaks)"
    print(f"{ipam.name}: deleted; no pod and every address free after {down} "
          f"(leaks: {', '.join(f'{k}={v}' for k, v in leaks.items())})", flush=True)
    for namespace in (warm.namespace, storm.namespace):
        e2e.core.delete_namespace(namespace)
    return {"up_s": up_s, "ready": ready, "down_s": down_s, "dupes": storm.dupes + warm.dupes,
            "leaks": sum(leaks.values()), "failed_adds": failed}


@pytest.fixture
def bench_result():
    """Where the numbers go: a JSON file ``main`` reads once pytest (and its teardown output) is done."""
    return lab_bench_result_path(RESULT_ENV, "tests.bench.storm")


def test_storm(e2e, bench_result):
    """The benchmark itself (see the module docstring); one test so the lab is built once."""
    tag = f"{os.getpid() % 10000}"
    kubelet_log = logging.FileHandler(e2e.workdir / "kubelet.log")
    kubelet_log.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("tests.e2e.fake_kubelet").addHandler(kubelet_log)
    ipams = [Spiderweb(e2e), Whereabouts(e2e), HostLocal(e2e)]
    print(f"\nbench-storm: {PODS} pods ({math.ceil(PODS / REPLICAS)} Deployments x {REPLICAS}), {RANGE_SIZE} "
          f"addresses ({IPS} + {WARMUP_PODS} for the warm-up), {len(e2e.kubelet.nodes)} nodes, fake kubelet with "
          f"{KUBELET_WORKERS} pod workers, Multus -> macvlan + <ipam>; whereabouts limit {WHEREABOUTS_TIMEOUT:.0f} s",
          flush=True)
    results = {}
    for ipam in ipams:
        timeout = WHEREABOUTS_TIMEOUT if ipam.name == "whereabouts" else TIMEOUT
        results[ipam.name] = _run(e2e, ipam, tag, timeout)
    for ipam in ipams[1:]:
        assert results[ipam.name]["ready"] or ipam.name == "whereabouts", f"{ipam.name} did not finish"
    assert results["spiderweb"]["ready"], "spiderweb did not finish"
    bench_result.write_text(json.dumps({"pods": PODS, **results}))


# --------------------------------------------------------------------------------------------- the command


def main() -> int:
    """Run ``test_storm`` under pytest (own test database and Redis database), then print the last line."""
    r = lab_bench_run(str(Path(__file__).resolve()), "storm", RESULT_ENV, "12")
    if isinstance(r, int):
        return r
    a, b, c = (r[name]["up_s"] for name in ("spiderweb", "whereabouts", "hostlocal"))
    bound = "" if r["whereabouts"]["ready"] else ">="
    dupes = sum(r[name]["dupes"] for name in ("spiderweb", "whereabouts", "hostlocal"))
    leaks = sum(r[name]["leaks"] for name in ("spiderweb", "whereabouts", "hostlocal"))
    print(f"storm pods={r['pods']} spiderweb_s={a:.1f} whereabouts_s={bound}{b:.1f} hostlocal_s={c:.1f} "
          f"vs_whereabouts={bound}{b / a:.1f} dupes={dupes} leaks={leaks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
