"""The node token read from a file that may appear, change or vanish while the agent runs (helm/README.md)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from agent.node_token import NodeToken
from cni.errors import AgentError
from tests.agent.conftest import client_for, pod_args


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_file_is_reread_when_it_changes_but_not_on_every_call(tmp_path):
    path, clock = tmp_path / "token", Clock()
    token = NodeToken(path=str(path), recheck_seconds=1.0, clock=clock)
    assert token.get() == ""  # not there yet: checked on every call
    path.write_text("swn_a.one\n")
    assert token.get() == "swn_a.one"
    path.write_text("swn_b.two-longer\n")
    assert token.get() == "swn_a.one"  # within the recheck interval
    clock.now = 1.5
    assert token.get() == "swn_b.two-longer"
    path.write_text("swn_c.three-----\n")
    token.invalidate()  # the portal said 401
    assert token.get() == "swn_c.three-----"
    path.unlink()
    clock.now = 3.0
    assert token.get() == ""


@pytest.mark.django_db(transaction=True)
def test_an_agent_without_its_token_is_not_ready_then_picks_it_up_and_follows_a_rotation(start_agent, tmp_path):
    from spiderweb.ipam import services

    path = tmp_path / "node-1"
    agent = start_agent(node_token="", node_token_file=str(path))
    client = client_for(agent)

    def probe(name: str) -> int:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{agent.health_port}/v1/runtime/{name}", timeout=5).status
        except urllib.error.HTTPError as exc:
            return exc.code

    with pytest.raises(AgentError) as caught:
        client.call("POST", "/v1/ipam/ip", pod_args("web-0", defaultIPv4IPPool=["v4-pool"]))
    assert (caught.value.status, caught.value.code) == (503, "unavailable")
    assert "no node token yet (SPIDERWEB_NODE_TOKEN_FILE=" in caught.value.message
    assert (probe("readiness"), probe("liveness")) == (500, 200)

    _, first = services.node_credential_issue(node_name="node-1")
    path.write_text(first)
    assert client.call("POST", "/v1/ipam/ip", pod_args("web-0", defaultIPv4IPPool=["v4-pool"]))["ips"]
    assert probe("readiness") == 200

    _, second = services.node_credential_issue(node_name="node-1")  # rotation: the first token stops working
    path.write_text(second)
    assert client.call("POST", "/v1/ipam/ip", pod_args("web-1", defaultIPv4IPPool=["v4-pool"]))["ips"]
