"""The coordinator keeps working through a portal outage: the last configuration the portal served is used, and a
DEL never fails for lack of it (chaos run: a DEL failed this way is never retried once Multus dropped its cache)."""

import pytest

from agent import coordination
from agent.coordination import CoordinatorService
from agent.errors import PortalUnavailable
from agent.podfacts import StandaloneFacts


class Portal:
    def __init__(self):
        self.up = True

    def coordinator_config(self):
        if not self.up:
            raise PortalUnavailable("portal unavailable for GET coordinator/config after 4 attempt(s)")
        return {"mode": "underlay", "hostRuleTable": 600}


def test_the_last_good_configuration_survives_an_outage():
    portal = Portal()
    service = CoordinatorService(portal=portal, facts=StandaloneFacts("n1"), cache_seconds=0)
    assert service.cluster_config()["hostRuleTable"] == 600
    portal.up = False
    assert service.cluster_config()["hostRuleTable"] == 600


def test_without_any_configuration_yet_an_add_fails_but_a_del_goes_ahead(monkeypatch):
    portal = Portal()
    portal.up = False
    service = CoordinatorService(portal=portal, facts=StandaloneFacts("n1"), cache_seconds=0)
    with pytest.raises(PortalUnavailable):
        service.cluster_config()
    seen = {}
    monkeypatch.setattr(coordination.netlink_coordinator, "coordinator_del",
                        lambda **kwargs: seen.update(kwargs))
    service.delete({"containerID": "c1", "ifName": "eth0", "netNamespace": "/var/run/netns/x", "cniVersion": "1.0.0",
                    "podNamespace": "ns",
                    "podName": "p", "podUID": "u", "config": {}})
    assert seen["container_id"] == "c1"
