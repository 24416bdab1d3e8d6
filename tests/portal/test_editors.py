"""Structured editors: routes as `DST via GW` lines, labels as `key=value` lines, affinities in kubectl's selector
syntax; bad values are refused on their field with the REST API's message."""

import json

import pytest
from django.urls import reverse

from spiderweb.ipam.models import IPPool
from tests.admin.test_admin_forms import form_errors, pool_form

pytestmark = pytest.mark.django_db

POOL_ADD = reverse("admin:ipam_ippool_add")


def rest_messages(response) -> str:
    """Every string in a REST error body, joined: where the API says what is wrong."""
    def strings(value):
        if isinstance(value, dict):
            return [s for item in value.values() for s in strings(item)]
        if isinstance(value, list):
            return [s for item in value for s in strings(item)]
        return [str(value)]
    return " | ".join(strings(response.json()))


def test_the_pool_form_shows_routes_labels_and_affinities_as_text_not_json(admin_web, world):
    pool = world["pool"]
    IPPool.objects.filter(pk=pool.pk).update(
        routes=[{"dst": "10.7.0.0/16", "gw": "10.1.0.1"}], labels={"team": "net"},
        node_affinity={"matchLabels": {"zone": "a"}, "matchExpressions": [{"key": "gpu", "operator": "Exists"}]})
    content = admin_web.get(reverse("admin:ipam_ippool_change", args=[pool.pk])).content.decode()
    assert "10.7.0.0/16 via 10.1.0.1</textarea>" in content
    assert "team=net</textarea>" in content
    assert "zone=a\ngpu</textarea>" in content
    assert "null</textarea>" not in content


def test_a_pool_is_created_from_the_structured_editors(admin_web, world):
    response = admin_web.post(POOL_ADD, pool_form(
        world["tenant"], routes="10.7.0.0/16 via 10.9.0.1\n10.8.0.0/16 10.9.0.2", labels="team=net\nenv=prod",
        pod_affinity="app=web, tier in (db, cache)\n!legacy", node_affinity=""))
    assert response.status_code == 302, form_errors(response)
    pool = IPPool.objects.get(name="p-admin")
    assert pool.routes == [{"dst": "10.7.0.0/16", "gw": "10.9.0.1"}, {"dst": "10.8.0.0/16", "gw": "10.9.0.2"}]
    assert pool.labels["team"] == "net" and pool.labels["env"] == "prod"
    assert pool.pod_affinity == {"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["db", "cache"]}, {"key": "legacy", "operator": "DoesNotExist"}]}
    assert pool.node_affinity is None


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"routes": "10.7.0.0/16"}, "routes", "Line 1: write a route as 'DST via GW'"),
        ({"routes": "[{"}, "routes", "Routes in JSON could not be read"),
        ({"labels": "team"}, "labels", "Line 1: write a label as key=value"),
        ({"pod_affinity": "app >= 3"}, "pod_affinity", "cannot read 'app >= 3'"),
        ({"node_affinity": "zone=a, zone=b"}, "node_affinity", "'zone' is given two values"),
    ],
)
def test_an_unreadable_editor_value_is_refused_on_its_field(admin_web, world, fields, field, text):
    errors = form_errors(admin_web.post(POOL_ADD, pool_form(world["tenant"], **fields)))
    assert any(text in message for message in errors[field]), errors
    assert not IPPool.objects.filter(name="p-admin").exists()


@pytest.mark.parametrize(
    ("fields", "body", "field"),
    [
        ({"routes": "0.0.0.0/0 via 10.9.0.1"}, {"routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}]}, "routes"),
        ({"routes": "10.7.0.0/16 via 10.8.0.1"}, {"routes": [{"dst": "10.7.0.0/16", "gw": "10.8.0.1"}]}, "routes"),
        ({"namespace_affinity": "tier in ()"},
         {"namespaceAffinity": {"matchExpressions": [{"key": "tier", "operator": "In", "values": []}]}},
         "namespace_affinity"),
        ({"labels": "bad key=x"}, {"labels": {"bad key": "x"}}, "labels"),
    ],
)
def test_a_value_the_rules_refuse_gets_the_rest_apis_message(admin_web, world, fields, body, field):
    # given the same bad value sent to the REST API
    rest = admin_web.post("/api/v1/pools/", json.dumps({
        "name": "p-rest", "tenant": world["tenant"].name, "subnet": "10.9.0.0/24", "ips": ["10.9.0.10-10.9.0.20"],
        **body}), content_type="application/json")
    assert rest.status_code == 400
    # when it is typed into the editor
    errors = form_errors(admin_web.post(POOL_ADD, pool_form(world["tenant"], **fields)))
    # then the form refuses it on its field with the message the API gave
    assert errors[field], errors
    for message in errors[field]:
        assert message in rest_messages(rest), (message, rest.json())
