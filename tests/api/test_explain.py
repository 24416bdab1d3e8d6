"""POST /api/v1/explain/: a dry run that says which pool would serve a pod and why the others were rejected."""

import json
import time

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


def test_another_tenants_pool_is_answered_like_a_missing_one(api, member, tenant_b):
    # Given a pod that tenant-b's pool "pb" would serve (issue 10, Medium 5)
    f.pool("pb", "10.2.0.0/24", ["10.2.0.10"], owner=tenant_b, gateway="10.2.0.1",
           routes=[{"dst": "10.99.0.0/16", "gw": "10.2.0.1"}])
    client = api(member)
    hidden = explain(client, f.facts("web-0", annotations=ippool_annotation("pb"))).json()
    missing = explain(client, f.facts("web-0", annotations=ippool_annotation("nope"))).json()
    # Then a member of tenant-a learns neither its next free address, gateway and routes nor that it exists
    text = json.dumps(hidden)
    assert hidden["ok"] is False
    for secret in ("10.2.0.10", "10.2.0.1", "10.99.0.0"):
        assert secret not in text
    assert json.loads(text.replace('"pb"', '"nope"').replace("pb", "nope")) == missing


def test_member_explain_never_considers_another_tenants_default_pool(api, member, tenant_a, tenant_b):
    f.pool("b-default", "10.2.0.0/24", ["10.2.0.10"], owner=tenant_b, default=True)
    f.pool("a-default", "10.1.0.0/24", ["10.1.0.10"], owner=tenant_a, default=True)
    body = explain(api(member), f.facts("web-0")).json()
    assert body["ok"] is True, body
    assert [ip["address"] for ip in body["response"]["ips"]] == ["10.1.0.10/24"]
    assert "b-default" not in json.dumps(body)


@pytest.mark.django_db(transaction=True)
def test_explain_takes_no_row_lock(api, staff, tenant_a):
    # Given a pool row locked by another transaction (an allocation in flight)
    import threading

    from django.db import connection, transaction

    from spiderweb.ipam.models import IPPool

    pool = f.pool("p1", "10.1.0.0/24", ["10.1.0.10"], owner=tenant_a)
    locked, done = threading.Event(), threading.Event()

    def hold_lock():
        with transaction.atomic():
            list(IPPool.objects.select_for_update().filter(pk=pool.pk))
            locked.set()
            done.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        # When explain runs (with a lock timeout far below the test's patience)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '500ms'")
        response = explain(api(staff), f.facts("web-0", annotations=ippool_annotation("p1")))
        # Then it answers from the rows as they are, without waiting on the lock
        assert response.status_code == 200, response.content
        assert response.json()["ok"] is True, response.json()
    finally:
        done.set()
        holder.join()


def test_explain_naming_a_just_deleted_pool_is_not_a_500(api, staff, tenant_a):
    # Given a pool in this process's cached catalog, deleted since (the cache is still warm)
    from spiderweb.ipam import allocation, services

    pool = f.pool("gone", "10.1.0.0/24", ["10.1.0.10"], owner=tenant_a)
    allocation.pool_catalog_invalidate()
    allocation._pool_catalog()
    services.ippool_delete(pool=pool)
    allocation._pool_catalog_cache["at"] = time.monotonic()  # keep the stale cache warm
    # When explain names a pool missing from the cache ("nope") and the deleted one
    for name in ("nope", "gone"):
        response = explain(api(staff), f.facts("web-0", annotations=ippool_annotation(name)))
        # Then the answer is a clean not-found, not a 500
        assert response.status_code == 200, response.content
        assert response.json()["ok"] is False


def test_anonymous_cannot_explain(api):
    assert api().post(EXPLAIN, {"facts": f.facts().to_dict()}, format="json").status_code == 401


@pytest.mark.parametrize("pattern", ["p[", "p[]", "p[-a]", "p]"])
def test_a_malformed_pool_pattern_is_refused_not_skipped(api, staff, pattern):
    # Given a pool "p1" and a later candidate "q1" that would serve the pod if "p[" silently matched nothing
    tenant = f.tenant()
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10"], owner=tenant)
    f.pool("q1", "10.2.0.0/24", ["10.2.0.10"], owner=tenant)
    pod = f.facts("web-0", annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pattern, "q1"]})})
    response = api(staff).post(reverse("explain"), {"facts": pod.to_dict()}, format="json")
    body = response.json()
    assert response.status_code == 400, body
    assert body["ok"] is False and f"pool name pattern {pattern!r} is malformed" in body["error"]["message"]


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
