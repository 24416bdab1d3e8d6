"""``manage.py ipam_check`` against a real kube-apiserver (the lab) and the real database.

Everything Kubernetes owns in production is made in the lab's API server: the namespace, the node, the pods (their
status patched as a kubelet would, since the lab has no kubelet), a StatefulSet (whose pods the lab's
kube-controller-manager creates) and the custom resources. Addresses are allocated through the allocator with the
facts the node agent builds from those objects (``spiderweb.k8s.pods.pod_facts``). The command is run with
``call_command`` (and once as a process, for its real exit status) with ``KUBECONFIG`` pointing at the lab.
"""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.utils import timezone
from kubernetes.client.exceptions import ApiException

from spiderweb.controllers.config import kube_client, kube_config
from spiderweb.controllers.gc.check import ipam_check
from spiderweb.controllers.gc.config import gc_config
from spiderweb.controllers.mirror import reconcile as mirror
from spiderweb.controllers.mirror.config import mirror_config
from spiderweb.ipam import allocation, services
from spiderweb.ipam.models import AddressHistory, Allocation, Endpoint, IPPool, ReservedIP
from spiderweb.ipam.validation import SpecInvalid
from spiderweb.k8s import crd, podgc, pods, resources
from spiderweb.k8s.client import KubeClient
from spiderweb.k8s.crd import GROUP, VERSION
from tests.ipam import factories as f
from tests.lab.controlplane import free_port
from tests.mirror.lab import wait_for

REPO = Path(__file__).resolve().parents[3]
POOL_ANNOTATION = "ipam.spidernet.io/ippool"
PAUSE = [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]
# One /16 per test (10.<n>.0.0): pods another test left behind can never show an address of this test's pools.
_SECOND_OCTETS = itertools.count(150)
SERVICE_ACCOUNT = resources.Resource("", "v1", "ServiceAccount", "serviceaccounts")

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _kube_env(monkeypatch):
    """The mirror stays off in this process (a service call must not enqueue a task); every cached setting is
    read again from this test's environment, before and after."""
    monkeypatch.setenv("SPIDERWEB_MIRROR_ENABLED", "false")
    caches = (kube_client, kube_config, gc_config, mirror_config)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


# --------------------------------------------------------------------------------------------- the cluster


@dataclass
class Cluster:
    """One test's namespace and node in the lab, with the writes a kubelet, kubectl and the node agent make."""

    client: KubeClient
    custom: object
    namespace: str
    node: str
    octet: int
    statefulsets: list[str] = field(default_factory=list)
    cluster_crs: list[tuple[str, str]] = field(default_factory=list)

    def subnet(self, third: int) -> str:
        return f"10.{self.octet}.{third}.0/24"

    def address(self, third: int, fourth: int) -> str:
        return f"10.{self.octet}.{third}.{fourth}"

    # -- pods, as kubectl, the scheduler and the kubelet write them ---------------------------------------------

    def pod_create(self, name: str, *, pool: str | None = None) -> dict:
        annotations = {POOL_ANNOTATION: json.dumps({"ipv4": [pool]})} if pool else {}
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": self.namespace, "annotations": annotations},
                "spec": {"nodeName": self.node, "containers": PAUSE}}
        return self.client.create(resources.POD, body)

    def pod_show(self, name: str, *ips: str, phase: str = "Running") -> dict:
        """What the kubelet reports once the sandbox is up: the phase and ``status.podIPs``."""
        status = {"phase": phase, "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]} if ips else {"phase": phase}
        return self.client.patch(resources.POD, name, {"status": status}, namespace=self.namespace,
                                 subresource="status")

    def pod_bind(self, name: str) -> dict:
        """What the scheduler does: bind the pod to this test's node."""
        binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}}
        self.client.request("POST", resources.POD.path(name, namespace=self.namespace, subresource="binding"),
                            body=binding)
        return self.client.pod(self.namespace, name)

    def pod_delete(self, name: str) -> None:
        """``kubectl delete --force --grace-period=0``: no kubelet here to finish a graceful deletion. Returns once
        this incarnation is gone (a controller may already have made the next one)."""
        uid = crd.uid_of(self.client.pod(self.namespace, name))
        self.client.request("DELETE", resources.POD.path(name, namespace=self.namespace),
                            body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
        wait_for(f"pod {name} ({uid}) gone", lambda: crd.uid_of(self.client.pod(self.namespace, name)) != uid,
                 timeout=15)

    def statefulset_create(self, name: str, *, replicas: int, pool: str) -> dict:
        self.statefulsets.append(name)
        body = {"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": name, "namespace": self.namespace},
                # Parallel: ordinal n is made without waiting for n-1 to be Ready (no kubelet in the lab).
                "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
                         "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name},
                                                   "annotations": {POOL_ANNOTATION: json.dumps({"ipv4": [pool]})}},
                                      "spec": {"containers": PAUSE}}}}
        return self.client.create(resources.STATEFULSET, body)

    # -- the node agent: facts from the API server, then the allocator ------------------------------------------

    def facts(self, pod: dict):
        return pods.pod_facts(pod, owner=pods.top_controller(pod, self.client.owner),
                              namespace=self.client.namespace(self.namespace), node=self.client.node(self.node),
                              default_node=self.node)

    def allocate(self, pod: dict) -> str:
        """CNI ADD for eth0, as the agent forwards it; returns the address without its prefix length."""
        result = allocation.ippool_allocate(request=allocation.AllocateRequest(facts=self.facts(pod), if_name="eth0"))
        return result["ips"][0]["address"].split("/")[0]

    def running_pod(self, name: str, *, pool: str) -> tuple[dict, str]:
        """Create, allocate (CNI ADD) and report Running with the allocated address."""
        pod = self.pod_create(name, pool=pool)
        address = self.allocate(pod)
        self.pod_show(name, address)
        return pod, address

    # -- custom resources -----------------------------------------------------------------------------------

    def cluster_cr_track(self, plural: str, name: str) -> None:
        """Delete this cluster-scoped custom resource at cleanup (finalizer released)."""
        self.cluster_crs.append((plural, name))

    def cleanup(self) -> None:
        core = self.client
        for name in self.statefulsets:
            core.request("DELETE", resources.STATEFULSET.path(name, namespace=self.namespace),
                         body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"})
        for pod in core.list(resources.POD, namespace=self.namespace)[0]:
            core.request("DELETE", resources.POD.path(crd.meta(pod)["name"], namespace=self.namespace),
                         body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
        for obj in core.list(crd.SPIDER_ENDPOINT, namespace=self.namespace)[0]:
            core.delete(crd.SPIDER_ENDPOINT, crd.meta(obj)["name"], namespace=self.namespace)
        for plural, name in self.cluster_crs:
            try:
                self.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
                self.custom.patch_cluster_custom_object(GROUP, VERSION, plural, name, {"metadata": {"finalizers": []}})
            except ApiException:
                pass  # gone already
        core.request("DELETE", resources.NAMESPACE.path(self.namespace))
        core.request("DELETE", resources.NODE.path(self.node))


@pytest.fixture
def cluster(mirror_lab, monkeypatch):
    """A fresh namespace and a Ready node in the lab; ``KUBECONFIG`` points the command at the lab. Everything made
    in the API server is deleted afterwards (before the database flush)."""
    monkeypatch.setenv("KUBECONFIG", str(mirror_lab.plane.kubeconfig))
    for cache in (kube_client, kube_config, gc_config):
        cache.cache_clear()
    suffix = uuid.uuid4().hex[:6]
    client = mirror_lab.crd
    namespace, node = f"ipcheck-{suffix}", f"ipcheck-node-{suffix}"
    client.create(resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    client.create(resources.NODE, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    client.patch(resources.NODE, node, {"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "lab node"}]}}, subresource="status")
    wait_for("the default ServiceAccount of the namespace",
             lambda: client.get(SERVICE_ACCOUNT, "default", namespace=namespace), timeout=30)
    lab = Cluster(client=client, custom=mirror_lab.custom, namespace=namespace, node=node, octet=next(_SECOND_OCTETS))
    yield lab
    lab.cleanup()


def run_check(*args: str) -> tuple[int, str]:
    """``manage.py ipam_check *args``: exit status and standard output."""
    out = io.StringIO()
    try:
        call_command("ipam_check", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def run_check_json(*args: str) -> tuple[int, dict]:
    code, out = run_check("--json", *args)
    return code, json.loads(out)


# ------------------------------------------------------------------------------------------- planted world


@dataclass
class Planted:
    cluster: Cluster
    pool: str
    narrow_pool: str
    gone: tuple[str, str]            # (pod UID, address): pod deleted after its ADD
    recreated: tuple[str, str]       # (old UID, address): pod deleted and created again under the same name
    recreated_uid: str
    statefulset: tuple[str, str]     # (UID, address) of db-0, whose pod is gone but whose StatefulSet wants it
    dup_a: tuple[str, str]           # holds the address it shows
    dup_b_uid: str                   # shows dup-a's address, holds nothing
    stray: tuple[str, str]           # (UID, address it shows but does not hold)
    outside: str                     # address held after it left its pool
    reserved: str                    # address held and then reserved
    ghost_pool: str                  # SpiderIPPool CR without a row
    gone_reservation: str            # SpiderReservedIP row whose CR was removed
    orphan_endpoint: str             # SpiderEndpoint CR without a row

    @property
    def ns(self) -> str:
        return self.cluster.namespace

    def kept_allocations(self) -> dict[str, str]:
        return {"db-0": self.statefulset[1], "dup-a": self.dup_a[1], "outside": self.outside,
                "reserved": self.reserved}

    def expected(self) -> dict:
        ns = self.ns
        return {
            "leaked": [f"{self.gone[1]} held by {ns}/gone ({self.gone[0]}): pod not found",
                       f"{self.recreated[1]} held by {ns}/recreated ({self.recreated[0]}): pod re-created "
                       f"(stateless)"],
            "pods_without_addresses": [
                f"{ns}/dup-b ({self.dup_b_uid}) shows {self.dup_a[1]}, which Spiderweb does not record for it",
                f"{ns}/stray ({self.stray[0]}) shows {self.stray[1]}, which Spiderweb does not record for it"],
            "duplicates": [f"{self.dup_a[1]} shown by {ns}/dup-a, {ns}/dup-b"],
            "outside_pool": [f"{self.narrow_pool}:{self.outside}"],
            "on_reserved": [f"{self.pool}:{self.reserved}"],
            "crd_disagreements": [
                f"SpiderIPPool {self.ghost_pool} exists in Kubernetes but not in Spiderweb",
                f"SpiderReservedIP {self.gone_reservation} is in Spiderweb but gone from Kubernetes",
                f"SpiderEndpoint {ns}/{self.orphan_endpoint} has no allocation in Spiderweb"],
        }


@pytest.fixture
def planted(cluster):
    """Given a cluster with one of everything ``ipam_check`` looks for, each made the way it happens in production."""
    c = cluster
    pool = f"main-{c.octet}"
    narrow = f"narrow-{c.octet}"
    f.pool(pool, c.subnet(0), [f"{c.address(0, 10)}-{c.address(0, 40)}"])
    f.pool(narrow, c.subnet(1), [f"{c.address(1, 10)}-{c.address(1, 20)}"])

    # A leak: the pod got its address, then it was deleted and the CNI DEL never came.
    gone_pod, gone_address = c.running_pod("gone", pool=pool)
    c.pod_delete("gone")

    # Not a leak: StatefulSet db wants ordinal 0; its pod got an address and was then deleted (the controller
    # makes a new db-0, which the lab never starts, so it shows no address).
    c.statefulset_create("db", replicas=1, pool=pool)
    wait_for("the StatefulSet controller to create db-0", lambda: c.client.pod(c.namespace, "db-0"), timeout=30)
    db0 = c.pod_bind("db-0")
    assert pods.top_controller(db0, c.client.owner).kind == "StatefulSet"
    db0_address = c.allocate(db0)
    c.pod_show("db-0", db0_address)
    c.pod_delete("db-0")

    # A leak: the pod was re-created under the same name (new UID); the old incarnation's address stayed.
    old_pod, recreated_address = c.running_pod("recreated", pool=pool)
    c.pod_delete("recreated")
    new_pod = c.pod_create("recreated", pool=pool)

    # A duplicate: dup-b shows the address dup-a holds (and so is also a pod without its address).
    dup_a, dup_address = c.running_pod("dup-a", pool=pool)
    dup_b = c.pod_create("dup-b", pool=pool)
    c.pod_show("dup-b", dup_address)

    # A pod without its address: it shows an address of our pool that nobody was given.
    stray = c.pod_create("stray", pool=pool)
    stray_address = c.address(0, 40)
    c.pod_show("stray", stray_address)

    # An allocation outside its pool: the service refuses to drop an allocated address, so the edit that made this
    # (an operator's SQL, a restored backup) is an ORM update here.
    _, outside_address = c.running_pod("outside", pool=narrow)
    assert outside_address == c.address(1, 10)
    with pytest.raises(SpecInvalid, match="cannot remove allocated addresses"):
        services.ippool_update(pool=f.pool_get(narrow), spec={"ips": [f"{c.address(1, 11)}-{c.address(1, 20)}"]})
    IPPool.objects.filter(name=narrow).update(ips=[f"{c.address(1, 11)}-{c.address(1, 20)}"])

    # An allocation on a reserved address: a reservation may be created over an address in use.
    _, reserved_address = c.running_pod("reserved", pool=pool)
    services.reservedip_create(tenant=f.tenant(), name=f"ri-held-{c.octet}", spec={"ips": [reserved_address]})

    # A SpiderIPPool made in Kubernetes that never reached the database (no webhook in this lab fixture).
    ghost = f"ghost-{c.octet}"
    c.cluster_cr_track("spiderippools", ghost)
    c.custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": ghost},
        "spec": {"subnet": c.subnet(7), "ips": [c.address(7, 10)]}})
    if IPPool.objects.filter(name=ghost).exists():
        # Another test of this session registered the admission webhooks, which wrote the row: the portal deletes
        # it while the mirror is off, which leaves the same disagreement.
        services.ippool_delete(pool=f.pool_get(ghost))

    # A SpiderReservedIP the mirror pushed to Kubernetes, whose CR was then force-deleted (finalizer removed).
    gone_reservation = f"ri-gone-{c.octet}"
    c.cluster_cr_track("spiderreservedips", gone_reservation)
    services.reservedip_create(tenant=f.tenant(), name=gone_reservation, spec={"ips": [c.address(8, 1)]})
    assert mirror.mirror_reconcile(kind="SpiderReservedIP", name=gone_reservation, client=c.client) == "created"
    assert ReservedIP.objects.get(name=gone_reservation).k8s_uid
    c.custom.delete_cluster_custom_object(GROUP, VERSION, "spiderreservedips", gone_reservation)
    c.custom.patch_cluster_custom_object(GROUP, VERSION, "spiderreservedips", gone_reservation,
                                         {"metadata": {"finalizers": []}})
    wait_for("the SpiderReservedIP to be gone", lambda: c.client.get(crd.SPIDER_RESERVEDIP, gone_reservation) is None)

    # A SpiderEndpoint in Kubernetes with no endpoint row.
    c.client.create(crd.SPIDER_ENDPOINT, {
        "apiVersion": crd.API_VERSION, "kind": "SpiderEndpoint",
        "metadata": {"name": "orphan", "namespace": c.namespace},
        "status": {"current": {"uid": str(uuid.uuid4()), "node": c.node,
                               "ips": [{"interface": "eth0", "ipv4": f"{c.address(0, 39)}/24", "ipv4Pool": pool}]},
                   "ownerControllerType": "Pod", "ownerControllerName": "orphan"}})

    return Planted(
        cluster=c, pool=pool, narrow_pool=narrow,
        gone=(crd.uid_of(gone_pod), gone_address),
        recreated=(crd.uid_of(old_pod), recreated_address), recreated_uid=crd.uid_of(new_pod),
        statefulset=(crd.uid_of(db0), db0_address),
        dup_a=(crd.uid_of(dup_a), dup_address), dup_b_uid=crd.uid_of(dup_b),
        stray=(crd.uid_of(stray), stray_address),
        outside=outside_address, reserved=reserved_address,
        ghost_pool=ghost, gone_reservation=gone_reservation, orphan_endpoint="orphan",
    )


def held_by(namespace: str) -> dict[str, str]:
    """``{pod name: address}`` of every allocation of the namespace."""
    return dict(Allocation.objects.filter(endpoint__namespace=namespace).values_list("endpoint__name", "address"))


# -------------------------------------------------------------------------------------------------- tests


@pytest.mark.lab
def test_every_planted_problem_is_reported_as_json_with_exit_status_1(planted, lab_env):
    # When
    code, report = run_check_json()
    # Then
    expected = planted.expected()
    assert code == 1
    assert set(report) == {*expected, "released", "problems"}
    for category, findings in expected.items():
        assert report[category] == findings, category
    assert report["released"] == []
    assert report["problems"] == 10
    # Reporting alone changes nothing.
    assert held_by(planted.ns) == {"gone": planted.gone[1], "recreated": planted.recreated[1],
                                   **planted.kept_allocations()}
    # And the command line an operator runs says the same, with exit status 1
    done = subprocess.run([sys.executable, "manage.py", "ipam_check", "--json"], cwd=REPO, env=lab_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == report


@pytest.mark.lab
def test_the_table_names_each_category_and_each_finding(planted):
    # When
    code, out = run_check()
    # Then
    lines = out.splitlines()
    assert code == 1
    assert "Leaked addresses (no live pod needs them): 2" in lines
    assert "Pods without their addresses: 2" in lines
    assert "Duplicate addresses: 1" in lines
    assert "Allocations outside their pool (or on excludeIPs): 1" in lines
    assert "Allocations on reserved addresses: 1" in lines
    assert "CRD and database disagree: 3" in lines
    for findings in planted.expected().values():
        for finding in findings:
            assert f"  {finding}" in lines
    assert not any(line.startswith("Released now") for line in lines)
    assert lines[-1] == "10 problem(s) found"


@pytest.mark.lab
def test_release_leaks_releases_exactly_the_provable_leaks(planted):
    # When
    code, report = run_check_json("--release-leaks")
    # Then: the two leaks are gone, everything a live pod or the StatefulSet needs stays
    assert code == 1, "the other problems are still there"
    assert report["released"] == [planted.gone[1], planted.recreated[1]]
    assert held_by(planted.ns) == planted.kept_allocations()
    assert not Endpoint.objects.filter(namespace=planted.ns, name__in=["gone", "recreated"]).exists()
    history = AddressHistory.objects.filter(pod_namespace=planted.ns, release_reason="gc-scan")
    assert sorted(history.values_list("pod_name", "pod_uid", "address")) == [
        ("gone", *planted.gone), ("recreated", *planted.recreated)]

    # And when checked again, no leak is left and every other finding still is
    code, again = run_check_json()
    assert code == 1
    assert again["leaked"] == [] and again["released"] == []
    expected = planted.expected()
    for category in ("pods_without_addresses", "duplicates", "outside_pool", "on_reserved", "crd_disagreements"):
        assert again[category] == expected[category], category
    assert again["problems"] == 8


@pytest.mark.lab
def test_a_clean_cluster_exits_0_with_ok(cluster):
    # Given: a running pod that holds and shows its address, and a StatefulSet pod that is still wanted
    pool = f"clean-{cluster.octet}"
    f.pool(pool, cluster.subnet(0), [f"{cluster.address(0, 10)}-{cluster.address(0, 20)}"])
    cluster.running_pod("web", pool=pool)
    cluster.statefulset_create("cache", replicas=2, pool=pool)
    wait_for("cache-1", lambda: cluster.client.pod(cluster.namespace, "cache-1"), timeout=30)
    cache1 = cluster.pod_bind("cache-1")
    cluster.allocate(cache1)
    cluster.pod_delete("cache-1")
    # When
    code, out = run_check()
    # Then
    assert code == 0, out
    assert out.splitlines()[-1] == "OK: no problems found"
    code, report = run_check_json("--release-leaks")
    assert code == 0 and report["problems"] == 0 and report["released"] == []
    assert set(held_by(cluster.namespace)) == {"web", "cache-1"}


@pytest.mark.lab
def test_after_releasing_its_only_problems_the_check_exits_0(cluster):
    # Given: one leak and nothing else
    pool = f"leaky-{cluster.octet}"
    f.pool(pool, cluster.subnet(0), [f"{cluster.address(0, 10)}-{cluster.address(0, 20)}"])
    pod, address = cluster.running_pod("gone", pool=pool)
    cluster.pod_delete("gone")
    # When
    code, out = run_check("--release-leaks")
    # Then
    assert code == 0, out
    lines = out.splitlines()
    assert "Released now (--release-leaks): 1" in lines and f"  {address}" in lines
    assert held_by(cluster.namespace) == {}
    code, out = run_check()
    assert code == 0 and out.splitlines()[-1] == "OK: no problems found"


@pytest.mark.lab
def test_release_reads_the_pod_again_so_an_endpoint_newer_than_the_pod_list_is_kept(cluster, mirror_lab):
    # Given: right after the check has listed the pods, a new pod is created and gets its address (the other
    # writer, run at that exact point)
    pool = f"late-{cluster.octet}"
    f.pool(pool, cluster.subnet(0), [f"{cluster.address(0, 10)}-{cluster.address(0, 20)}"])
    late: dict = {}

    class PodsListedThenAdd(KubeClient):
        def list(self, resource, **kwargs):
            listed = super().list(resource, **kwargs)
            if resource == resources.POD and not late:
                late["pod"], late["address"] = cluster.running_pod("late", pool=pool)
            return listed

    client = PodsListedThenAdd(mirror_lab.api)
    # When
    report = ipam_check(client=client, release_leaks=True)
    # Then: the snapshot had no such pod, but the re-read found it alive: no leak, nothing released
    assert late, "the other writer ran"
    assert report.leaked == [] and report.released == []
    assert held_by(cluster.namespace) == {"late": late["address"]}


def _caches_clear() -> None:
    for cache in (kube_client, kube_config, gc_config):
        cache.cache_clear()


def _dead_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose API server port nobody listens on."""
    path = tmp_path / "dead-kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "dead",
        "clusters": [{"name": "dead", "cluster": {"server": f"https://127.0.0.1:{free_port()}",
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "dead", "user": {"token": "nobody"}}],
        "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "dead"}}],
    }))
    return path


def test_unreachable_kubernetes_is_exit_status_2_with_a_clear_message(tmp_path, monkeypatch):
    # Given
    monkeypatch.setenv("KUBECONFIG", str(_dead_kubeconfig(tmp_path)))
    _caches_clear()
    # When
    with pytest.raises(CommandError) as failed:
        run_check()
    # Then
    assert failed.value.returncode == 2
    assert str(failed.value).startswith("cannot check: Kubernetes API unreachable (GET /api/v1/pods")


def test_unreadable_kubeconfig_is_exit_status_2(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    _caches_clear()
    with pytest.raises(CommandError) as failed:
        run_check()
    assert failed.value.returncode == 2
    assert "cannot check: cannot load Kubernetes credentials from kubeconfig" in str(failed.value)


@pytest.mark.lab
def test_manage_py_exits_2_when_kubernetes_is_unreachable(tmp_path, lab_env):
    # Given: the real command line, as an operator runs it
    env = {**lab_env, "KUBECONFIG": str(_dead_kubeconfig(tmp_path))}
    # When
    done = subprocess.run([sys.executable, "manage.py", "ipam_check"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    # Then
    assert done.returncode == 2, done.stderr
    assert "CommandError: cannot check: Kubernetes API unreachable" in done.stderr
    assert done.stdout == ""


@pytest.mark.lab
def test_a_pod_still_terminating_past_its_deadline_is_no_provable_leak(cluster):
    # Given: a pod deleted with a 1 s grace period on a Ready node; with no kubelet to confirm, it stays terminating
    # past its deadline (a zombie: the GC's switches decide about it, the pod object and its UID still exist)
    pool = f"zombie-{cluster.octet}"
    f.pool(pool, cluster.subnet(0), [f"{cluster.address(0, 10)}-{cluster.address(0, 20)}"])
    pod, address = cluster.running_pod("zombie", pool=pool)
    cluster.client.request("DELETE", resources.POD.path("zombie", namespace=cluster.namespace),
                           body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 1})
    deadline = podgc.parse_time(crd.meta(cluster.client.pod(cluster.namespace, "zombie"))["deletionTimestamp"])
    wait_for("the deletion deadline to pass", lambda: timezone.now() > deadline, timeout=10)
    # When
    code, report = run_check_json("--release-leaks")
    # Then
    assert crd.uid_of(cluster.client.pod(cluster.namespace, "zombie")) == crd.uid_of(pod), "still there"
    assert report["leaked"] == [] and report["released"] == []
    assert held_by(cluster.namespace) == {"zombie": address}
    assert code == 0


@pytest.mark.lab
def test_dual_stack_pods_are_matched_by_address_whatever_its_spelling(cluster):
    # Given: a dual-stack pod that holds and shows both its addresses, the IPv6 one spelled out in full (as a
    # runtime may report it), and a second pod that shows the same IPv6 address spelled short
    v4, v6 = f"ds4-{cluster.octet}", f"ds6-{cluster.octet}"
    f.pool(v4, cluster.subnet(0), [f"{cluster.address(0, 10)}-{cluster.address(0, 20)}"])
    f.pool(v6, f"fd00:{cluster.octet}::/64", [f"fd00:{cluster.octet}::10-fd00:{cluster.octet}::20"])
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "ds", "namespace": cluster.namespace,
                         "annotations": {POOL_ANNOTATION: json.dumps({"ipv4": [v4], "ipv6": [v6]})}},
            "spec": {"nodeName": cluster.node, "containers": PAUSE}}
    pod = cluster.client.create(resources.POD, body)
    result = allocation.ippool_allocate(request=allocation.AllocateRequest(facts=cluster.facts(pod), if_name="eth0"))
    held = sorted(ip["address"].split("/")[0] for ip in result["ips"])
    assert held == [cluster.address(0, 10), f"fd00:{cluster.octet}::10"]
    long_v6 = f"fd00:{cluster.octet}:0:0:0:0:0:10"
    cluster.pod_show("ds", cluster.address(0, 10), long_v6)
    cluster.pod_create("twin")
    cluster.pod_show("twin", f"fd00:{cluster.octet}::10")
    # When
    code, report = run_check_json()
    # Then: the first pod holds what it shows; the twin shows the same IPv6 address without holding it
    short_v6 = f"fd00:{cluster.octet}::10"
    twin_uid = crd.uid_of(cluster.client.pod(cluster.namespace, "twin"))
    assert report["pods_without_addresses"] == [
        f"{cluster.namespace}/twin ({twin_uid}) shows {short_v6}, which Spiderweb does not record for it"]
    assert report["duplicates"] == [f"{short_v6} shown by {cluster.namespace}/ds, {cluster.namespace}/twin"]
    assert code == 1


@pytest.mark.lab
def test_a_statefulset_pod_whose_ordinal_is_no_longer_wanted_is_a_leak(cluster):
    # Given: StatefulSet shrink had ordinals 0 and 1 with addresses; it is scaled down to one replica and pod
    # shrink-1 is gone (the controller deleted it; no kubelet here, so it is forced)
    pool = f"shrink-{cluster.octet}"
    f.pool(pool, cluster.subnet(0), [f"{cluster.address(0, 10)}-{cluster.address(0, 20)}"])
    cluster.statefulset_create("shrink", replicas=2, pool=pool)
    addresses = {}
    for name in ("shrink-0", "shrink-1"):
        wait_for(name, lambda name=name: cluster.client.pod(cluster.namespace, name), timeout=30)
        addresses[name] = cluster.allocate(cluster.pod_bind(name))
        cluster.pod_show(name, addresses[name])
    cluster.client.patch(resources.STATEFULSET, "shrink", {"spec": {"replicas": 1}}, namespace=cluster.namespace)
    cluster.pod_delete("shrink-1")
    # When
    code, report = run_check_json("--release-leaks")
    # Then: only the ordinal the StatefulSet no longer wants is released
    assert not Endpoint.objects.filter(namespace=cluster.namespace, name="shrink-1").exists()
    assert [line.split(" held by ")[0] for line in report["leaked"]] == [addresses["shrink-1"]]
    assert report["leaked"][0].endswith("): pod not found")
    assert report["released"] == [addresses["shrink-1"]]
    assert held_by(cluster.namespace) == {"shrink-0": addresses["shrink-0"]}
    assert code == 0
