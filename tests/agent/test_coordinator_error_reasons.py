"""The agent tells the coordinator shim *what* was invalid, so the runtime sees the spec's CNI codes (cni/README.md):
a wrong-type value in the network config is code 7, a netns that does not exist is code 3."""

import pytest

from agent import coordination
from agent.coordination import CoordinatorService
from agent.podfacts import StandaloneFacts
from cni.errors import AgentError, cni_error_from_agent_error
from spiderweb.engine.errors import InvalidInput


class Portal:
    def coordinator_config(self):
        return {"mode": "underlay"}


def _call(netns: str, **config) -> dict:
    return {"containerID": "c1", "ifName": "eth0", "netNamespace": netns, "cniVersion": "1.0.0",
            "podNamespace": "ns", "podName": "p", "podUID": "u", "config": {"type": "coordinator", **config},
            "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.6.0.10/24"}]}}


def _cni_code(exc: InvalidInput) -> int:
    body = exc.to_dict()
    return cni_error_from_agent_error(AgentError(400, body["code"], body["message"], body["details"])).code


@pytest.fixture
def service(monkeypatch):
    def netlink_must_not_run(**kwargs):
        raise AssertionError("netlink work for an invalid call")

    monkeypatch.setattr(coordination.netlink_coordinator, "coordinator_add", netlink_must_not_run)
    monkeypatch.setattr(coordination.netlink_coordinator, "coordinator_check", netlink_must_not_run)
    return CoordinatorService(portal=Portal(), facts=StandaloneFacts("n1"), cache_seconds=0)


@pytest.mark.parametrize("config", [{"vethMTU": "big"}, {"tunePodRoutes": "yes"}, {"hostRuleTable": "main"}])
def test_a_wrong_type_config_value_is_cni_code_7(config, service, tmp_path):
    netns = tmp_path / "netns"
    netns.write_text("")

    with pytest.raises(InvalidInput) as raised:
        service.add(_call(str(netns), **config))

    assert raised.value.details["reason"] == coordination.INVALID_CONFIG
    assert _cni_code(raised.value) == 7


@pytest.mark.parametrize("method", ["add", "check"])
def test_a_missing_netns_is_cni_code_3(method, service, tmp_path):
    missing = str(tmp_path / "gone")

    with pytest.raises(InvalidInput) as raised:
        getattr(service, method)(_call(missing))

    assert raised.value.details == {"reason": coordination.UNKNOWN_CONTAINER, "netNamespace": missing}
    assert _cni_code(raised.value) == 3
