"""A coordinator ADD while the SpiderCoordinator is NotReady fails with its reason (as Spiderpool's agent refuses),
the failed ADD leaves nothing behind, and the same pod starts once the controller reports Synced again."""

from __future__ import annotations

import pytest

from tests.netlab.runtime import CniFailure
from tests.netlab.test_chain import Pod, _db_allocations, _node_state

pytestmark = [pytest.mark.netns, pytest.mark.slow]
REASON = "cannot tell the pod CIDRs: no kube-system/kubeadm-config ConfigMap and no kube-controller-manager pod"


def test_not_ready_refuses_the_coordinator_add_with_the_reason_and_synced_lets_it_through(world, runtime_for):
    from spiderweb.ipam import services

    before = _node_state(world, "node-a")
    services.coordinator_status_set(name="default", status={"phase": "NotReady", "reason": REASON})
    pod = Pod(world, runtime_for("node-a"), "node-a")
    with pytest.raises(CniFailure) as failed:
        pod.add()
    assert failed.value.plugin == "coordinator"
    assert failed.value.error["msg"] == f"SpiderCoordinator default is NotReady: {REASON}"
    assert _db_allocations(pod) == [] and _node_state(world, "node-a") == before, "the failed ADD undid itself"

    services.coordinator_status_set(name="default", status={"phase": "Synced", "serviceCIDR": ["10.96.0.0/12"]})
    pod.add()
    assert [link["ifname"] for link in pod.ip("link")] == ["lo", "eth0", "veth0"]
    pod.delete()
    world["topology"].remove_netns(pod.netns)
