"""Spec §4.4 on the agent: an ADD whose auto pool is missing or growing waits on its own budget, counted (A20)."""

import dataclasses

import pytest

from agent.config import load
from agent.errors import PortalError
from agent.ipam import AddArgs, IpamService
from agent.metrics import AgentMetrics
from agent.podfacts import StandaloneFacts

BASE_ENV = {"SPIDERWEB_NODE_NAME": "n1", "SPIDERWEB_PORTAL_URL": "http://portal:8000", "SPIDERWEB_NODE_TOKEN": "t"}
ADD = {"containerID": "c1", "ifName": "net9", "netNamespace": "/var/run/netns/none", "podNamespace": "ns",
       "podName": "web-0", "podUID": "u1"}


class Portal:
    """The portal's answers in order: errors are raised, dicts returned."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    def allocate(self, **kwargs):
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def not_ready():
    return PortalError("autopool_not_ready", "the auto-created IPv4 IPPool ... is not ready yet", status=503)


def service(portal, retries=3):
    config = dataclasses.replace(load(BASE_ENV), auto_pool_wait_retries=retries, auto_pool_wait_seconds=2.0)
    metrics, sleeps = AgentMetrics(), []
    ipam = IpamService(config=config, portal=portal, facts=StandaloneFacts("n1"),
                       on_auto_pool_wait=metrics.auto_pool_waits.inc, sleep=sleeps.append)
    return ipam, metrics, sleeps


def waits(metrics):
    return metrics.registry.get_sample_value("spiderpool_debug_auto_pool_waited_for_available_counts_total")


def test_the_add_waits_for_the_auto_pool_and_counts_each_wait():
    portal = Portal(not_ready(), not_ready(), {"ips": [], "routes": []})
    ipam, metrics, sleeps = service(portal)
    assert ipam._allocate_waiting_for_auto_pool(AddArgs.parse(ADD), StandaloneFacts("n1").facts("ns", "web-0", "u1")) \
        == {"ips": [], "routes": []}
    assert (portal.calls, sleeps, waits(metrics)) == (3, [2.0, 2.0], 2.0)


def test_after_its_budget_the_add_fails_with_the_portals_reason():
    ipam, metrics, sleeps = service(Portal(*[not_ready()] * 3), retries=2)
    with pytest.raises(PortalError, match="not ready yet"):
        ipam._allocate_waiting_for_auto_pool(AddArgs.parse(ADD), StandaloneFacts("n1").facts("ns", "web-0", "u1"))
    assert (len(sleeps), waits(metrics)) == (2, 2.0)


def test_other_refusals_are_not_waited_for():
    ipam, metrics, sleeps = service(Portal(PortalError("ip_exhausted", "all IP addresses used out", status=409)))
    with pytest.raises(PortalError, match="used out"):
        ipam._allocate_waiting_for_auto_pool(AddArgs.parse(ADD), StandaloneFacts("n1").facts("ns", "web-0", "u1"))
    assert sleeps == [] and waits(metrics) == 0.0


def test_the_budget_comes_from_spiderpools_variables():
    config = load({**BASE_ENV, "SPIDERPOOL_WAIT_SUBNET_POOL_MAX_RETRIES": "7",
                   "SPIDERPOOL_WAIT_SUBNET_POOL_TIME_IN_SECOND": "0.5"})
    assert (config.auto_pool_wait_retries, config.auto_pool_wait_seconds) == (7, 0.5)
    assert (load(BASE_ENV).auto_pool_wait_retries, load(BASE_ENV).auto_pool_wait_seconds) == (25, 2.0)


def test_the_portal_client_does_not_spend_its_own_retries_on_a_pool_being_made():
    from agent.portal import PortalClient

    client = PortalClient("http://portal:8000", "t", retries=5)
    answers = []

    def exchange(method, target, payload, headers):
        answers.append(target)
        return 503, b'{"code": "autopool_not_ready", "message": "not ready yet", "details": {}}'

    client._exchange = exchange
    with pytest.raises(PortalError) as caught:
        client.request("POST", "/v1/ipam/allocate", {})
    assert caught.value.code == "autopool_not_ready" and len(answers) == 1
