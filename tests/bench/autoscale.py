"""`make bench-autoscale`: what a SpiderSubnet auto pool costs a Deployment, in the e2e lab (tests/e2e/README.md).

Real kube-apiserver and kube-controller-manager, the fake kubelet running Multus → macvlan + our IPAM + coordinator on
two netns nodes, the portal, the Celery worker with beat and the watcher: the e2e fixtures, reused as they are (this
module runs under pytest so that they can be; ``main`` starts it).

* static: a Deployment of ``BENCH_PODS`` (100) replicas on a hand-made SpiderIPPool of ``BENCH_PODS + 1``
  addresses: the time from its creation until every pod is Running with an address (``ready_s_static``), then
  deleted;
* auto: the same Deployment with ``ipam.spidernet.io/subnet`` and ``ippool-ip-number: "+1"``: the same time
  (``ready_s``; the application controller makes the pool meanwhile), then deleted (the pool is reclaimed).

They run static, auto, auto, static, and each figure is the mean of its pair: on a shared machine the load drifts
by tens of percent within minutes, and this order cancels a drift that is linear. The second auto run also scales
to twice as many replicas (``scale_up_s``: every pod Running, the pool grown) and to 0 (``scale_down_s``: no pod,
no address held, the pool shrunk to its one spare) before it is deleted.

A warm-up Deployment runs first (agents, portal and Multus caches), so no measured run pays for it. Leaks,
counted at the end: addresses still allocated, endpoints and SpiderEndpoints, sandboxes the kubelet still holds,
auto pools still there, subnet addresses still pre-allocated, and any address two pods held at once. Last line:

autoscale pods=<n> ready_s=<s> ready_s_static=<s> scale_up_s=<s> scale_down_s=<s> leaks=<n>

Needs root and the lab build, like tests/e2e. Uses its own test database (``test_spiderweb_autoscale_e2e``) and
Redis database (``SPIDERWEB_TEST_E2E_REDIS_DB``, default 11), so it runs beside the test suite.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import pytest

from tests.bench.common import lab_bench_result_path, lab_bench_run
from tests.e2e import conftest as e2e_lab
from tests.mirror.lab import wait_for

# The e2e lab's fixtures, as they are; names in the test module win over every conftest's and plugin's.
django_db_setup, _db_open, e2e_host, workdir, lab, lab_env = (
    e2e_lab.django_db_setup, e2e_lab._db_open, e2e_lab.e2e_host, e2e_lab.workdir, e2e_lab.lab, e2e_lab.lab_env)
portal, mirror, agent_kubeconfig, topology, cni_bin, cluster_rows, spider_coordinator, agents, kubelet, e2e = (
    e2e_lab.portal, e2e_lab.mirror, e2e_lab.agent_kubeconfig, e2e_lab.topology, e2e_lab.cni_bin, e2e_lab.cluster_rows,
    e2e_lab.spider_coordinator, e2e_lab.agents, e2e_lab.kubelet, e2e_lab.e2e)

PODS = int(os.environ.get("BENCH_PODS", "100"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "900"))
RESULT_ENV = "SPIDERWEB_BENCH_AUTOSCALE_RESULT"
SETTLE_SECONDS = 60
SUBNET, SUBNET_CIDR, SUBNET_IPS = "bench-subnet", "10.90.0.0/16", ["10.90.1.1-10.90.4.254"]
STATIC_POOL, STATIC_CIDR = "bench-static", "10.91.0.0/16"


# --------------------------------------------------------------------------------------------- the lab side


def _poll(what: str, check, timeout: float = TIMEOUT, interval: float = 0.5):
    """The lab's ``wait_for`` with the bench's defaults."""
    return wait_for(what, check, timeout=timeout, interval=interval)


def _deployment(name: str, replicas: int, annotations: dict) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels, "annotations": annotations},
                                  "spec": {"containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}],
                                           "terminationGracePeriodSeconds": 30}}}}


class Run:
    """One namespace's Deployment, timed. ``doubles``: the most addresses two live pods held at once; ``pool_after``:
    seconds from the Deployment's creation until its auto pool existed (``None``: it has none)."""

    def __init__(self, e2e, namespace: str, name: str) -> None:
        self.e2e, self.namespace, self.name = e2e, namespace, name
        self.doubles = 0
        self.uid = ""
        self.created = 0.0
        self.pool_after: float | None = None

    def pods(self) -> list:
        return self.e2e.core.list_namespaced_pod(self.namespace, label_selector=f"app={self.name}").items

    def running(self, count: int) -> bool:
        pods = self.pods()
        live = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip
                and not p.metadata.deletion_timestamp]
        addresses = [p.status.pod_ip for p in live]
        self.doubles = max(self.doubles, len(addresses) - len(set(addresses)))
        if self.uid and self.pool_after is None and _auto_pool(self.uid) is not None:
            self.pool_after = time.monotonic() - self.created
        return len(pods) == len(live) == count

    def sandbox_failures(self) -> int:
        """CNI ADDs the kubelet saw fail (``FailedCreatePodSandBox`` Events): pods that waited for an address."""
        events = self.e2e.core.list_namespaced_event(self.namespace).items
        return sum(e.count or 1 for e in events if e.reason == "FailedCreatePodSandBox")

    def create(self, replicas: int, annotations: dict) -> float:
        self.e2e.core.create_namespace({"apiVersion": "v1", "kind": "Namespace",
                                        "metadata": {"name": self.namespace}})
        self.created = start = time.monotonic()
        body = _deployment(self.name, replicas, annotations)
        self.uid = self.e2e.apps.create_namespaced_deployment(self.namespace, body).metadata.uid
        _poll(f"{replicas} running pods of {self.namespace}/{self.name}", lambda: self.running(replicas))
        return time.monotonic() - start

    def scale(self, replicas: int, *also) -> float:
        start = time.monotonic()
        self.e2e.apps.patch_namespaced_deployment_scale(self.name, self.namespace, {"spec": {"replicas": replicas}})
        _poll(f"{replicas} running pods of {self.namespace}/{self.name}", lambda: self.running(replicas)
              and all(check() for check in also))
        return time.monotonic() - start

    def delete(self) -> None:
        self.e2e.apps.delete_namespaced_deployment(self.name, self.namespace)
        _poll(f"pods of {self.namespace}/{self.name} gone", lambda: not self.pods())
        _poll(f"addresses of {self.namespace} released", lambda: not _allocations(self.namespace))


def _allocations(namespace: str) -> int:
    from spiderweb.ipam.models import Allocation

    return Allocation.objects.filter(endpoint__namespace=namespace).count()


def _auto_pool(app_uid: str):
    from spiderweb.ipam.models import IPPool

    return IPPool.objects.filter(auto_app_uid=app_uid).first()


def _auto_pool_size(app_uid: str, size: int) -> bool:
    pool = _auto_pool(app_uid)
    return pool is not None and pool.total_ip_count == size


def _static_run(run: Run, annotations: dict) -> float:
    """The Deployment on the hand-made pool: created, timed, deleted."""
    seconds = run.create(PODS, annotations)
    print(f"static pool ({PODS + 1} addresses): {PODS} pods running in {seconds:.1f} s "
          f"({run.sandbox_failures()} failed ADDs)")
    run.delete()
    return seconds


def _auto_run(run: Run, annotations: dict, *, scale: bool) -> tuple[float, tuple[float, float] | None]:
    """The Deployment on its auto pool: created, timed, scaled to twice as many pods and to none (when ``scale``),
    deleted; its pool is reclaimed."""
    seconds = run.create(PODS, annotations)
    uid = run.uid
    _poll(f"the auto pool at {PODS + 1}", lambda: _auto_pool_size(uid, PODS + 1), 60)
    print(f"auto pool (subnet, +1): {PODS} pods running in {seconds:.1f} s (pool made after "
          f"{run.pool_after:.1f} s; {run.sandbox_failures()} failed ADDs)")
    scaled = None
    if scale:
        failed = run.sandbox_failures()
        up = run.scale(2 * PODS, lambda: _auto_pool_size(uid, 2 * PODS + 1))
        print(f"scale {PODS} → {2 * PODS}: {up:.1f} s (pool {2 * PODS + 1}; {run.sandbox_failures() - failed} "
              f"failed ADDs)")
        down = run.scale(0, lambda: not _allocations(run.namespace), lambda: _auto_pool_size(uid, 1))
        print(f"scale {2 * PODS} → 0: {down:.1f} s (no pod, no address held, pool 1)")
        scaled = (up, down)
    pool_name = _auto_pool(uid).name
    run.delete()
    _poll(f"auto pool {pool_name} reclaimed", lambda: _auto_pool(uid) is None, 120)
    return seconds, scaled


def _crd(e2e, plural: str, body: dict) -> None:
    from spiderweb.k8s.crd import GROUP, VERSION

    e2e.custom.create_cluster_custom_object(GROUP, VERSION, plural, {"apiVersion": f"{GROUP}/{VERSION}", **body})


def _leaks(e2e, namespaces: list[str], app_uids: list[str], runs: list[Run]) -> dict:
    """What is left once every Deployment is gone (each is a leak)."""
    from spiderweb.ipam.models import Allocation, Endpoint, IPPool
    from spiderweb.k8s.crd import GROUP, VERSION

    subnet = e2e.custom.get_cluster_custom_object(GROUP, VERSION, "spidersubnets", SUBNET).get("status") or {}
    static = e2e.custom.get_cluster_custom_object(GROUP, VERSION, "spiderippools", STATIC_POOL).get("status") or {}
    return {
        "allocations": Allocation.objects.filter(endpoint__namespace__in=namespaces).count(),
        "endpoints": Endpoint.objects.filter(namespace__in=namespaces).count(),
        "spiderendpoints": sum(len(e2e.custom.list_namespaced_custom_object(GROUP, VERSION, ns,
                                                                            "spiderendpoints")["items"])
                               for ns in namespaces),
        "sandboxes": sum(1 for key in e2e.kubelet.sandboxes if key[0] in namespaces),
        "auto_pools": IPPool.objects.filter(auto_app_uid__in=app_uids).count(),
        "subnet_preallocated": subnet.get("allocatedIPCount") or 0,
        "static_pool_allocated": static.get("allocatedIPCount") or 0,
        "doubles": sum(run.doubles for run in runs),
    }


@pytest.fixture
def bench_result():
    """Where the numbers go: a JSON file ``main`` reads once pytest (and its teardown output) is done."""
    return lab_bench_result_path(RESULT_ENV, "tests.bench.autoscale")


def test_autoscale(e2e, bench_result):
    """The benchmark itself (see the module docstring); one test so the lab is built once."""
    from spiderweb.engine.keys import ANNO_IPPOOL, ANNO_IPPOOL_IP_NUMBER, ANNO_SUBNET

    tag = f"{os.getpid() % 10000}"
    kubelet_log = logging.FileHandler(e2e.workdir / "kubelet.log")  # kept beside the other processes' logs
    kubelet_log.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("tests.e2e.fake_kubelet").addHandler(kubelet_log)
    _crd(e2e, "spidersubnets", {"kind": "SpiderSubnet", "metadata": {"name": SUBNET},
                                "spec": {"subnet": SUBNET_CIDR, "ips": SUBNET_IPS, "gateway": "10.90.0.1"}})
    _crd(e2e, "spiderippools", {"kind": "SpiderIPPool", "metadata": {"name": STATIC_POOL},
                                "spec": {"subnet": STATIC_CIDR, "ips": [f"10.91.1.1-10.91.1.{PODS + 1}"],
                                         "gateway": "10.91.0.1"}})
    static_annotations = {ANNO_IPPOOL: json.dumps({"ipv4": [STATIC_POOL]})}
    auto_annotations = {ANNO_SUBNET: json.dumps({"ipv4": [SUBNET]}), ANNO_IPPOOL_IP_NUMBER: "+1"}

    warm = Run(e2e, f"bench-warm-{tag}", "warm")
    warm.create(4, static_annotations)
    warm.delete()
    print(f"bench-autoscale: {PODS} replicas, 2 nodes, Multus → macvlan + spiderpool + coordinator, fake kubelet; "
          f"static, auto, auto, static (the mean of each pair cancels a load that drifts during the run)")

    runs: list[Run] = []
    ready: dict[str, list[float]] = {"static": [], "auto": []}
    for i, kind in enumerate(("static", "auto", "auto", "static")):
        run = Run(e2e, f"bench-{kind}{i}-{tag}", kind)
        runs.append(run)
        if kind == "static":
            ready[kind].append(_static_run(run, static_annotations))
        else:
            seconds, scaled = _auto_run(run, auto_annotations, scale=len(ready["auto"]) == 1)
            ready[kind].append(seconds)
            if scaled:
                scale_up_s, scale_down_s = scaled
    ready_s, ready_s_static = (sum(ready["auto"]) / 2, sum(ready["static"]) / 2)
    print(f"ready: auto {ready_s:.1f} s, static {ready_s_static:.1f} s "
          f"({(ready_s / ready_s_static - 1) * 100:+.0f} % for the auto pool)")

    namespaces = [run.namespace for run in (warm, *runs)]
    apps = [run.uid for run in runs if run.name == "auto"]
    # The mirror publishes in batches (status every second, SpiderEndpoints after their rows): a leak is what is
    # still there once it has had time to catch up.
    settle = time.monotonic()
    leaks = _poll("nothing left", lambda: (found := _leaks(e2e, namespaces, apps, runs))
                  and (not any(found.values()) or time.monotonic() - settle > SETTLE_SECONDS) and found)
    print(f"settled in {time.monotonic() - settle:.1f} s")
    print("leaks: " + ", ".join(f"{k}={v}" for k, v in leaks.items()))
    bench_result.write_text(json.dumps({"pods": PODS, "ready_s": ready_s, "ready_s_static": ready_s_static,
                                        "scale_up_s": scale_up_s, "scale_down_s": scale_down_s,
                                        "leaks": sum(leaks.values())}))
    for namespace in namespaces:
        e2e.core.delete_namespace(namespace)


# --------------------------------------------------------------------------------------------- the command


def main() -> int:
    """Run ``test_autoscale`` under pytest (own test database and Redis database), then print the last line."""
    r = lab_bench_run(str(Path(__file__).resolve()), "autoscale", RESULT_ENV, "11")
    if isinstance(r, int):
        return r
    print(f"autoscale pods={r['pods']} ready_s={r['ready_s']:.1f} ready_s_static={r['ready_s_static']:.1f} "
          f"scale_up_s={r['scale_up_s']:.1f} scale_down_s={r['scale_down_s']:.1f} leaks={r['leaks']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
