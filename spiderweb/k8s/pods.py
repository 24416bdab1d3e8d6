"""Rules about pods applied to plain Kubernetes JSON dicts (camelCase keys, as the API server sends them).

Pure functions: the caller fetches the objects (see :mod:`spiderweb.k8s.client`) and these decide. That keeps the
rules of spec §3.1 (liveness, top controller), §5.1 (StatefulSet ordinal validity) and §5.2 (KubeVirt validity)
testable with dicts and reusable by the agent and by any controller-side code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from spiderweb.engine.facts import PodFacts, TopController

KIND_POD = "Pod"
KIND_REPLICASET = "ReplicaSet"
KIND_DEPLOYMENT = "Deployment"
KIND_JOB = "Job"
KIND_CRONJOB = "CronJob"
KIND_STATEFULSET = "StatefulSet"
KIND_DAEMONSET = "DaemonSet"
KIND_VMI = "VirtualMachineInstance"
KIND_VM = "VirtualMachine"

# Owners whose own controller is looked up (spec §3.1 step 2): ReplicaSet -> Deployment, Job -> CronJob.
CHAINED_OWNERS = {("apps/v1", KIND_REPLICASET), ("batch/v1", KIND_JOB)}
KUBEVIRT_GROUP = "kubevirt.io"
ANNO_KUBEVIRT_MIGRATION_JOB = "kubevirt.io/migrationJobName"

# (kind, apiVersion, namespace, name) -> the object as a dict, or None when it does not exist.
OwnerFetch = Callable[[str, str, str, str], "dict | None"]

_ORDINAL = re.compile(r"^(0|[1-9][0-9]*)$")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _str_map(value: Any) -> dict[str, str]:
    """Labels/annotations as ``dict[str, str]``; ``null`` (the API omits empty maps) becomes ``{}``."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def pod_is_alive(pod: Mapping[str, Any]) -> bool:
    """Spec §3.1 step 1: a pod is *not* alive when it is being deleted or has finished for good.

    Not alive: a ``deletionTimestamp``; phase ``Succeeded`` unless ``restartPolicy`` is ``Always``; phase
    ``Failed`` with ``restartPolicy: Never``; phase ``Failed`` with reason ``Evicted``. Everything else (Pending,
    Running, Unknown, a Failed pod that will be restarted) is alive, so its addresses must be kept.

    >>> pod_is_alive({"metadata": {}, "spec": {"restartPolicy": "Always"}, "status": {"phase": "Running"}})
    True
    >>> pod_is_alive({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}})
    False
    >>> pod_is_alive({"spec": {"restartPolicy": "OnFailure"}, "status": {"phase": "Succeeded"}})
    False
    >>> pod_is_alive({"spec": {"restartPolicy": "OnFailure"}, "status": {"phase": "Failed"}})
    True
    >>> pod_is_alive({"spec": {"restartPolicy": "Always"}, "status": {"phase": "Failed", "reason": "Evicted"}})
    False
    """
    if _meta(pod).get("deletionTimestamp"):
        return False
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    phase = status.get("phase")
    restart = spec.get("restartPolicy") or "Always"  # the API server defaults it to Always
    if phase == "Succeeded" and restart != "Always":
        return False
    return not (phase == "Failed" and (restart == "Never" or status.get("reason") == "Evicted"))


def controller_of(obj: Mapping[str, Any]) -> dict | None:
    """The ownerReference marked ``controller: true`` (``metav1.GetControllerOf``), or ``None``.

    >>> controller_of({"metadata": {"ownerReferences": [{"kind": "A", "controller": False},
    ...     {"kind": "ReplicaSet", "name": "web-5f9", "controller": True}]}})["name"]
    'web-5f9'
    """
    for ref in _meta(obj).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return dict(ref)
    return None


def _owner(ref: Mapping[str, Any]) -> TopController:
    return TopController(
        kind=str(ref.get("kind") or ""),
        name=str(ref.get("name") or ""),
        uid=str(ref.get("uid") or ""),
        api_version=str(ref.get("apiVersion") or ""),
    )


def pod_itself(pod: Mapping[str, Any]) -> TopController:
    """The top controller of an orphan pod: the pod (``kind="Pod"``, ``apiVersion="v1"``)."""
    meta = _meta(pod)
    return TopController(kind=KIND_POD, name=str(meta.get("name") or ""), uid=str(meta.get("uid") or ""),
                         api_version="v1")


def top_controller(pod: Mapping[str, Any], fetch: OwnerFetch) -> TopController:
    """Resolve the pod's top controller (spec §3.1 step 2).

    The pod's controller reference is followed one step for ``apps/v1 ReplicaSet`` (to its Deployment) and
    ``batch/v1 Job`` (to its CronJob); the parent's own controller is taken as-is whatever its kind (a Deployment,
    a CronJob, or a third-party controller such as an Argo Rollout). StatefulSet, DaemonSet and every kind
    outside ``v1``/``apps/v1``/``batch/v1`` (KubeVirt VMIs, OpenKruise CloneSets, ...) are taken as-is; a pod
    without a controller is its own top controller. ``fetch(kind, apiVersion, namespace, name)`` reads the
    parent; when it is gone the parent itself is reported, since the pod still names it.

    >>> rs = {"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
    ...     "uid": "d1", "controller": True}]}}
    >>> pod = {"metadata": {"name": "web-5f9-x", "namespace": "ns", "uid": "p1", "ownerReferences": [
    ...     {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5f9", "uid": "r1", "controller": True}]}}
    >>> top_controller(pod, lambda kind, api, ns, name: rs)
    TopController(kind='Deployment', name='web', uid='d1', api_version='apps/v1')
    >>> top_controller({"metadata": {"name": "solo", "uid": "p2"}}, lambda *a: None)
    TopController(kind='Pod', name='solo', uid='p2', api_version='v1')
    """
    ref = controller_of(pod)
    if ref is None:
        return pod_itself(pod)
    key = (str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""))
    if key not in CHAINED_OWNERS:
        return _owner(ref)
    parent = fetch(key[1], key[0], str(_meta(pod).get("namespace") or ""), str(ref.get("name") or ""))
    if parent is None:
        return _owner(ref)
    grand = controller_of(parent)
    return _owner(grand) if grand is not None else _owner(ref)


def statefulset_ordinal(pod_name: str, statefulset_name: str) -> int | None:
    """The ordinal in ``<statefulset>-<ordinal>``, or ``None`` when the pod name does not have that shape.

    >>> statefulset_ordinal("db-12", "db"), statefulset_ordinal("db-x", "db"), statefulset_ordinal("db-01", "db")
    (12, None, None)
    """
    prefix = f"{statefulset_name}-"
    if not pod_name.startswith(prefix):
        return None
    tail = pod_name[len(prefix):]
    return int(tail) if _ORDINAL.match(tail) else None


def statefulset_keeps_ordinal(statefulset: Mapping[str, Any] | None, ordinal: int | None) -> bool:
    """Spec §5.1 (DEL): the StatefulSet exists and ``ordinal`` lies in ``[start, start + replicas)``.

    ``start`` is ``spec.ordinals.start`` (0 when unset) and ``replicas`` defaults to 1, as the API server does.
    A StatefulSet being deleted keeps nothing.

    >>> sts = {"metadata": {}, "spec": {"replicas": 3, "ordinals": {"start": 5}}}
    >>> [statefulset_keeps_ordinal(sts, n) for n in (4, 5, 7, 8)]
    [False, True, True, False]
    >>> statefulset_keeps_ordinal(None, 0), statefulset_keeps_ordinal({"spec": {"replicas": 0}}, 0)
    (False, False)
    """
    if statefulset is None or ordinal is None or _meta(statefulset).get("deletionTimestamp"):
        return False
    spec = statefulset.get("spec") or {}
    replicas = spec.get("replicas")
    replicas = 1 if replicas is None else int(replicas)
    start = int(((spec.get("ordinals") or {}).get("start")) or 0)
    return start <= ordinal < start + replicas


def kubevirt_keeps_addresses(vmi: Mapping[str, Any] | None, vm: Mapping[str, Any] | None) -> bool:
    """Spec §5.2 (DEL/GC): is the VM behind a virt-launcher pod still meant to exist?

    A VMI that exists and is not terminating keeps its addresses. A missing VMI, or a terminating one owned by a
    ``VirtualMachine``, keeps them iff that VM exists and is not terminating (the VM will start a new VMI). A
    terminating VMI without a VM owner does not.

    >>> live = {"metadata": {}}
    >>> dying = {"metadata": {"deletionTimestamp": "t", "ownerReferences": [
    ...     {"kind": "VirtualMachine", "name": "vm1", "controller": True}]}}
    >>> kubevirt_keeps_addresses(live, None), kubevirt_keeps_addresses(dying, live)
    (True, True)
    >>> kubevirt_keeps_addresses(dying, None), kubevirt_keeps_addresses({"metadata": {"deletionTimestamp": "t"}}, live)
    (False, False)
    """
    if vmi is not None and not _meta(vmi).get("deletionTimestamp"):
        return True
    if vmi is not None:
        owner = controller_of(vmi)
        if owner is None or owner.get("kind") != KIND_VM:
            return False
    return vm is not None and not _meta(vm).get("deletionTimestamp")


def is_kubevirt_vmi(owner: TopController) -> bool:
    """True for a virt-launcher pod, whose top controller is a ``kubevirt.io`` VirtualMachineInstance."""
    return owner.kind == KIND_VMI and owner.group == KUBEVIRT_GROUP


def endpoint_name(pod_name: str, owner: TopController) -> str:
    """The name the pod's allocation record is kept under: the VMI name for KubeVirt pods (spec §5.2), else the pod's.

    A VM's virt-launcher pods have random names; keying its record by VMI (= VM) name is what lets a restarted or
    migrated VM find its addresses again.
    """
    return owner.name if is_kubevirt_vmi(owner) else pod_name


def pod_facts(
    pod: Mapping[str, Any],
    *,
    owner: TopController,
    namespace: Mapping[str, Any] | None,
    node: Mapping[str, Any] | None,
    default_node: str,
) -> PodFacts:
    """Assemble the allocator's :class:`PodFacts` from the pod, its namespace and node objects and its owner.

    ``name`` is :func:`endpoint_name` (the VMI name for KubeVirt pods). ``node`` is ``spec.nodeName``, or
    ``default_node`` for a pod not bound yet. A namespace or node object that cannot be read contributes no labels.
    """
    meta = _meta(pod)
    spec = pod.get("spec") or {}
    ns_meta = _meta(namespace or {})
    return PodFacts(
        namespace=str(meta.get("namespace") or ""),
        name=endpoint_name(str(meta.get("name") or ""), owner),
        uid=str(meta.get("uid") or ""),
        node=str(spec.get("nodeName") or default_node),
        labels=_str_map(meta.get("labels")),
        annotations=_str_map(meta.get("annotations")),
        owner=owner,
        namespace_labels=_str_map(ns_meta.get("labels")),
        namespace_annotations=_str_map(ns_meta.get("annotations")),
        node_labels=_str_map(_meta(node or {}).get("labels")),
        alive=pod_is_alive(pod),
    )


def pod_uid(pod: Mapping[str, Any]) -> str:
    """``metadata.uid`` as a string (``""`` when absent)."""
    return str(_meta(pod).get("uid") or "")
