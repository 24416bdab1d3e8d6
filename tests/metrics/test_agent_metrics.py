"""The node agent as a process (``python -m agent``, standalone mode) against the portal under gunicorn: its metrics
by name and type (Spiderpool's, spec §13.1, and the agent's health), and ``--version``."""

from __future__ import annotations

import subprocess
import sys
import uuid

from cni.agent_client import AgentClient
from spiderweb import __version__
from spiderweb.ipam import services
from tests import live
from tests.ipam import factories as f
from tests.lab.controlplane import free_port
from tests.mirror.lab import wait_for

AGENT_TYPES = {
    "spiderpool_ipam_allocation_counts": "counter",
    "spiderpool_ipam_allocation_failure_counts": "counter",
    "spiderpool_ipam_allocation_err_no_available_pool_counts": "counter",
    "spiderpool_ipam_allocation_err_ip_used_out_counts": "counter",
    "spiderpool_ipam_allocation_duration_seconds": "histogram",
    "spiderpool_ipam_allocation_average_duration_seconds": "gauge",
    "spiderpool_ipam_allocation_limit_duration_seconds": "histogram",
    "spiderpool_ipam_release_counts": "counter",
    "spiderpool_ipam_release_failure_counts": "counter",
    "spiderpool_ipam_release_duration_seconds": "histogram",
    "spiderpool_debug_auto_pool_waited_for_available_counts": "counter",
    "spiderweb_agent_requests_in_flight": "gauge",
    "spiderweb_agent_requests_waiting": "gauge",
    "spiderweb_agent_node_token_present": "gauge",
    "spiderweb_build_info": "gauge",
}


def test_agent_prints_its_version():
    result = subprocess.run([sys.executable, "-m", "agent", "--version"], capture_output=True, text=True, timeout=30,
                            cwd=live.REPO)
    assert (result.returncode, result.stdout) == (0, f"spiderweb-agent {__version__}\n")


def test_running_agent_exports_spiderpool_metrics_and_its_health(transactional_db, tmp_path, tenant_a):
    # Given the portal under gunicorn with a pool of one address, and an agent process for node-1
    f.pool("agent-pool", "10.62.0.0/24", ["10.62.0.10"], owner=tenant_a)
    _, token = services.node_credential_issue(node_name="node-1")
    portal = live.portal_start(tmp_path, live.live_env())
    socket_path = f"/tmp/swm-{uuid.uuid4().hex[:8]}.sock"
    metrics_port = free_port()
    env = live.live_env(SPIDERWEB_NODE_NAME="node-1", SPIDERWEB_PORTAL_URL=portal.url, SPIDERWEB_NODE_TOKEN=token,
                        SPIDERWEB_AGENT_MODE="standalone", SPIDERWEB_AGENT_SOCKET=socket_path,
                        SPIDERWEB_AGENT_HEALTH_PORT=str(free_port()), SPIDERWEB_AGENT_METRICS_PORT=str(metrics_port),
                        SPIDERWEB_AGENT_METRICS_ADDRESS="127.0.0.1", SPIDERWEB_CNI_BIN_DIR="")
    agent = live.spawn([sys.executable, "-m", "agent"], env, tmp_path / "agent.log")
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        wait_for("the agent's metrics listener", lambda: live.http_ok(url), timeout=30)
        client = AgentClient(socket_path, user_agent="spiderweb-tests")
        wait_for("the agent socket", lambda: live.agent_healthy(client), timeout=30)
        # When two pods ask for the pool's only address and the first is deleted
        args = [_pod_args(name) for name in ("web-0", "web-1")]
        client.call("POST", "/v1/ipam/ip", args[0])
        try:
            client.call("POST", "/v1/ipam/ip", args[1])
            raise AssertionError("the second pod got an address from a one-address pool")
        except Exception as exc:  # noqa: BLE001 - the CNI client's error type is what the CNI sees
            assert "used out" in str(exc) or "exhausted" in str(exc), exc
        client.call("DELETE", "/v1/ipam/ip", args[0])
        # Then the agent's scrape has Spiderpool's names with the right types and counts, and its health
        scraped = live.scrape(url)
        for name, kind in AGENT_TYPES.items():
            assert scraped.type_of(name) == kind, name
        assert scraped.value("spiderpool_ipam_allocation_counts_total") == 2
        assert scraped.value("spiderpool_ipam_allocation_err_ip_used_out_counts_total") == 1
        assert scraped.value("spiderpool_ipam_release_counts_total") == 1
        assert scraped.value("spiderweb_agent_node_token_present") == 1
        assert scraped.value("spiderweb_agent_requests_in_flight") == 0
        assert scraped.value("spiderweb_build_info", component="agent", version=__version__) == 1
    finally:
        live.stop_process(agent)
        live.stop(portal)



def _pod_args(name: str) -> dict:
    return {"containerID": f"c-{name}", "ifName": "eth0", "netNamespace": f"/var/run/netns/missing-{name}",
            "podNamespace": "team-a", "podName": name, "podUID": str(uuid.uuid4()),
            "defaultIPv4IPPool": ["agent-pool"]}
