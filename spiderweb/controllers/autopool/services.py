"""The application controller (spec §4.2–§4.7): each workload's auto pools follow its replicas, and go with it.

Level-based: ``application_reconcile`` reads the workload fresh and brings its pools to the size its template asks
for (through ``spiderweb.ipam.autopools``, which does the pre-allocation in one transaction); a workload that is
gone (or replaced by a new incarnation) has its reclaimable pools deleted once they are empty. The beat resync
re-derives everything from the cluster, so a lost event or message is repaired by level, and it is the
safety net of §4.7 for pools whose application disappeared unseen (third-party controllers included).
"""

from __future__ import annotations

import logging

from spiderweb.controllers.config import kube_client
from spiderweb.controllers.enqueue import task_send
from spiderweb.engine import autopool
from spiderweb.engine.errors import InvalidInput, NotFound, Unavailable
from spiderweb.engine.keys import ANNO_IPPOOL_IP_NUMBER, ANNO_IPPOOL_RECLAIM, LABEL_IPPOOL_RECLAIM
from spiderweb.ipam.autopools import auto_pool_apps, autopools_reclaim, autopools_reconcile
from spiderweb.ipam.models import ClusterSettings, IPPool
from spiderweb.k8s import workloads
from spiderweb.k8s.client import KubeClient, KubeError, KubeUnavailable
from spiderweb.k8s.crd import is_terminating, meta, uid_of
from spiderweb.k8s.watch import WatchEvent

log = logging.getLogger(__name__)

RECONCILE_TASK = "workers.autopool.application_reconcile_task"
RECLAIM_TASK = "workers.autopool.application_reclaim_task"
EVENT_REASON = "ScaleIPPool"


class AutoPoolPending(Unavailable):
    """The pools are not at their size yet (subnet short of addresses, addresses still in use, pools still
    holding addresses before deletion): retried with backoff."""


# ------------------------------------------------------------------------------------------------ watch events


def application_event(kind: str, event: WatchEvent) -> None:
    """The watcher's listener for one native kind: a workload that asks for auto pools, or owns some, is a key,
    unless the database already holds what it asks for (``application_needs_reconcile``)."""
    obj = event.object
    m = meta(obj)
    key = (kind, str(m.get("namespace") or ""), str(m.get("name") or ""), uid_of(obj))
    if event.type == "DELETED":
        if IPPool.objects.filter(auto_app_uid=key[3]).exists():
            task_send(RECLAIM_TASK, key[3])
        return
    if not workloads.is_application(kind, obj):
        return
    pools = list(IPPool.objects.filter(auto_app_uid=key[3]).select_related("owner_subnet"))
    if (autopool.wants_auto_pools(workloads.template_annotations(kind, obj)) or pools) and \
            application_needs_reconcile(kind, obj, pools):
        task_send(RECONCILE_TASK, *key)


def application_needs_reconcile(kind: str, obj: dict, pools: list[IPPool]) -> bool:
    """False when ``pools`` (the workload's auto pools) already are what its template and replicas ask for: one for
    every NIC and family it names, each with the desired size recorded (reached, or being reached by the reconcile
    that recorded it, which retries until it is) and the requested reclaim flag and ``ippool-ip-number``.

    Every pod that starts or stops rewrites its Deployment's status, and each write is an event: without this, a
    Deployment of 100 pods costs hundreds of reconciles that change nothing (or that each start a retry loop of
    their own while the pool waits for pods to go), all on the worker the mirror and the GC share. The beat resync
    reconciles every workload regardless, so a retry loop that gave up is picked up again."""
    if not pools:
        return not workloads.host_network(kind, obj)  # pools to make (a host-network workload never gets any)
    if is_terminating(obj):
        return True  # pools to reclaim
    annotations = workloads.template_annotations(kind, obj)
    if not autopool.wants_auto_pools(annotations):
        return False  # the reconcile leaves the pools of a workload that stopped asking for them alone
    cluster = ClusterSettings.load_cached()
    try:
        requests = autopool.subnet_requests(annotations)
        number = autopool.ip_number_parse(annotations.get(ANNO_IPPOOL_IP_NUMBER),
                                          cluster_default=cluster.cluster_subnet_default_flexible_ip_number)
        reclaim = "true" if autopool.reclaim_parse(annotations.get(ANNO_IPPOOL_RECLAIM)) else "false"
    except InvalidInput:
        return True  # the reconcile says what is wrong, on the workload
    desired = number.desired(workloads.replicas(kind, obj))
    have = {(p.auto_interface, p.ip_version, p.owner_subnet.name if p.owner_subnet else "") for p in pools}
    wanted = {(r.interface, version, r.subnet(version)) for r in requests for version in (4, 6)
              if r.subnet(version) and version in cluster.families}
    return bool(wanted - have) or any(
        p.auto_desired != desired or (p.labels or {}).get(LABEL_IPPOOL_RECLAIM) != reclaim
        or (p.annotations or {}).get(ANNO_IPPOOL_IP_NUMBER) != str(number) for p in pools)


# ----------------------------------------------------------------------------------------------- reconcile


def application_reconcile(kind: str, namespace: str, name: str, uid: str, *,
                          client: KubeClient | None = None) -> str:
    """Size the auto pools of one workload to its template and replicas; reclaim them when it is gone."""
    client = client or kube_client()
    obj = client.get(workloads.NATIVE[kind], name, namespace=namespace)
    if obj is None or uid_of(obj) != uid or is_terminating(obj):
        return application_reclaim(uid)
    if not workloads.is_application(kind, obj) or workloads.host_network(kind, obj):
        return "not an application of its own"
    annotations = workloads.template_annotations(kind, obj)
    if not autopool.wants_auto_pools(annotations):
        return "no subnet annotation"
    app = workloads.app_of(kind, obj)
    default = ClusterSettings.load().cluster_subnet_default_flexible_ip_number
    try:
        states = autopools_reconcile(
            app=app, requests=autopool.subnet_requests(annotations),
            ip_number=autopool.ip_number_parse(annotations.get(ANNO_IPPOOL_IP_NUMBER), cluster_default=default),
            replicas=workloads.replicas(kind, obj),
            reclaim=autopool.reclaim_parse(annotations.get(ANNO_IPPOOL_RECLAIM)))
    except InvalidInput as exc:  # the user's input: say so on the workload, do not retry in a loop
        _warn(client, obj, f"auto pools of {kind} {namespace}/{name} not made: {exc.message}")
        return f"refused: {exc.message}"
    except NotFound as exc:  # the SpiderSubnet may be created later
        _warn(client, obj, exc.message)
        raise AutoPoolPending(exc.message) from exc
    short = [s for s in states if s.shortfall]
    if short:
        text = "; ".join(f"{s.pool}: {s.size} of {s.desired} addresses ({s.shortfall})" for s in short)
        _warn(client, obj, text)
        raise AutoPoolPending(text)
    return ", ".join(f"{s.pool}={s.size}" for s in states) or "no family enabled"


def application_reclaim(uid: str) -> str:
    """The application ``uid`` is gone: delete its reclaimable pools (retried while they still hold addresses)."""
    outcome = autopools_reclaim(app_uid=uid)
    if outcome["waiting"]:
        raise AutoPoolPending(f"auto pools {', '.join(outcome['waiting'])} still hold addresses; deleted once free")
    return f"deleted {', '.join(outcome['deleted'])}" if outcome["deleted"] else "nothing to reclaim"


def _warn(client: KubeClient, obj: dict, message: str) -> None:
    try:
        client.event(obj, reason=EVENT_REASON, message=message)
    except (KubeError, KubeUnavailable) as exc:
        log.warning("could not record a %s event: %s", EVENT_REASON, exc)
    log.warning("%s", message)


# --------------------------------------------------------------------------------------------------- resync


def applications_resync(*, client: KubeClient | None = None) -> dict:
    """Beat: every application that asks for auto pools gets a reconcile; every pool owner that is gone (native or
    third-party, spec §4.7's safety net) gets a reclaim."""
    client = client or kube_client()
    live: set[str] = set()
    counts = {"reconcile": 0, "reclaim": 0}
    for kind, resource in workloads.NATIVE.items():
        for obj in client.list(resource)[0]:
            live.add(uid_of(obj))
            if workloads.is_application(kind, obj) and \
                    autopool.wants_auto_pools(workloads.template_annotations(kind, obj)):
                m = meta(obj)
                task_send(RECONCILE_TASK, kind, m.get("namespace"), m.get("name"), uid_of(obj))
                counts["reconcile"] += 1
    for uid, (gv, kind, namespace, name) in auto_pool_apps().items():
        if uid in live:
            continue
        if kind not in workloads.NATIVE and _third_party_alive(client, gv, kind, namespace, name, uid):
            continue
        task_send(RECLAIM_TASK, uid)
        counts["reclaim"] += 1
    return counts


def _third_party_alive(client: KubeClient, gv: str, kind: str, namespace: str, name: str, uid: str) -> bool:
    api_version = gv.replace("_", "/") if "_" in gv else gv
    resource = client.discover(api_version, kind)
    if resource is None:
        return False
    obj = client.get(resource, name, namespace=namespace if resource.namespaced else None)
    return obj is not None and uid_of(obj) == uid and not is_terminating(obj)
