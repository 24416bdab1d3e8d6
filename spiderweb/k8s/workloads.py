"""Rules about workloads (spec §4.2, §4.3) on the API server's JSON dicts: which are top-level applications, how
many replicas they want, what their pod template asks for. Pure; never imports Django.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spiderweb.engine.autopool import App
from spiderweb.k8s import resources
from spiderweb.k8s.pods import controller_of

# The native kinds the application controller watches; any other top controller is a third-party one (§4.2).
NATIVE = {r.kind: r for r in (resources.DEPLOYMENT, resources.REPLICASET, resources.STATEFULSET,
                              resources.DAEMONSET, resources.JOB, resources.CRONJOB)}
# A ReplicaSet owned by a Deployment and a Job owned by a CronJob are not applications of their own.
_PARENT_KIND = {"ReplicaSet": "Deployment", "Job": "CronJob"}


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def app_of(kind: str, obj: Mapping[str, Any]) -> App:
    """The application identity of a native workload object."""
    m = _meta(obj)
    return App(api_version=NATIVE[kind].api_version, kind=kind, namespace=str(m.get("namespace") or ""),
               name=str(m.get("name") or ""), uid=str(m.get("uid") or ""))


def is_application(kind: str, obj: Mapping[str, Any]) -> bool:
    """Spec §4.2: a top-level native workload (not a Deployment's ReplicaSet, not a CronJob's Job).

    >>> is_application("ReplicaSet", {"metadata": {"ownerReferences": [{"kind": "Deployment", "controller": True}]}})
    False
    >>> is_application("Job", {"metadata": {}})
    True
    """
    owner = controller_of(obj)
    return not (owner is not None and owner.get("kind") == _PARENT_KIND.get(kind))


def pod_template(kind: str, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod template (a CronJob's is inside its job template)."""
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    return spec.get("template") or {}


def template_annotations(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The pod template's annotations, where the auto-pool annotations live (spec §2.1)."""
    annotations = _meta(pod_template(kind, obj)).get("annotations") or {}
    return {str(k): str(v) for k, v in annotations.items()}


def host_network(kind: str, obj: Mapping[str, Any]) -> bool:
    """HostNetwork workloads are ignored (their pods get no address from us)."""
    return bool((pod_template(kind, obj).get("spec") or {}).get("hostNetwork"))


def _job_replicas(spec: Mapping[str, Any]) -> int:
    parallelism, completions = spec.get("parallelism"), spec.get("completions")
    if completions is not None:
        return int(completions) or 1
    if parallelism is not None:
        return int(parallelism) or 1
    return 1


def replicas(kind: str, obj: Mapping[str, Any]) -> int:
    """Spec §4.3: the replica count an auto pool follows.

    >>> replicas("Deployment", {"spec": {"replicas": 3}}), replicas("Deployment", {"spec": {}})
    (3, 0)
    >>> replicas("DaemonSet", {"status": {"desiredNumberScheduled": 2}})
    2
    >>> [replicas("Job", {"spec": s}) for s in ({"parallelism": 0}, {"completions": 4, "parallelism": 2}, {})]
    [1, 4, 1]
    >>> replicas("CronJob", {"spec": {"jobTemplate": {"spec": {"parallelism": 3}}}})
    3
    """
    spec = obj.get("spec") or {}
    if kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        return int(spec.get("replicas") or 0)
    if kind == "DaemonSet":
        return int((obj.get("status") or {}).get("desiredNumberScheduled") or 0)
    if kind == "Job":
        return _job_replicas(spec)
    if kind == "CronJob":
        return _job_replicas(((spec.get("jobTemplate") or {}).get("spec")) or {})
    raise ValueError(f"{kind} is not a native workload")
