"""IP conflict and gateway detection on ADD (spec §11.4), in real network namespaces, against the real portal.

Topology: a "pod" namespace whose eth0 is one end of a veth pair; the other end, in a "peer" namespace, plays the
rest of the segment (the gateway, or a host squatting on an address the pool hands out).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest

from cni.errors import AgentError
from tests.agent.conftest import client_for, pod_args

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.netns]


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def segment():
    """``(pod netns path, peer netns name, peer MAC)``; both namespaces are removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    suffix = secrets.token_hex(3)
    pod, peer = f"swa-pod-{suffix}", f"swa-peer-{suffix}"
    ip("netns", "add", pod)
    ip("netns", "add", peer)
    try:
        ip("link", "add", "eth0", "netns", pod, "type", "veth", "peer", "name", "peer0", "netns", peer)
        ip("-n", peer, "link", "set", "peer0", "up")
        mac = json.loads(ip("-n", peer, "-j", "link", "show", "peer0"))[0]["address"]
        yield f"/var/run/netns/{pod}", peer, mac
    finally:
        ip("netns", "del", pod)
        ip("netns", "del", peer)


@pytest.fixture
def detection_on():
    from spiderweb.ipam.models import ClusterSettings

    settings = ClusterSettings.load()
    settings.enable_ip_conflict_detection = True
    settings.enable_gateway_detection = True
    settings.save()


def test_gateway_answers_so_add_succeeds_with_detection_on(agent, segment, detection_on):
    netns, peer, _ = segment
    ip("-n", peer, "addr", "add", "10.20.0.1/24", "dev", "peer0")

    answer = client_for(agent).call("POST", "/v1/ipam/ip", pod_args(
        "web-0", netNamespace=netns, defaultIPv4IPPool=["v4-pool"]))

    assert answer["ips"][0]["address"] == "10.20.0.10/24"
    assert answer["ips"][0]["enableIPConflictDetection"] is True


def test_an_address_already_in_use_fails_add_names_the_mac_and_is_released(agent, segment, detection_on):
    from spiderweb.ipam.models import Allocation

    netns, peer, mac = segment
    ip("-n", peer, "addr", "add", "10.21.0.5/24", "dev", "peer0")  # tiny-pool's only address
    args = pod_args("web-0", netNamespace=netns, defaultIPv4IPPool=["tiny-pool"])

    with pytest.raises(AgentError) as caught:
        client_for(agent).call("POST", "/v1/ipam/ip", args)

    error = caught.value
    assert (error.status, error.code) == (409, "conflict")
    assert f"ip conflict: 10.21.0.5 is already used by {mac}" in error.message
    assert error.details["reason"] == "ip_conflict" and error.details["mac"] == mac
    assert not Allocation.objects.filter(pod_uid=args["podUID"]).exists()


def test_an_unreachable_gateway_fails_add(agent, segment, detection_on):
    netns, _, _ = segment  # nobody answers for 10.20.0.1

    with pytest.raises(AgentError) as caught:
        client_for(agent).call("POST", "/v1/ipam/ip", pod_args(
            "web-0", netNamespace=netns, defaultIPv4IPPool=["v4-pool"]))

    assert (caught.value.status, caught.value.details["reason"]) == (409, "gateway_unreachable")
    assert "gateway 10.20.0.1 is unreachable" in caught.value.message


def test_detection_that_cannot_run_fails_add_with_a_clear_message(agent, detection_on):
    with pytest.raises(AgentError) as caught:
        client_for(agent).call("POST", "/v1/ipam/ip", pod_args("web-0", defaultIPv4IPPool=["v4-pool"]))

    assert (caught.value.status, caught.value.code) == (500, "detection_failed")
    assert "missing-web-0" in caught.value.message
