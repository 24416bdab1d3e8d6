"""Fixtures for the agent: a real portal (pytest-django's live server on PostgreSQL) and agents on unix sockets.

Nothing on the portal side is faked. Pod facts come from the standalone source (what a plain container runtime
gets) or, where a test needs labels or annotations, from :class:`FixedFacts`, which stands in for the Kubernetes
API only.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.daemon import Agent
from agent.podfacts import StandaloneFacts
from cni.agent_client import AgentClient
from spiderweb.engine.facts import PodFacts, TopController

NODE = "node-1"


class FixedFacts(StandaloneFacts):
    """Standalone facts plus per-pod annotations/owner, for tests that need what only Kubernetes would supply."""

    def __init__(self, node_name: str, *, annotations: dict[str, dict] | None = None,
                 owners: dict[str, TopController] | None = None) -> None:
        super().__init__(node_name)
        self.annotations = annotations or {}
        self.owners = owners or {}

    def facts(self, namespace: str, name: str, uid: str) -> PodFacts:
        base = super().facts(namespace, name, uid)
        return replace(base, annotations=self.annotations.get(name, {}), owner=self.owners.get(name, base.owner))


def free_port() -> int:
    """A TCP port nobody listens on (bound then closed), for "the portal is down"."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pod_args(name: str = "web-0", *, uid: str | None = None, namespace: str = "team-a", if_name: str = "eth0",
             container_id: str | None = None, **extra) -> dict:
    """An ``IpamAddArgs``/``IpamDelArgs`` body like the spiderpool CNI sends."""
    return {
        "containerID": container_id or f"c-{name}",
        "ifName": if_name,
        "netNamespace": f"/var/run/netns/missing-{name}",
        "podNamespace": namespace,
        "podName": name,
        "podUID": uid if uid is not None else str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}")),
        **extra,
    }


@pytest.fixture
def short_dir():
    """A short directory for unix sockets (their paths are limited to 107 bytes; pytest's tmp_path may not be)."""
    path = Path(tempfile.mkdtemp(prefix="swa-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def portal(live_server):
    """Tenant, pools and a node token in the real portal; returns what the agent needs to talk to it."""
    from spiderweb.ipam import services

    tenant = services.tenant_create(name="acme")
    services.ippool_create(tenant=tenant, name="v4-pool", spec={
        "subnet": "10.20.0.0/24", "ips": ["10.20.0.10-10.20.0.19"], "gateway": "10.20.0.1"})
    services.ippool_create(tenant=tenant, name="tiny-pool", spec={"subnet": "10.21.0.0/24", "ips": ["10.21.0.5"]})
    _, token = services.node_credential_issue(node_name=NODE)
    return {"url": live_server.url, "token": token, "tenant": tenant}


@pytest.fixture
def start_agent(portal, short_dir):
    """``start_agent(**config_overrides, facts=...)`` -> a started standalone agent, stopped after the test."""
    started: list[Agent] = []

    def start(*, facts=None, **overrides) -> Agent:
        config = AgentConfig(
            node_name=NODE, portal_url=portal["url"], node_token=portal["token"], mode="standalone",
            socket_path=str(short_dir / f"agent{len(started)}.sock"), health_port=0, metrics_port=0,
            metrics_address="127.0.0.1", cni_bin_dir="", portal_retries=1, portal_backoff=0.01, portal_timeout=20,
            shutdown_grace=5,
        )
        agent = Agent(replace(config, **overrides), facts=facts)
        agent.start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def agent(start_agent):
    return start_agent()


def client_for(agent: Agent) -> AgentClient:
    """The CNI executables' own client: the tests speak to the agent exactly as they do."""
    return AgentClient(agent.config.socket_path, user_agent="spiderweb-tests")
