"""The internal API node agents call (`/api/internal/v1/`): node tokens only, and only for pods on their node."""

import json

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from spiderweb.ipam import services
from spiderweb.ipam.models import Allocation
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db

ALLOCATE = reverse("internal-allocate")
RELEASE = reverse("internal-release")
WORKLOAD_ENDPOINT = reverse("internal-workloadendpoint")


def node_client(node_name: str) -> APIClient:
    _, token = services.node_credential_issue(node_name=node_name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def pod(name="web-0", node="node-1", pool="p1"):
    return f.facts(name, node=node, annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pool]})})


def allocate_body(facts, if_name="eth0"):
    return {"facts": facts.to_dict(), "ifName": if_name, "containerID": "c0ffee"}


@pytest.fixture
def pool(tenant_a):
    return f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.11"], owner=tenant_a, gateway="10.1.0.1")


def test_node_token_allocates_reads_the_endpoint_and_releases(pool):
    client = node_client("node-1")
    facts = pod()
    # When the agent allocates
    response = client.post(ALLOCATE, allocate_body(facts), format="json")
    # Then it gets Spiderpool's IpamAddResponse
    assert response.status_code == 200, response.json()
    assert response.json()["ips"][0] | {"address": "10.1.0.10/24", "nic": "eth0", "ipPool": "p1"} == \
        response.json()["ips"][0]
    assert {"ifName": "eth0", "dst": "0.0.0.0/0", "gw": "10.1.0.1"} in response.json()["routes"]
    # And the workload endpoint shows the allocation
    endpoint = client.get(WORKLOAD_ENDPOINT, {"podNamespace": "default", "podName": "web-0"})
    assert endpoint.status_code == 200
    assert endpoint.json()["interfaces"][0]["ipv4"] == "10.1.0.10/24"
    assert endpoint.json()["podUID"] == facts.uid
    # When it releases
    body = {"podNamespace": "default", "podName": "web-0", "podUID": facts.uid, "ifName": "eth0",
            "containerID": "c0ffee"}
    released = client.post(RELEASE, body, format="json")
    # Then the address is free and the endpoint gone
    assert released.status_code == 200
    assert released.json() == {"released": ["10.1.0.10"]}
    assert not Allocation.objects.exists()
    assert client.get(WORKLOAD_ENDPOINT, {"podNamespace": "default", "podName": "web-0"}).status_code == 404


def test_node_token_cannot_allocate_for_a_pod_on_another_node(pool):
    response = node_client("node-1").post(ALLOCATE, allocate_body(pod(node="node-2")), format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "node-2" in response.json()["message"]
    assert not Allocation.objects.exists()


def test_node_token_releases_only_allocations_made_on_its_node(pool):
    facts = pod(node="node-1")
    node_client("node-1").post(ALLOCATE, allocate_body(facts), format="json")
    body = {"podNamespace": "default", "podName": "web-0", "podUID": facts.uid}
    response = node_client("node-2").post(RELEASE, body, format="json")
    assert response.status_code == 200
    assert response.json() == {"released": []}
    assert Allocation.objects.count() == 1


def test_exhausted_pool_is_a_409_with_code_ip_exhausted(pool):
    client = node_client("node-1")
    for name in ("web-0", "web-1"):
        assert client.post(ALLOCATE, allocate_body(pod(name)), format="json").status_code == 200
    response = client.post(ALLOCATE, allocate_body(pod("web-2")), format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "ip_exhausted"
    assert "p1" in response.json()["message"]


@pytest.mark.parametrize(
    ("url", "body", "text"),
    [
        (ALLOCATE, {"ifName": "eth0"}, "missing required field(s): facts"),
        (ALLOCATE, {"facts": {"name": "x"}, "ifName": "eth0"}, "pod facts is missing required field(s)"),
        (RELEASE, {"podNamespace": "default"}, "missing required field(s): podName, podUID"),
        (ALLOCATE, [1, 2], "the request body must be a JSON object"),
    ],
    ids=["allocate-no-facts", "allocate-incomplete-facts", "release-missing", "not-an-object"],
)
def test_missing_fields_are_a_400_naming_them(pool, url, body, text):
    response = node_client("node-1").post(url, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert text in response.json()["message"]


def test_workload_endpoint_needs_both_query_parameters(pool):
    response = node_client("node-1").get(WORKLOAD_ENDPOINT, {"podNamespace": "default"})
    assert response.status_code == 400
    assert response.json()["message"] == "podNamespace and podName are required"


@pytest.mark.parametrize("keyword", ["Token", "Bearer"])
def test_a_tenant_users_api_token_is_refused(pool, staff, keyword):
    token, _ = Token.objects.get_or_create(user=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {token.key}")
    response = client.post(ALLOCATE, allocate_body(pod()), format="json")
    assert response.status_code == 401
    assert not Allocation.objects.exists()


def test_a_logged_in_session_is_refused(pool, staff):
    client = APIClient()
    client.force_login(staff)
    assert client.post(ALLOCATE, allocate_body(pod()), format="json").status_code == 401


def test_a_revoked_node_token_is_refused(pool):
    client = node_client("node-1")
    services.node_credential_issue(node_name="node-1")  # rotation revokes the first token
    assert client.post(ALLOCATE, allocate_body(pod()), format="json").status_code == 401


def test_a_node_token_is_refused_on_the_public_api(pool):
    client = node_client("node-1")
    assert client.get(reverse("ippool-list")).status_code == 401
    assert client.get(reverse("allocation-list")).status_code == 401
