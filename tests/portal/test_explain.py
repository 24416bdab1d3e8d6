"""Explain from a form: the REST API's dry run, over the pools the user may see, writing nothing."""

import json

import pytest

from spiderweb.ipam import services
from spiderweb.ipam.models import Allocation

pytestmark = pytest.mark.django_db

EXPLAIN = "/admin/explain/"


def explain_form(**fields):
    return {"namespace": "default", "name": "web-9", "node": "node-1", "interface": "eth0",
            "pod_annotations": 'ipam.spidernet.io/ippool={"ipv4": ["pool-1"]}', **fields}


def test_explain_names_the_pool_and_address_and_writes_nothing(admin_web, world):
    before = Allocation.objects.count()
    response = admin_web.post(EXPLAIN, explain_form())
    result = response.context["result"]
    assert result["ok"] is True
    assert [(ip["ipPool"], ip["address"].split("/")[0]) for ip in result["response"]["ips"]] == [
        ("pool-1", "10.1.0.12")]
    assert "from <b>pool-1</b>" in response.content.decode()
    assert Allocation.objects.count() == before


def test_explain_gives_the_same_answer_as_the_rest_api(admin_web, world):
    page = admin_web.post(EXPLAIN, explain_form()).context["result"]
    facts = {"namespace": "default", "name": "web-9", "uid": "u-9", "node": "node-1", "labels": {},
             "annotations": {"ipam.spidernet.io/ippool": '{"ipv4": ["pool-1"]}'}, "namespace_labels": {},
             "namespace_annotations": {}, "node_labels": {},
             "owner": {"kind": "Pod", "name": "web-9", "uid": "u-9", "api_version": "v1"}}
    rest = admin_web.post("/api/v1/explain/", json.dumps({"facts": facts, "ifName": "eth0"}),
                          content_type="application/json").json()
    assert page["ok"] == rest["ok"] and page["response"] == rest["response"]


def test_a_pool_the_user_may_not_see_is_answered_like_a_missing_one(client, django_user_model, world):
    tenant_b = services.tenant_create(name="tenant-b")
    user = django_user_model.objects.create_user("bob", is_staff=True)
    tenant_b.members.add(user)
    client.force_login(user)
    result = client.post(EXPLAIN, explain_form()).context["result"]
    missing = client.post(EXPLAIN, explain_form(
        pod_annotations='ipam.spidernet.io/ippool={"ipv4": ["no-such-pool"]}')).context["result"]
    assert result["ok"] is False and missing["ok"] is False
    assert result["error"]["code"] == missing["error"]["code"]
    assert "10.1.0" not in json.dumps(result)


def test_bad_input_is_refused_with_a_message(admin_web, world):
    unreadable = admin_web.post(EXPLAIN, explain_form(pod_labels="app"))
    assert unreadable.context["form"].errors["pod_labels"] == ["Line 1: write key=value, got 'app'"]
    broken = admin_web.post(EXPLAIN, explain_form(pod_annotations="ipam.spidernet.io/ippool={not json"))
    result = broken.context["result"]
    assert result["ok"] is False and result["error"]["code"] == "invalid_input"
    assert "No address:" in broken.content.decode()
