"""POST /api/v1/explain/: a dry run that says which pool would serve a pod and why the others were rejected."""

import json

import pytest
from django.urls import reverse

from spiderweb.ipam.models import Allocation, Endpoint
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db

EXPLAIN = reverse("explain")


def explain(client, facts, **extra):
    return client.post(EXPLAIN, {"facts": facts.to_dict(), **extra}, format="json")


def ippool_annotation(*names):
    return {"ipam.spidernet.io/ippool": json.dumps({"ipv4": list(names)})}


def test_a_pod_that_would_be_served_gets_its_address_and_nothing_is_allocated(api, staff, tenant_a):
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.20"], owner=tenant_a, gateway="10.1.0.1")
    response = explain(api(staff), f.facts("web-0", annotations=ippool_annotation("p1")))
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert [ip["address"] for ip in body["response"]["ips"]] == ["10.1.0.10/24"]
    assert body["nics"][0]["accepted"] == ["p1"]
    assert not Allocation.objects.exists()
    assert not Endpoint.objects.exists()


def test_a_pod_rejected_for_affinity_gets_the_reason(api, staff, tenant_a):
    f.pool("web-only", "10.1.0.0/24", ["10.1.0.10"], owner=tenant_a, pod_affinity={"matchLabels": {"app": "web"}})
    pod = f.facts("db-0", labels={"app": "db"}, annotations=ippool_annotation("web-only"))
    response = explain(api(staff), pod)
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "no_pool_available"
    assert "web-only: pod labels do not match podAffinity" in body["error"]["message"]
    assert body["nics"][0]["rejected"] == [{"pool": "web-only", "reason": "pod labels do not match podAffinity"}]


def test_broken_annotation_json_is_a_400_with_the_parse_error(api, staff, tenant_a):
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10"], owner=tenant_a)
    pod = f.facts("web-0", annotations={"ipam.spidernet.io/ippool": '{"ipv4": ["p1"'})
    response = explain(api(staff), pod)
    assert response.status_code == 400
    body = response.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "invalid_input"
    assert "is not valid JSON" in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({}, "This field is required."),
        ({"facts": {"namespace": "default"}}, "pod facts is missing required field(s)"),
        ({"facts": "not an object"}, "Expected a dictionary of items"),
    ],
    ids=["no-facts", "incomplete-facts", "facts-not-an-object"],
)
def test_malformed_facts_are_a_400(api, staff, body, text):
    response = api(staff).post(EXPLAIN, body, format="json")
    assert response.status_code == 400
    assert text in response.content.decode()


def test_another_tenants_pool_names_are_redacted_for_members(api, member, tenant_b):
    # Given a pod that would be served by tenant-b's pool "pb"
    f.pool("pb", "10.2.0.0/24", ["10.2.0.10"], owner=tenant_b)
    response = explain(api(member), f.facts("web-0", annotations=ippool_annotation("pb")))
    # Then a member of tenant-a learns the outcome but not the pool's name
    text = json.dumps(response.json())
    assert response.status_code == 200
    assert '"pb"' not in text
    assert "(another tenant's object)" in text


def test_anonymous_cannot_explain(api):
    assert api().post(EXPLAIN, {"facts": f.facts().to_dict()}, format="json").status_code == 401


def test_a_pool_younger_than_the_cached_catalog_is_explained_not_a_500(api, staff, tenant_a):
    # Given a catalog cached by an earlier explain
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10"], owner=tenant_a)
    assert explain(api(staff), f.facts("web-0", annotations=ippool_annotation("p1"))).status_code == 200
    # When a pool made just now is named
    f.pool("p2", "10.2.0.0/24", ["10.2.0.10"], owner=tenant_a)
    response = explain(api(staff), f.facts("web-1", annotations=ippool_annotation("p2")))
    # Then it is explained from fresh data
    assert response.status_code == 200, response.json()
    assert response.json()["nics"][0]["accepted"] == ["p2"]
