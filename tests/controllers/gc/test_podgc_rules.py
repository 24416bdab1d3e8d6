"""The GC decision rules of spec §7.2/§7.3 (with A13 and C1–C5) on plain pod dicts: no server, no clock."""

import datetime as dt
import doctest

import pytest

from spiderweb.k8s import podgc
from spiderweb.k8s.podgc import KEEP, RELEASE, TRACE, GcSwitches, scan_decision, trace_decision

NOW = dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)


def ts(seconds: float) -> str:
    return (NOW + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(uid="u1", phase="Running", ips=True, deletion=None, finished_at=None, grace=30):
    status = {"phase": phase}
    if ips:
        status["podIPs"] = [{"ip": "10.6.0.10"}]
    if finished_at is not None:
        status["containerStatuses"] = [{"state": {"terminated": {"finishedAt": finished_at}}}]
    metadata = {"name": "web-1", "namespace": "ns", "uid": uid}
    if deletion is not None:
        metadata["deletionTimestamp"] = deletion
    return {"metadata": metadata, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": grace},
            "status": status}


DEFAULTS = GcSwitches()


def scan(p, *, static=False, valid=False, ready=True, switches=DEFAULTS, held="u1"):
    return scan_decision(p, held_uid=held, static=static, static_valid=valid, node_ready=ready, switches=switches,
                         now=NOW)


def test_docstring_examples_hold():
    assert doctest.testmod(podgc).failed == 0


# --------------------------------------------------------------------------------------------- tracing (§7.2)


def test_a_deleted_pod_is_due_after_the_additional_delay_only():
    d = trace_decision(None, deleted=True, node_ready=False, switches=GcSwitches(additional_grace_delay=7), now=NOW)
    assert (d.action, d.stop_at) == (TRACE, NOW + dt.timedelta(seconds=7))


def test_a_terminating_pod_is_due_at_its_deletion_timestamp_not_twice_the_grace():
    """A13: Kubernetes already put the grace period into deletionTimestamp."""
    d = trace_decision(pod(deletion=ts(30)), deleted=False, node_ready=True, switches=GcSwitches(), now=NOW)
    assert (d.action, d.stop_at) == (TRACE, NOW + dt.timedelta(seconds=30))


def test_a_finished_pod_is_due_after_its_containers_ended_plus_grace():
    d = trace_decision(pod(phase="Succeeded", finished_at=ts(-100), grace=10), deleted=False, node_ready=True,
                       switches=GcSwitches(additional_grace_delay=5), now=NOW)
    assert (d.action, d.stop_at) == (TRACE, NOW + dt.timedelta(seconds=-85))


def test_an_evicted_pod_without_container_end_counts_from_now():
    evicted = pod(phase="Failed", ips=False, grace=0)
    evicted["status"]["reason"] = "Evicted"
    d = trace_decision(evicted, deleted=False, node_ready=True, switches=GcSwitches(), now=NOW)
    assert (d.action, d.stop_at) == (TRACE, NOW)


@pytest.mark.parametrize("ready, switches, traced", [
    (True, GcSwitches(zombie_on_ready_node=False), False),
    (True, GcSwitches(zombie_on_not_ready_node=False), True),
    (False, GcSwitches(zombie_on_not_ready_node=False), False),
    (False, GcSwitches(zombie_on_ready_node=False), True),
])
def test_the_node_gate_decides_for_terminating_pods(ready, switches, traced):
    d = trace_decision(pod(deletion=ts(5)), deleted=False, node_ready=ready, switches=switches, now=NOW)
    assert (d.action == TRACE) is traced


def test_a_live_pod_is_kept():
    assert trace_decision(pod(), deleted=False, node_ready=True, switches=GcSwitches(), now=NOW).action == KEEP


# ------------------------------------------------------------------------------------------ full scan (§7.3)


@pytest.mark.parametrize("case, kwargs, expected", [
    ("pod gone, stateless", dict(p=None), RELEASE),
    ("pod gone, StatefulSet still wants it", dict(p=None, static=True, valid=True), KEEP),
    ("pod gone, StatefulSet scaled down", dict(p=None, static=True, valid=False), RELEASE),
    ("Pending wins over terminating (C1)", dict(p=pod(phase="Pending", deletion=ts(-60))), KEEP),
    ("running with addresses", dict(p=pod()), KEEP),
    ("running without podIPs, switch off", dict(p=pod(ips=False)), KEEP),
    ("running without podIPs, switch on", dict(p=pod(ips=False),
                                                switches=GcSwitches(running_pod_on_empty_pod_ips=True)), RELEASE),
    ("Unknown phase without addresses", dict(p=pod(phase="Unknown", ips=False)), RELEASE),
    ("terminating past its deadline", dict(p=pod(deletion=ts(-1))), RELEASE),
    ("terminating past deadline, node gate off", dict(p=pod(deletion=ts(-1)), ready=False,
                                                      switches=GcSwitches(zombie_on_not_ready_node=False)), KEEP),
    ("terminating before deadline, has IPs", dict(p=pod(deletion=ts(20))), TRACE),
    ("terminating before deadline, no IPs", dict(p=pod(deletion=ts(20), ips=False)), RELEASE),
    ("finished stateless: traced, never left", dict(p=pod(phase="Succeeded", finished_at=ts(-5))), TRACE),
    ("finished stateless, node gate off", dict(p=pod(phase="Failed"), ready=True,
                                               switches=GcSwitches(zombie_on_ready_node=False)), KEEP),
    ("finished StatefulSet pod still wanted (C2)", dict(p=pod(phase="Failed"), static=True, valid=True), KEEP),
    ("finished StatefulSet pod not wanted", dict(p=pod(phase="Failed"), static=True, valid=False), RELEASE),
    ("terminating StatefulSet pod still wanted (C5)", dict(p=pod(deletion=ts(-60)), static=True, valid=True), KEEP),
    ("re-created stateless", dict(p=pod(uid="u2")), RELEASE),
    ("re-created StatefulSet pod, new one has IPs", dict(p=pod(uid="u2"), static=True, valid=True), RELEASE),
    ("re-created StatefulSet pod, not set up yet", dict(p=pod(uid="u2", phase="Pending", ips=False), static=True,
                                                        valid=True), KEEP),
    ("re-created StatefulSet pod, not wanted", dict(p=pod(uid="u2", ips=False), static=True, valid=False), RELEASE),
])
def test_full_scan_table(case, kwargs, expected):
    p = kwargs.pop("p")
    assert scan(p, **kwargs).action == expected, case


def test_node_readiness_reads_the_ready_condition():
    assert podgc.node_is_ready({"status": {"conditions": [{"type": "MemoryPressure", "status": "True"},
                                                          {"type": "Ready", "status": "True"}]}})
    assert not podgc.node_is_ready({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    assert not podgc.node_is_ready({"status": {}})
