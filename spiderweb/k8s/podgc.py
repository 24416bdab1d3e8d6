"""IP GC rules (spec §7.2, §7.3, Appendix A13, C1–C5) as pure functions on the API server's JSON dicts.

The GC controller fetches the pod, its node and (for StatefulSet/KubeVirt pods) the owner's validity, and these
decide. Nothing here reads a clock: ``now`` is passed in, so every row of the decision table is testable without a
server or a sleep. Never imports Django.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

KEEP, RELEASE, TRACE = "keep", "release", "trace"


@dataclass(frozen=True)
class GcSwitches:
    """The switches of spec §7.1 that the decisions read (``spiderweb.controllers.gc.config`` loads them)."""

    zombie_on_ready_node: bool = True
    zombie_on_not_ready_node: bool = True
    running_pod_on_empty_pod_ips: bool = False
    additional_grace_delay: float = 0.0


@dataclass(frozen=True)
class Decision:
    """What to do with one pod's addresses: ``keep``, ``release`` now, or ``trace`` (release at ``stop_at``)."""

    action: str
    reason: str
    stop_at: _dt.datetime | None = None


def parse_time(value: Any) -> _dt.datetime | None:
    """An RFC 3339 timestamp of the API (``2026-12-04T10:00:00Z``) as an aware datetime, ``None`` if absent/bad.

    >>> parse_time("2026-12-04T10:00:00Z").isoformat()
    '2026-12-04T10:00:00+00:00'
    >>> parse_time(None) is None, parse_time("yesterday") is None
    (True, True)
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


def _meta(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("metadata") or {}


def node_is_ready(node: Mapping[str, Any] | None) -> bool:
    """The node exists and its ``Ready`` condition is ``True`` (a node that is gone counts as not ready).

    >>> node_is_ready({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    True
    >>> node_is_ready({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}), node_is_ready(None)
    (False, False)
    """
    if node is None:
        return False
    for condition in (node.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def node_gate(node_ready: bool, switches: GcSwitches) -> bool:
    """Spec §7.1: may a stateless zombie on this node be reclaimed? One switch for Ready nodes, one for the rest."""
    return switches.zombie_on_ready_node if node_ready else switches.zombie_on_not_ready_node


def pod_finished(pod: Mapping[str, Any]) -> bool:
    """Phase ``Succeeded`` or ``Failed`` (evicted pods are ``Failed``)."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_has_ips(pod: Mapping[str, Any]) -> bool:
    """``status.podIPs`` (or the older ``podIP``) is set."""
    status = pod.get("status") or {}
    return bool(status.get("podIPs") or status.get("podIP"))


def terminating_stop_time(pod: Mapping[str, Any], switches: GcSwitches) -> _dt.datetime | None:
    """Appendix A13: ``deletionTimestamp + additional delay`` (Kubernetes already put the grace period into the
    deletion timestamp; upstream adds it a second time). ``None`` for a pod that is not terminating.

    >>> pod = {"metadata": {"deletionTimestamp": "2026-12-04T10:00:30Z", "deletionGracePeriodSeconds": 30}}
    >>> terminating_stop_time(pod, GcSwitches(additional_grace_delay=5)).isoformat()
    '2026-12-04T10:00:35+00:00'
    """
    deletion = parse_time(_meta(pod).get("deletionTimestamp"))
    if deletion is None:
        return None
    return deletion + _dt.timedelta(seconds=switches.additional_grace_delay)


def finished_stop_time(pod: Mapping[str, Any], switches: GcSwitches, now: _dt.datetime) -> _dt.datetime:
    """Spec §7.2: the latest container ``terminated.finishedAt`` + ``terminationGracePeriodSeconds`` + delay; a
    finished pod with no container end time (e.g. evicted before it started) counts from ``now``.

    >>> pod = {"spec": {"terminationGracePeriodSeconds": 10}, "status": {"phase": "Succeeded",
    ...     "containerStatuses": [{"state": {"terminated": {"finishedAt": "2026-12-04T10:00:00Z"}}}]}}
    >>> finished_stop_time(pod, GcSwitches(), _dt.datetime(2026, 12, 4, 11, tzinfo=_dt.UTC)).isoformat()
    '2026-12-04T10:00:10+00:00'
    """
    status = pod.get("status") or {}
    ends = []
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        terminated = ((container or {}).get("state") or {}).get("terminated") or {}
        end = parse_time(terminated.get("finishedAt"))
        if end is not None:
            ends.append(end)
    grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    grace = 30 if grace is None else int(grace)
    start = max(ends) if ends else now
    return start + _dt.timedelta(seconds=grace + switches.additional_grace_delay)


def trace_decision(pod: Mapping[str, Any] | None, *, deleted: bool, node_ready: bool, switches: GcSwitches,
                   now: _dt.datetime) -> Decision:
    """Spec §7.2 for one pod event of a pod that is not a valid StatefulSet/KubeVirt pod (the caller checks that).

    A deleted pod is released after the additional delay; a terminating one at ``deletionTimestamp`` + delay
    (A13); a finished one after its containers ended + grace + delay. The node gate (C3) can forbid the latter
    two: then nothing is traced and nothing released. A pod that is none of these is kept.

    >>> t = _dt.datetime(2026, 12, 4, 10, tzinfo=_dt.UTC)
    >>> trace_decision(None, deleted=True, node_ready=True, switches=GcSwitches(), now=t).action
    'trace'
    >>> trace_decision({"status": {"phase": "Running"}}, deleted=False, node_ready=True, switches=GcSwitches(),
    ...                now=t).action
    'keep'
    """
    if deleted:
        return Decision(TRACE, "pod deleted", now + _dt.timedelta(seconds=switches.additional_grace_delay))
    if pod is None:
        return Decision(KEEP, "no pod")
    stop = terminating_stop_time(pod, switches)
    reason = "pod terminating"
    if stop is None and pod_finished(pod):
        stop, reason = finished_stop_time(pod, switches, now), f"pod {pod['status']['phase']}"
    if stop is None:
        return Decision(KEEP, "pod alive")
    if not node_gate(node_ready, switches):
        return Decision(KEEP, f"{reason}, but GC of zombies on {'Ready' if node_ready else 'NotReady'} nodes is off")
    return Decision(TRACE, reason, stop)


def scan_decision(pod: Mapping[str, Any] | None, *, held_uid: str, static: bool, static_valid: bool,
                  node_ready: bool, switches: GcSwitches, now: _dt.datetime) -> Decision:
    """Spec §7.3 (rows checked top to bottom, C1) for the addresses one pod incarnation (``held_uid``) holds.

    ``pod`` is the pod of that namespace/name in the API server now (any incarnation), ``static`` says whether the
    holder is a StatefulSet/KubeVirt pod with its switch on, ``static_valid`` whether its owner still wants it.
    ``trace`` means "release at ``stop_at``" (a terminating pod whose deadline has not passed yet).

    >>> t = _dt.datetime(2026, 12, 4, 10, tzinfo=_dt.UTC)
    >>> kw = dict(static=False, static_valid=False, node_ready=True, switches=GcSwitches(), now=t)
    >>> scan_decision(None, held_uid="u1", **kw).reason
    'pod not found'
    >>> scan_decision({"metadata": {"uid": "u2"}, "status": {"podIPs": [{"ip": "10.0.0.9"}]}}, held_uid="u1", **kw)
    Decision(action='release', reason='pod re-created (stateless)', stop_at=None)
    """
    if pod is None:
        if static and static_valid:
            return Decision(KEEP, "pod not found; its StatefulSet/VM still wants it")
        return Decision(RELEASE, "pod not found")
    if str(_meta(pod).get("uid") or "") != held_uid:
        if not static:
            return Decision(RELEASE, "pod re-created (stateless)")
        if pod_has_ips(pod):
            return Decision(RELEASE, "pod re-created and the new pod already has addresses")
        return Decision(KEEP, "pod re-created; the new pod will take its addresses") if static_valid else \
            Decision(RELEASE, "pod re-created; its StatefulSet/VM no longer wants it")
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Pending":
        return Decision(KEEP, "pod Pending")
    terminating = bool(_meta(pod).get("deletionTimestamp"))
    if static:
        if (pod_finished(pod) or terminating) and not static_valid:
            return Decision(RELEASE, "StatefulSet/VM pod no longer wanted")
        if not pod_has_ips(pod) and not static_valid:
            return Decision(RELEASE, "StatefulSet/VM pod without addresses, no longer wanted")
        return Decision(KEEP, "StatefulSet/VM pod")
    if terminating:
        stop = terminating_stop_time(pod, switches)
        if stop is not None and now >= stop:
            if node_gate(node_ready, switches):
                return Decision(RELEASE, "pod terminating past its deadline")
            return Decision(KEEP, "pod terminating past its deadline, but the node gate is off")
        if pod_has_ips(pod):
            return Decision(TRACE, "pod terminating", stop)
        return Decision(RELEASE, "pod terminating without addresses")
    if pod_finished(pod):
        # Upstream keeps these and leaves them to tracing; tracing them here too means a finished pod whose event
        # the watcher missed is still reclaimed (never a leak), at the same deadline tracing would have used.
        if not node_gate(node_ready, switches):
            return Decision(KEEP, "pod finished, but the node gate is off")
        return Decision(TRACE, f"pod {phase}", finished_stop_time(pod, switches, now))
    if pod_has_ips(pod):
        return Decision(KEEP, "pod running with addresses")
    if phase == "Running":
        if switches.running_pod_on_empty_pod_ips:
            return Decision(RELEASE, "Running pod without status.podIPs")
        return Decision(KEEP, "Running pod without status.podIPs (its GC is off)")
    return Decision(RELEASE, f"pod {phase or 'without phase'} without addresses")
