"""The portal's /metrics: Spiderpool's names (spec §13.2) and ours, right types and values, computed from the
database when scraped; under gunicorn, every worker's counts merged (multiprocess mode)."""

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from spiderweb.ipam import allocation, services
from spiderweb.ipam.allocation import AllocateRequest
from spiderweb.ipam.models import Endpoint
from tests import live
from tests.ipam import factories as f

POOL_GAUGES = {
    "spiderpool_total_ippool_counts", "spiderpool_total_subnet_counts", "spiderpool_debug_ippool_total_ip_counts",
    "spiderpool_debug_ippool_available_ip_counts", "spiderpool_debug_subnet_ippool_counts",
    "spiderpool_debug_subnet_total_ip_counts", "spiderpool_debug_subnet_available_ip_counts",
    "spiderweb_ippool_allocated_ip_counts", "spiderweb_ippool_free_ip_counts", "spiderweb_ippool_usable_ip_counts",
    "spiderweb_subnet_allocated_ip_counts", "spiderweb_build_info",
}
PORTAL_TYPES = {
    "spiderweb_ipam_allocation_requests": "counter",
    "spiderweb_ipam_allocation_duration_seconds": "histogram",
    "spiderweb_ipam_release_requests": "counter",
    "spiderweb_ipam_release_duration_seconds": "histogram",
    "spiderweb_ipam_released_ips": "counter",
    "spiderweb_ipam_lock_wait_seconds": "histogram",
} | dict.fromkeys(POOL_GAUGES, "gauge")


def annotated(name, pool, **kw):
    return f.facts(name, annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pool]})}, **kw)


def scrape_in_process(client=None, **headers):
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    return live.parse(response.content.decode())


@pytest.mark.django_db
def test_pool_and_subnet_gauges_are_the_database_now(tenant_a):
    # Given a subnet with a pool cut from it (one reserved address inside) and a pool of its own
    subnet = services.subnet_create(tenant=tenant_a, name="s1", spec={"subnet": "10.1.0.0/24",
                                                                      "ips": ["10.1.0.10-10.1.0.29"]})
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.13"], owner=tenant_a)
    f.pool("p2", "10.2.0.0/24", ["10.2.0.10-10.2.0.19"], owner=tenant_a)
    services.reservedip_create(tenant=tenant_a, name="r1", spec={"ips": ["10.1.0.13"]})
    # And two pods holding addresses of p1
    for name in ("a", "b"):
        allocation.ippool_allocate(request=AllocateRequest(facts=annotated(name, "p1"), if_name="eth0"))
    # When Prometheus scrapes the portal by pod IP (never an allowed host)
    scraped = scrape_in_process(HTTP_HOST="10.244.1.7:8000")
    # Then the totals and per-object gauges are what the rows say
    assert scraped.value("spiderpool_total_ippool_counts") == 2
    assert scraped.value("spiderpool_total_subnet_counts") == 1
    assert scraped.value("spiderpool_debug_ippool_total_ip_counts", SpiderIPPool="p1") == 4
    assert scraped.value("spiderpool_debug_ippool_available_ip_counts", SpiderIPPool="p1") == 2
    assert scraped.value("spiderweb_ippool_allocated_ip_counts", SpiderIPPool="p1", tenant="tenant-a") == 2
    assert scraped.value("spiderweb_ippool_usable_ip_counts", SpiderIPPool="p1") == 3
    assert scraped.value("spiderweb_ippool_free_ip_counts", SpiderIPPool="p1") == 1
    assert scraped.value("spiderweb_ippool_free_ip_counts", SpiderIPPool="p2") == 10
    assert scraped.value("spiderpool_debug_subnet_ippool_counts", SpiderSubnet=subnet.name) == 1
    assert scraped.value("spiderpool_debug_subnet_total_ip_counts", SpiderSubnet="s1") == 20
    assert scraped.value("spiderpool_debug_subnet_available_ip_counts", SpiderSubnet="s1") == 16
    assert scraped.value("spiderweb_subnet_allocated_ip_counts", SpiderSubnet="s1") == 2
    assert scraped.value("spiderweb_build_info", component="portal") == 1
    for name, kind in PORTAL_TYPES.items():
        assert scraped.type_of(name) == kind, name
    # And a release is a gauge change at the next scrape, not an ever-growing counter (Appendix A2)
    endpoint = Endpoint.objects.get(name="a")
    allocation.ippool_release(namespace="default", name="a", pod_uid=endpoint.uid, reason="cni-del")
    again = scrape_in_process()
    assert again.value("spiderweb_ippool_allocated_ip_counts", SpiderIPPool="p1") == 1


@pytest.mark.django_db
def test_allocation_failures_are_counted_by_reason(tenant_a):
    f.pool("tiny", "10.3.0.0/24", ["10.3.0.10"], owner=tenant_a)
    before = scrape_in_process()

    def count(scraped, result):
        try:
            return scraped.value("spiderweb_ipam_allocation_requests_total", result=result)
        except AssertionError:
            return 0.0

    allocation.ippool_allocate(request=AllocateRequest(facts=annotated("x", "tiny"), if_name="eth0"))
    with pytest.raises(Exception, match="used out"):
        allocation.ippool_allocate(request=AllocateRequest(facts=annotated("y", "tiny"), if_name="eth0"))
    with pytest.raises(Exception, match="do not exist"):
        allocation.ippool_allocate(request=AllocateRequest(facts=annotated("z", "missing"), if_name="eth0"))
    after = scrape_in_process()
    assert count(after, "ok") - count(before, "ok") == 1
    assert count(after, "ip_exhausted") - count(before, "ip_exhausted") == 1
    assert count(after, "not_found") - count(before, "not_found") == 1
    assert (after.value("spiderweb_ipam_allocation_duration_seconds_count")
            - before.value("spiderweb_ipam_allocation_duration_seconds_count")) == 3
    assert after.value("spiderweb_ipam_lock_wait_seconds_count", lock="pod") >= 3


@pytest.mark.django_db
def test_a_metrics_token_is_required_when_configured(monkeypatch):
    monkeypatch.setenv("SPIDERWEB_METRICS_TOKEN", "s3cret")
    client = Client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
    assert client.post("/metrics").status_code == 405


def test_portal_under_gunicorn_merges_every_workers_counts(transactional_db, tmp_path, tenant_a):
    # Given the portal under gunicorn with two workers and a pool of three addresses
    f.pool("p1", "10.9.0.0/24", ["10.9.0.10-10.9.0.12"], owner=tenant_a)
    _, token = services.node_credential_issue(node_name="node-1")
    portal = live.portal_start(tmp_path, live.live_env(), workers=2)
    try:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        # When four pods ask for an address over real HTTP (spread over the workers by the kernel)
        codes = []
        pods = [annotated(f"pod-{i}", "p1") for i in range(4)]
        for i, pod in enumerate(pods):
            body = {"facts": pod.to_dict(), "ifName": "eth0", "containerID": f"c{i}"}
            codes.append(_post(f"{portal.url}/api/internal/v1/ipam/allocate", body, token))
        assert codes == [200, 200, 200, 409]
        # And one of them is deleted (CNI DEL)
        body = {"podNamespace": "default", "podName": "pod-0", "podUID": pods[0].uid, "containerID": "c0"}
        assert _post(f"{portal.url}/api/internal/v1/ipam/release", body, token) == 200
        # Then one scrape counts all of them, whichever worker served it, with the right types
        scraped = live.scrape(f"{portal.url}/metrics")
        assert scraped.value("spiderweb_ipam_allocation_requests_total", result="ok") == 3
        assert scraped.value("spiderweb_ipam_allocation_requests_total", result="ip_exhausted") == 1
        assert scraped.value("spiderweb_ipam_allocation_duration_seconds_count") == 4
        assert scraped.value("spiderweb_ipam_release_requests_total", result="ok") == 1
        assert scraped.value("spiderweb_ipam_released_ips_total", reason="cni-del") == 1
        assert scraped.value("spiderweb_ippool_allocated_ip_counts", SpiderIPPool="p1") == 2
        for name, kind in PORTAL_TYPES.items():
            assert scraped.type_of(name) == kind, name
        assert len(list((tmp_path / "prometheus").glob("*.db"))) >= 2  # one file set per process
    finally:
        live.stop(portal)


def _post(url, body, token) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_result_label_of_each_kind_of_outcome():
    from django.db import OperationalError

    from spiderweb.engine.errors import Exhausted
    from spiderweb.metrics import result_of

    assert result_of(None) == "ok"
    assert result_of(Exhausted("all IP addresses used out")) == "ip_exhausted"
    assert result_of(OperationalError("lock timeout")) == "unavailable"
    assert result_of(ValueError("bug")) == "internal"
