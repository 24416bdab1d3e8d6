"""Every query of the Grafana dashboard run by a real Prometheus (Debian's) that scrapes a running portal, worker
and agent: each query is valid PromQL that Prometheus evaluates without error, and the panels an operator looks
at first have data."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.parse
import urllib.request
import uuid

import pytest
from celery import Celery

from cni.agent_client import AgentClient
from spiderweb.ipam import services
from tests import live
from tests.helm.test_dashboard import DASHBOARD, panels
from tests.ipam import factories as f
from tests.lab.controlplane import free_port
from tests.mirror.lab import wait_for

pytestmark = pytest.mark.slow

# Panels that must show data after a little traffic (the others may be empty: no failures, no GC).
MUST_HAVE_DATA = {
    "Allocation rate (portal, by result)", "CNI ADD and DEL rate (agents)", "Allocation latency (portal)",
    "SpiderIPPools", "Cluster utilization", "Pools nearest exhaustion (utilization)",
    "Pools with the fewest free addresses", "Controller reconciles", "Task queue depth", "Agents reporting",
    "Requests in flight / waiting", "Versions",
}


def _query(url: str, expr: str) -> dict:
    query = urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        return json.load(exc)


def test_every_dashboard_query_runs_on_prometheus_scraping_the_real_processes(transactional_db, tmp_path, tenant_a):
    if shutil.which("prometheus") is None:
        pytest.skip("no prometheus binary (Debian package prometheus; `make test-deps` installs it)")
    # Given a portal, a worker and an agent, each with some traffic
    f.pool("dash-pool", "10.90.0.0/24", ["10.90.0.10-10.90.0.99"], owner=tenant_a)
    _, token = services.node_credential_issue(node_name="node-1")
    for name in ("portal", "worker", "prometheus"):
        (tmp_path / name).mkdir()
    env = live.live_env()
    portal = live.portal_start(tmp_path / "portal", env)
    worker = live.worker_start(tmp_path / "worker", env)
    socket_path = f"/tmp/swd-{uuid.uuid4().hex[:8]}.sock"
    agent_port = free_port()
    agent = live.spawn([sys.executable, "-m", "agent"], live.live_env(
        SPIDERWEB_NODE_NAME="node-1", SPIDERWEB_PORTAL_URL=portal.url, SPIDERWEB_NODE_TOKEN=token,
        SPIDERWEB_AGENT_MODE="standalone", SPIDERWEB_AGENT_SOCKET=socket_path,
        SPIDERWEB_AGENT_HEALTH_PORT=str(free_port()), SPIDERWEB_AGENT_METRICS_PORT=str(agent_port),
        SPIDERWEB_AGENT_METRICS_ADDRESS="127.0.0.1", SPIDERWEB_CNI_BIN_DIR=""), tmp_path / "agent.log")
    prometheus = None
    try:
        wait_for("the agent", lambda: live.http_ok(f"http://127.0.0.1:{agent_port}/metrics"), timeout=30)
        client = AgentClient(socket_path, user_agent="spiderweb-tests")
        wait_for("the agent socket", lambda: live.agent_healthy(client), timeout=30)
        sender = Celery("dashboard-sender")
        sender.conf.broker_write_url = env["CELERY_BROKER_URL"]
        # And Prometheus scraping all three every second
        prom_port = free_port()
        targets = [urllib.parse.urlsplit(u).netloc for u in (portal.url, worker.url)] + [f"127.0.0.1:{agent_port}"]
        config = tmp_path / "prometheus" / "prometheus.yml"
        config.write_text(json.dumps({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                      "scrape_configs": [{"job_name": "spiderweb",
                                                          "static_configs": [{"targets": targets}]}]}))
        prometheus = live.spawn(["prometheus", f"--config.file={config}",
                                 f"--storage.tsdb.path={tmp_path / 'prometheus' / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{prom_port}"], env, tmp_path / "prometheus.log")
        url = f"http://127.0.0.1:{prom_port}"
        wait_for("Prometheus", lambda: live.http_ok(f"{url}/-/ready"), timeout=60)
        # When pods come and go and tasks run for a few seconds
        deadline = time.monotonic() + 8
        i = 0
        while time.monotonic() < deadline and i < 40:
            args = {"containerID": f"c{i}", "ifName": "eth0", "netNamespace": "/var/run/netns/x", "podNamespace": "d",
                    "podName": f"p{i}", "podUID": str(uuid.uuid4()), "defaultIPv4IPPool": ["dash-pool"]}
            client.call("POST", "/v1/ipam/ip", args)
            if i % 2:
                client.call("DELETE", "/v1/ipam/ip", args)
            sender.send_task("workers.tasks.verify_allocation_integrity_task")
            i += 1
            time.sleep(0.5)

        def scraped_all():
            result = _query(url, 'count(up{job="spiderweb"} == 1)')["data"]["result"]
            return result and result[0]["value"][1] == "3"

        wait_for("three healthy targets", scraped_all, timeout=30)
        # Then every query of every panel evaluates, and the first-look panels have data (a rate needs two scrapes
        # of a series, so a panel whose only samples came in the last second gets a little longer)
        failures, empty = {}, []
        for panel in panels(json.loads(DASHBOARD.read_text())):
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "30s")
                answer = _query(url, expr)
                if answer.get("status") != "success":
                    failures[f"{panel['title']}: {expr}"] = answer.get("error")
                elif panel["title"] in MUST_HAVE_DATA and target["refId"] == "A" and not answer["data"]["result"]:
                    empty.append((panel["title"], expr))
        assert not failures

        def still_empty():
            empty[:] = [(title, expr) for title, expr in empty if not _query(url, expr)["data"]["result"]]
            return not empty

        try:
            wait_for("data in the first-look panels", still_empty, timeout=20)
        except AssertionError:
            pytest.fail(f"panels without data: {empty}\nworker log:\n{worker.log_tail()}")
    finally:
        if prometheus is not None:
            live.stop_process(prometheus)
        live.stop_process(agent)
        live.stop(worker)
        live.stop(portal)

