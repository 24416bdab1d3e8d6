"""Wrongly typed or nonsensical input is a 400 (or 404 for an unknown id), never a 500."""

import pytest
from django.urls import reverse

from spiderweb.ipam import services

pytestmark = pytest.mark.django_db

POOL = {"name": "p1", "tenant": "tenant-a", "subnet": "10.1.0.0/24"}


@pytest.mark.parametrize(
    "body",
    [
        POOL | {"ipVersion": "four"},
        POOL | {"ipVersion": 5},
        POOL | {"subnet": 123},
        POOL | {"subnet": ""},
        POOL | {"subnet": "10.1.0.0/24/8"},
        POOL | {"subnet": "::ffff:10.1.0.0/120"},
        POOL | {"ips": [1, 2]},
        POOL | {"ips": [["10.1.0.1"]]},
        POOL | {"ips": ["10.1.0.1-"]},
        POOL | {"ips": ["10.1.0.1-10.1.0.2-10.1.0.3"]},
        POOL | {"excludeIPs": None},
        POOL | {"gateway": "zzz"},
        POOL | {"gateway": "10.2.0.1"},
        POOL | {"gateway": 7},
        POOL | {"routes": "x"},
        POOL | {"routes": [None]},
        POOL | {"routes": [{"dst": "x", "gw": "y"}]},
        POOL | {"routes": [{"dst": "10.9.0.0/16", "gw": "10.1.0.1"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.2"}]},
        POOL | {"podAffinity": "app=web"},
        POOL | {"podAffinity": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}},
        POOL | {"nodeAffinity": []},
        POOL | {"nodeName": "node-1"},
        POOL | {"multusName": [""]},
        POOL | {"labels": ["a"]},
        POOL | {"default": "maybe"},
        POOL | {"tenant": 5},
        POOL | {"tenant": None},
        POOL | {"name": "x" * 300},
        POOL | {"name": ""},
        {"name": "p1"},
    ],
)
def test_bad_pool_bodies_are_400(api, staff, tenant_a, body):
    response = api(staff).post(reverse("ippool-list"), body, format="json")
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    "body",
    [
        {"subnet": "10.2.0.0/24"},
        {"ipVersion": 6},
        {"ips": None},
        {"ips": "10.1.0.1"},
        {"routes": None, "gateway": None, "podAffinity": None} | {"excludeIPs": ["10.1.0.0/24"]},
        {"labels": None},
    ],
)
def test_bad_pool_patches_are_400(api, staff, tenant_a, body):
    pool = services.ippool_create(tenant=tenant_a, name="p1", spec={"subnet": "10.1.0.0/24", "ips": ["10.1.0.10"]})
    response = api(staff).patch(reverse("ippool-detail", args=[pool.pk]), body, format="json")
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    ("basename", "query"),
    [
        ("ippool", {"ipVersion": "abc"}),
        ("allocation", {"ipVersion": "x"}),
        ("objectchange", {"objectID": "x"}),
        ("objectchange", {"requestID": "not-a-uuid"}),
        ("objectchange", {"action": "explode"}),
    ],
)
def test_bad_filters_are_400(api, staff, basename, query):
    response = api(staff).get(reverse(f"{basename}-list"), query)
    assert response.status_code == 400, response.content


def test_bad_pagination_and_ordering_are_not_500(api, staff):
    client = api(staff)
    assert client.get(reverse("ippool-list"), {"limit": "x", "offset": "-3"}).status_code == 200
    assert client.get(reverse("ippool-list"), {"ordering": "nonsense"}).status_code == 400


def test_unknown_or_malformed_ids_are_404(api, staff):
    client = api(staff)
    assert client.get("/api/v1/pools/abc/").status_code == 404
    assert client.get(reverse("ippool-detail", args=[999999])).status_code == 404
    assert client.post(reverse("allocation-release", args=[999999])).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"enableIPv6": "sometimes"},
        {"clusterSubnetDefaultFlexibleIPNumber": -1},
        {"clusterSubnetDefaultFlexibleIPNumber": "many"},
    ],
)
def test_bad_settings_are_400(api, staff, body):
    response = api(staff).patch(reverse("cluster-settings"), body, format="json")
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    "body",
    [
        {"facts": {"namespace": 1}},
        {"facts": {}, "ifName": ""},
        {"facts": {}, "cni": {"default_ipv4_ippool": "p1"}},
        {"facts": {}, "cni": "x"},
    ],
)
def test_bad_explain_bodies_are_400(api, staff, body):
    response = api(staff).post(reverse("explain"), body, format="json")
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    "body",
    [
        {"facts": "x", "ifName": "eth0"},
        {"facts": {}, "ifName": "eth0"},
        {"facts": {"namespace": "default", "name": "p", "uid": "u", "node": "node-1", "labels": [], "annotations": {},
                   "owner": {}, "namespace_labels": {}, "namespace_annotations": {}, "node_labels": {}},
         "ifName": "eth0"},
        {"podNamespace": "default"},
    ],
)
def test_bad_internal_bodies_are_400(body):
    from rest_framework.test import APIClient

    _, token = services.node_credential_issue(node_name="node-1")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = reverse("internal-release") if "podNamespace" in body else reverse("internal-allocate")
    response = client.post(url, body, format="json")
    assert response.status_code == 400, response.content


@pytest.mark.parametrize("limit", ["100000000000000000000", "9223372036854775808", "5000"])
def test_huge_page_sizes_are_capped(api, staff, tenant_a, limit):
    # Given two pools (issue 10: ?limit=1e20 was a 409 on SQLite and a 500 on PostgreSQL)
    for index in (1, 2):
        services.ippool_create(tenant=tenant_a, name=f"p{index}", spec={"subnet": f"10.{index}.0.0/24"})
    response = api(staff).get(reverse("ippool-list"), {"limit": limit, "offset": "100000000000000000000"})
    # Then the page is empty (the offset is past the end) and the next link carries the cap, not the huge limit
    assert response.status_code == 200, response.content
    assert response.json()["count"] == 2 and response.json()["results"] == []
    first = api(staff).get(reverse("ippool-list"), {"limit": limit})
    assert first.status_code == 200 and len(first.json()["results"]) == 2


@pytest.mark.parametrize(
    ("url", "auth"),
    [(reverse("ippool-list"), "staff"), (reverse("explain"), "staff"), (reverse("tenant-list"), "staff"),
     (reverse("internal-allocate"), "node")],
)
@pytest.mark.parametrize("depth", [100, 100_000])
def test_a_deeply_nested_json_body_is_a_400(api, staff, url, auth, depth):
    # Given a body nested `depth` levels deep (issue 10: a RecursionError, answered as an HTML 500)
    if auth == "node":
        from rest_framework.test import APIClient

        _, token = services.node_credential_issue(node_name="node-1")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    else:
        client = api(staff)
    body = '{"name": ' + "[" * depth + "]" * depth + "}"
    response = client.post(url, body, content_type="application/json")
    # Then it is a 400 saying why
    assert response.status_code == 400, response.content[:300]
    assert "nested deeper than 64 levels" in response.json()["detail"]
