"""The internal API node agents call (`/api/internal/v1/`): node tokens only, and only for pods on their node."""

import json

import pytest
from django.urls import reverse
from knox.models import AuthToken
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
    _, token = AuthToken.objects.create(user=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {token}")
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


# ------------------------------------------------------------- a node acts only on what is recorded on it (Medium 4)


@pytest.mark.parametrize("owner_kind", ["Pod", "Deployment", "StatefulSet"])
def test_a_node_cannot_replace_a_pod_recorded_on_another_node(pool, owner_kind):
    # Given web-0 holding 10.1.0.10 on node-1
    real = f.facts("web-0", node="node-1", owner_kind=owner_kind, owner_name="web",
                   annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p1"]})})
    assert node_client("node-1").post(ALLOCATE, allocate_body(real), format="json").status_code == 200
    # When node-2's token reports web-0 with a new UID on node-2 (a re-creation it merely claims)
    claim = f.facts("web-0", node="node-2", owner_kind=owner_kind, owner_name="web",
                    annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p1"]})})
    response = node_client("node-2").post(ALLOCATE, allocate_body(claim), format="json")
    # Then it is refused with a retryable error, and node-1's pod keeps its address where it was
    assert response.status_code == 503, response.json()
    assert response.json()["code"] == "unavailable"
    assert "recorded on node node-1" in response.json()["message"]
    row = Allocation.objects.get()
    assert (row.address, row.pod_uid, row.node) == ("10.1.0.10", real.uid, "node-1")


def test_a_pod_recreated_on_the_same_node_still_replaces_its_old_incarnation(pool):
    client = node_client("node-1")
    old, new = pod(), pod()
    assert client.post(ALLOCATE, allocate_body(old), format="json").status_code == 200
    response = client.post(ALLOCATE, allocate_body(new), format="json")
    assert response.status_code == 200, response.json()
    assert list(Allocation.objects.values_list("pod_uid", flat=True)) == [new.uid]


def test_a_node_reads_only_the_workload_endpoints_of_its_own_pods(pool):
    assert node_client("node-1").post(ALLOCATE, allocate_body(pod()), format="json").status_code == 200
    response = node_client("node-2").get(WORKLOAD_ENDPOINT, {"podNamespace": "default", "podName": "web-0"})
    assert response.status_code == 404
    assert "10.1.0.10" not in response.content.decode()


@pytest.mark.parametrize(("api_uid", "api_node", "status"), [("claimed", "node-2", 200), ("real", "node-1", 403),
                                                              ("claimed", "node-1", 403), (None, None, 403)])
def test_a_cross_node_re_creation_is_decided_by_the_api_server(pool, monkeypatch, api_uid, api_node, status):
    from spiderweb.ipam.api import internal

    # Given StatefulSet pod db-0 holding 10.1.0.10 on node-1
    ann = {"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p1"]})}
    real = f.facts("db-0", node="node-1", owner_kind="StatefulSet", owner_name="db", annotations=ann)
    assert node_client("node-1").post(ALLOCATE, allocate_body(real), format="json").status_code == 200
    claim = f.facts("db-0", node="node-2", owner_kind="StatefulSet", owner_name="db", annotations=ann)
    # And an API server that shows db-0 with some UID on some node (or not at all)
    uids = {"claimed": claim.uid, "real": real.uid}
    reads = []

    def read_pod(namespace, name):
        reads.append((namespace, name))
        return None if api_uid is None else {"metadata": {"uid": uids[api_uid]}, "spec": {"nodeName": api_node}}

    monkeypatch.setattr(internal, "pod_reader", lambda: read_pod)
    # When node-2 reports db-0 re-created on itself
    response = node_client("node-2").post(ALLOCATE, allocate_body(claim), format="json")
    # Then only what the API server confirms moves the address; anything else leaves it on node-1
    assert response.status_code == status, response.json()
    assert reads == [("default", "db-0")]
    row = Allocation.objects.get()
    expected = (claim.uid, "node-2") if status == 200 else (real.uid, "node-1")
    assert (row.address, row.pod_uid, row.node) == ("10.1.0.10", *expected)
