"""IP GC (spec §7): release the addresses of pods that are gone, never those of a pod that still needs them.

Three paths, each level-based and safe to run twice or concurrently:

* **Tracing** (spec §7.2): the watcher hands every pod event to :func:`pod_event_trace`, which records a
  ``TracedPod`` row (pod deleted: due now; terminating: at ``deletionTimestamp`` + delay, A13; finished: after its
  containers ended + grace + delay) and asks for an immediate release when it is due. Rows survive a killed
  worker, watcher or broker: the trace sweep (beat) releases whatever is due.
* **Release** (:func:`traced_pod_release`): re-reads everything fresh — the endpoint (same pod UID?), the owner
  (a StatefulSet ordinal or VM still wanted keeps its addresses), the pod (alive again?), the node gate — and
  releases through ``ippool_release``, which is guarded by the pod UID under the endpoint's row lock: a pod
  re-created with the same name in the meantime keeps its addresses.
* **Full scan** (spec §7.3, :func:`gc_scan`): every endpoint against the API server's pods, by namespace/name and
  UID, under a lease so two scans never overlap; before a release the pod is read again, so an endpoint made
  after the pod list was taken is never mistaken for a leak.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import dataclass, field

from django.utils import timezone

from spiderweb import metrics
from spiderweb.controllers.config import kube_client
from spiderweb.controllers.enqueue import task_send
from spiderweb.controllers.gc.config import gc_config
from spiderweb.controllers.gc.models import TracedPod
from spiderweb.ipam.allocation import endpoints_without_addresses_delete, ippool_release, is_static_owner
from spiderweb.ipam.models import GC_RELEASE_SCAN, GC_RELEASE_TRACED, ClusterSettings, Endpoint
from spiderweb.k8s import crd, podgc, resources
from spiderweb.k8s import pods as pod_rules
from spiderweb.k8s.client import KubeClient
from spiderweb.k8s.crd import meta
from spiderweb.k8s.watch import WatchEvent

log = logging.getLogger(__name__)

RELEASE_TASK = "workers.gc.gc_release_pod_task"
SCAN_TASK = "workers.gc.gc_scan_task"
MAX_ATTEMPTS = 5
RETRY_GAP = _dt.timedelta(seconds=5)
SWEEP_BATCH = 500


# ---------------------------------------------------------------------------------------------------- tracing


def pod_event_trace(event: WatchEvent, *, now: _dt.datetime | None = None) -> str:
    """The watcher's pod listener: record a trace for a deleted, terminating or finished pod; say what was done.

    No Kubernetes call here (the watcher must keep up with the stream): the owner, the pod and the node are
    checked when the trace is released. Every deleted pod is traced, even one with no endpoint yet, because its
    first ADD may still be committing.
    """
    pod = event.object
    if (pod.get("spec") or {}).get("hostNetwork"):
        return "host network"
    decision = podgc.trace_decision(pod, deleted=event.type == "DELETED", node_ready=True,
                                    switches=gc_config().switches, now=now or timezone.now())
    if decision.action != podgc.TRACE:
        return decision.reason
    m = meta(pod)
    trace_record(namespace=str(m.get("namespace") or ""), name=str(m.get("name") or ""), uid=str(m.get("uid") or ""),
                 node=str((pod.get("spec") or {}).get("nodeName") or ""), decision=decision, now=now)
    return decision.reason


def trace_record(*, namespace: str, name: str, uid: str, node: str, decision: podgc.Decision,
                 now: _dt.datetime | None = None) -> TracedPod | None:
    """Upsert the trace of one pod incarnation (a later event moves its deadline) and, when it is due, ask a
    worker to release it now (the sweep would anyway)."""
    if not uid or not name:
        return None
    traced, _ = TracedPod.objects.update_or_create(
        uid=uid, defaults=dict(namespace=namespace, name=name, node=node, reason=decision.reason[:200],
                               stop_at=decision.stop_at))
    if decision.stop_at <= (now or timezone.now()):
        task_send(RELEASE_TASK, uid)
    return traced


def traced_pods_sweep(*, client: KubeClient | None = None, now: _dt.datetime | None = None) -> dict:
    """Beat, every ``SPIDERPOOL_GC_TRACE_POD_GAP_DURATION`` s: release every trace whose time has come."""
    if not gc_config().enabled:
        return {"disabled": True}
    now = now or timezone.now()
    counts: dict[str, int] = {}
    due = list(TracedPod.objects.filter(stop_at__lte=now).values_list("uid", flat=True)[:SWEEP_BATCH])
    for uid in due:
        outcome = traced_pod_release(uid, client=client, now=now)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def traced_pod_release(uid: str, *, client: KubeClient | None = None, now: _dt.datetime | None = None) -> str:
    """Release one traced pod incarnation if, read fresh, it is still garbage; drop the trace either way.

    A Kubernetes read that fails leaves the trace for a later sweep (up to ``MAX_ATTEMPTS``; the full scan
    covers the rest) and re-raises, so the task retries.
    """
    now = now or timezone.now()
    traced = TracedPod.objects.filter(uid=uid).first()
    if traced is None:
        return "gone"
    if traced.stop_at > now:
        return "not due"
    client = client or kube_client()
    try:
        outcome = _release_if_garbage(traced, client, now)
    except Exception:
        attempts = traced.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            traced.delete()
            log.warning("GC gave up tracing %s/%s (%s) after %d attempts; the full scan will decide",
                        traced.namespace, traced.name, uid, attempts)
        else:
            TracedPod.objects.filter(pk=traced.pk).update(attempts=attempts, stop_at=now + RETRY_GAP * attempts)
        raise
    TracedPod.objects.filter(pk=traced.pk, stop_at=traced.stop_at).delete()
    return outcome


def _release_if_garbage(traced: TracedPod, client: KubeClient, now: _dt.datetime) -> str:
    endpoint = Endpoint.objects.filter(namespace=traced.namespace, name=traced.name, uid=traced.uid).first()
    if endpoint is None:
        # Nothing recorded under this UID: released already (CNI DEL), or re-created. A DEL that raced the
        # pod's first ADD is covered by the allocator's per-pod ordering; releasing by UID costs nothing here.
        released = _gc_release("trace", namespace=traced.namespace, name=traced.name, pod_uid=traced.uid,
                               reason=GC_RELEASE_TRACED)
        return "released" if released else "nothing held"
    checker = OwnerValidity(client)
    if checker.static(endpoint) and checker.valid(endpoint):
        return "kept: StatefulSet/VM still wants it"
    pod = client.pod(traced.namespace, traced.name)
    if pod is not None and meta(pod).get("uid") == traced.uid:
        decision = podgc.trace_decision(pod, deleted=False, node_ready=_node_ready(client, pod),
                                        switches=gc_config().switches, now=now)
        if decision.action != podgc.TRACE:
            return f"kept: {decision.reason}"
        if decision.stop_at > now:
            TracedPod.objects.filter(pk=traced.pk).update(stop_at=decision.stop_at)
            return "not due"
    released = _gc_release("trace", namespace=traced.namespace, name=traced.name, pod_uid=traced.uid,
                           reason=GC_RELEASE_TRACED)
    if released:
        log.info("GC released %s of %s/%s (%s): %s", ", ".join(released), traced.namespace, traced.name,
                 traced.uid, traced.reason)
    return "released" if released else "nothing held"


def _gc_release(path: str, **release) -> list[str]:
    """``ippool_release`` counted as Spiderpool counts GC releases (spec §13.2), plus what it released by path."""
    metrics.IP_GC.inc()
    try:
        released = ippool_release(**release)
    except Exception:
        metrics.IP_GC_FAILURES.inc()
        raise
    metrics.GC_RELEASED_IPS.labels(path=path).inc(len(released))
    return released


def _node_ready(client: KubeClient, pod: dict) -> bool:
    node_name = (pod.get("spec") or {}).get("nodeName")
    return bool(node_name) and podgc.node_is_ready(client.node(node_name))


# ------------------------------------------------------------------------------------------ static owners


@dataclass
class OwnerValidity:
    """Spec §5: does a StatefulSet still want this ordinal, does a VM still want its VMI? One read per owner."""

    client: KubeClient
    cluster: ClusterSettings = field(default_factory=ClusterSettings.load)
    _cache: dict = field(default_factory=dict)

    def static(self, endpoint: Endpoint) -> bool:
        """A StatefulSet or KubeVirt endpoint whose feature switch is on keeps its addresses while valid."""
        return is_static_owner(endpoint.owner_kind, self.cluster)

    def valid(self, endpoint: Endpoint) -> bool:
        if endpoint.owner_kind == pod_rules.KIND_STATEFULSET:
            sts = self._get(resources.STATEFULSET, endpoint.namespace, endpoint.owner_name)
            ordinal = pod_rules.statefulset_ordinal(endpoint.name, endpoint.owner_name)
            return pod_rules.statefulset_keeps_ordinal(sts, ordinal)
        if endpoint.owner_kind == pod_rules.KIND_VMI:
            vmi = self._get(resources.VIRTUAL_MACHINE_INSTANCE, endpoint.namespace, endpoint.name)
            vm = self._get(resources.VIRTUAL_MACHINE, endpoint.namespace, endpoint.name)
            return pod_rules.kubevirt_keeps_addresses(vmi, vm)
        return False

    def _get(self, resource: resources.Resource, namespace: str, name: str) -> dict | None:
        key = (resource.kind, namespace, name)
        if key not in self._cache:
            self._cache[key] = self.client.get(resource, name, namespace=namespace)
        return self._cache[key]


# ------------------------------------------------------------------------------------------------ full scan


def gc_scan(*, client: KubeClient | None = None, now: _dt.datetime | None = None) -> dict:
    """Spec §7.3: compare every endpoint with the API server's pods; release, trace or keep. Returns counts."""
    if not gc_config().enabled:
        metrics.GC_SCANS.labels(result="disabled").inc()
        return {"disabled": True}
    started = time.perf_counter()
    try:
        counts = _gc_scan(client=client, now=now)
    except Exception:
        metrics.GC_SCANS.labels(result="failed").inc()
        raise
    finally:
        metrics.GC_SCAN_DURATION.observe(time.perf_counter() - started)
    metrics.GC_SCANS.labels(result="done").inc()
    return counts


def _gc_scan(*, client: KubeClient | None, now: _dt.datetime | None) -> dict:
    client = client or kube_client()
    switches = gc_config().switches
    pods = {(meta(p).get("namespace"), meta(p).get("name")): p for p in client.list(resources.POD)[0]}
    ready = {meta(n).get("name"): podgc.node_is_ready(n) for n in client.list(resources.NODE)[0]}
    owners = OwnerValidity(client)
    counts = {"endpoints": 0, "released": 0, "traced": 0, "kept": 0}
    for endpoint in Endpoint.objects.order_by("pk").iterator(chunk_size=1000):
        counts["endpoints"] += 1
        decide = _scan_decider(endpoint, owners, ready, switches)
        decision = decide(pods.get((endpoint.namespace, endpoint.name)), now or timezone.now())
        if decision.action == podgc.RELEASE:
            # The list is a snapshot: read the pod again so an endpoint written after it is never taken for a leak.
            decision = decide(client.pod(endpoint.namespace, endpoint.name), now or timezone.now())
        if decision.action == podgc.RELEASE:
            released = gc_release_endpoint(endpoint, reason=decision.reason)
            counts["released" if released else "kept"] += 1
        elif decision.action == podgc.TRACE:
            trace_record(namespace=endpoint.namespace, name=endpoint.name, uid=endpoint.uid, node=endpoint.node,
                         decision=decision, now=now)
            counts["traced"] += 1
        else:
            counts["kept"] += 1
    if ClusterSettings.load().enable_clean_outdated_endpoint:
        counts["outdated_endpoints"] = outdated_endpoints_clean(client)
    if counts["released"] or counts.get("outdated_endpoints"):
        log.info("GC full scan: %s", counts)
    return counts


def outdated_endpoints_clean(client: KubeClient) -> int:
    """``enableCleanOutdatedEndpoint`` (spec §6, §7.3 end): endpoints that no address refers to go, in the database
    and as SpiderEndpoints (their finalizer released), including SpiderEndpoints the portal never wrote (left by an
    earlier Spiderpool, or by a database restored from an older backup)."""
    removed = endpoints_without_addresses_delete()
    known = set(Endpoint.objects.values_list("namespace", "name"))
    for obj in client.list(crd.SPIDER_ENDPOINT)[0]:
        m = meta(obj)
        if (m.get("namespace"), m.get("name")) in known:
            continue
        client.delete(crd.SPIDER_ENDPOINT, m["name"], namespace=m["namespace"], uid=crd.uid_of(obj))
        fresh = client.get(crd.SPIDER_ENDPOINT, m["name"], namespace=m["namespace"])
        if fresh is not None and crd.uid_of(fresh) == crd.uid_of(obj):
            client.finalizer_remove(crd.SPIDER_ENDPOINT, fresh)
        log.info("GC removed the outdated SpiderEndpoint %s/%s (no address refers to it)", m["namespace"], m["name"])
        removed += 1
    return removed


def _scan_decider(endpoint: Endpoint, owners: OwnerValidity, ready: dict[str, bool], switches: podgc.GcSwitches):
    static = owners.static(endpoint)

    def decide(pod: dict | None, now: _dt.datetime) -> podgc.Decision:
        node = str(((pod or {}).get("spec") or {}).get("nodeName") or endpoint.node)
        return podgc.scan_decision(pod, held_uid=endpoint.uid, static=static,
                                   static_valid=static and owners.valid(endpoint), node_ready=ready.get(node, False),
                                   switches=switches, now=now)
    return decide


def gc_release_endpoint(endpoint: Endpoint, *, reason: str) -> list[str]:
    """Release what this endpoint's pod incarnation holds, re-checked by UID under the endpoint's row lock."""
    released = _gc_release("scan", namespace=endpoint.namespace, name=endpoint.name, pod_uid=endpoint.uid,
                           reason=GC_RELEASE_SCAN)
    if released:
        log.info("GC released %s of %s/%s (%s): %s", ", ".join(released), endpoint.namespace, endpoint.name,
                 endpoint.uid, reason)
    return released


def gc_scan_request() -> bool:
    """Ask for a full scan now (the watcher relisted pods, or an operator asked); the lease keeps it single."""
    return task_send(SCAN_TASK)
