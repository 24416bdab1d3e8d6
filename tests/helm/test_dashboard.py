"""The Grafana dashboard shipped in the chart (helm/spiderweb/files/grafana-spiderweb.json): a valid dashboard whose
every panel query names only metrics that Spiderweb's processes export (the portal with its database gauges, the
workers, the agent), and that covers what an operator looks for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from celery import Celery

from agent.metrics import AgentMetrics
from spiderweb import __version__, metrics
from spiderweb.ipam.metrics import PoolCollector
from tests.helm.test_chart import _env, _one, _render, needs_helm
from workers.metrics import QueueDepthCollector

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "spiderweb" / "files" / "grafana-spiderweb.json"
# PromQL words that are not metric names: functions (always followed by "("), aggregation modifiers, operators.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "unknown": ("",)}


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads.

    >>> sorted(metric_names('sum by (le) (rate(a_bucket{x="y", z=~"w"}[$__rate_interval])) / b offset 5m'))
    ['a_bucket', 'b']
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, legends)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = match.group(0), text[match.end():].lstrip()
        if word in KEYWORDS or rest.startswith("(") or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        if text[max(match.start() - 1, 0)] in "0123456789.":  # the unit of a duration or an exponent
            continue
        names.add(word)
    return names


@pytest.fixture
def exported(db) -> set[str]:
    """Every sample name the portal, the workers and the agent can expose, from their real collectors."""
    app = Celery("dashboard-test")
    app.conf.broker_read_url = "redis://127.0.0.1:1/0"  # unreachable: only the family names matter here
    agent = AgentMetrics()
    agent.watch(in_flight=lambda: 0, waiting=lambda: 0, token_present=lambda: True)
    families = list(metrics.scrape_registry(metrics.BuildInfo("portal"), PoolCollector(),
                                            QueueDepthCollector(app)).collect())
    families += list(agent.registry.collect())
    return {family.name + suffix for family in families for suffix in SUFFIXES[family.type]}


def test_dashboard_is_a_grafana_dashboard_with_unique_panels():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "spiderweb-ipam" and dashboard["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys() and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_every_query_names_only_metrics_that_exist(exported):
    dashboard = json.loads(DASHBOARD.read_text())
    missing = {}
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: {target['expr']} reads no metric"
            if names - exported:
                missing[panel["title"]] = sorted(names - exported)
    assert not missing


def test_the_name_check_would_catch_a_typo(exported):
    assert metric_names("sum(rate(spiderweb_ipam_allocation_request_total[5m]))") - exported == {
        "spiderweb_ipam_allocation_request_total"}


def test_the_dashboard_covers_what_the_issue_asks_for():
    dashboard = json.loads(DASHBOARD.read_text())
    queries = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in panels(dashboard)}
    reads = " ".join(queries.values())
    for needed in ("spiderweb_ipam_allocation_requests_total", "spiderweb_ipam_allocation_duration_seconds_bucket",
                   "spiderpool_ipam_allocation_counts_total", "spiderweb_ippool_free_ip_counts",
                   "spiderpool_ip_gc_counts_total", "spiderweb_controller_reconciles_total",
                   "spiderweb_celery_queue_depth", "spiderweb_agent_node_token_present",
                   "spiderpool_debug_auto_pool_waited_for_available_counts_total", "spiderweb_ipam_lock_wait_seconds"):
        assert needed in reads, needed
    assert "topk(10" in queries["Pools nearest exhaustion (utilization)"]
    assert 'result!="ok"' in queries["Allocation failures by reason"]


# ------------------------------------------------------------------------------------------- rendered by helm


@needs_helm
def test_chart_ships_the_dashboard_for_the_grafana_sidecar():
    docs = _render()
    dashboard = _one(docs, "ConfigMap", "spiderweb-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["grafana-spiderweb.json"]) == json.loads(DASHBOARD.read_text())
    moved = _one(_render("metrics.grafanaDashboard.namespace=monitoring", "metrics.grafanaDashboard.label=dash",
                         "metrics.grafanaDashboard.labelValue=yes"), "ConfigMap", "spiderweb-grafana-dashboard")
    assert (moved["metadata"]["namespace"], moved["metadata"]["labels"]["dash"]) == ("monitoring", "yes")
    assert not [d for d in _render("metrics.grafanaDashboard.enabled=false") if d["kind"] == "ConfigMap"
                and d["metadata"]["name"] == "spiderweb-grafana-dashboard"]


@needs_helm
def test_service_monitors_are_optional_and_select_each_metrics_port():
    docs = _render()
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    docs = _render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom")
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceMonitor"}
    assert sorted(monitors) == ["spiderweb-agent", "spiderweb-portal", "spiderweb-worker"]
    services = [d for d in docs if d["kind"] == "Service"]
    for name, monitor in monitors.items():
        assert monitor["metadata"]["labels"]["release"] == "prom"
        wanted = monitor["spec"]["selector"]["matchLabels"]
        port = monitor["spec"]["endpoints"][0]["port"]
        selected = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        assert len(selected) == 1, name
        assert port in [p["name"] for p in selected[0]["spec"]["ports"]], name
        # and the Service's port leads to a container port of that name in the selected pods
        pods = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet") and selected[0]["spec"]["selector"].items()
                <= d["spec"]["template"]["metadata"]["labels"].items()]
        target = selected[0]["spec"]["ports"][0]["targetPort"]
        assert any(p["name"] == target for d in pods for c in d["spec"]["template"]["spec"]["containers"]
                   for p in c.get("ports", [])), name
    secured = _render("metrics.serviceMonitor.enabled=true", "metrics.token=t0k")
    portal_monitor = _one(secured, "ServiceMonitor", "spiderweb-portal")
    assert portal_monitor["spec"]["endpoints"][0]["bearerTokenSecret"] == {"name": "spiderweb-metrics-token",
                                                                           "key": "token"}
    assert _one(secured, "Secret", "spiderweb-metrics-token")["stringData"] == {"token": "t0k"}


@needs_helm
def test_portal_and_worker_run_with_multiprocess_metrics_and_the_default_image_is_make_images():
    docs = _render()
    portal = _one(docs, "Deployment", "spiderweb-portal")["spec"]["template"]["spec"]["containers"][0]
    assert "--config=python:spiderweb.gunicorn_conf" in portal["command"]
    assert _env(portal)["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/spiderweb/prometheus-portal"
    worker = _one(docs, "Deployment", "spiderweb-worker")["spec"]["template"]["spec"]["containers"][0]
    assert _env(worker)["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/spiderweb/prometheus-worker"
    assert _env(worker)["SPIDERWEB_WORKER_METRICS_PORT"] == "5712"
    assert worker["ports"] == [{"name": "metrics", "containerPort": 5712, "protocol": "TCP"}]
    beat = _one(docs, "Deployment", "spiderweb-beat")["spec"]["template"]["spec"]["containers"][0]
    assert "PROMETHEUS_MULTIPROC_DIR" not in _env(beat)
    images = {c["image"] for d in docs if d["kind"] in ("Deployment", "DaemonSet", "Job")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {f"localhost/spiderweb:{_chart_app_version()}"}
    assert _chart_app_version() == __version__  # the tag `make image` gives the image


def _chart_app_version() -> str:
    import yaml

    return yaml.safe_load((DASHBOARD.parents[1] / "Chart.yaml").read_text())["appVersion"]
