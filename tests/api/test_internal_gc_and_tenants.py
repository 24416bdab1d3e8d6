"""Node GC through the internal API, and tenant deletion refusing what a tenant still owns."""

import json

import pytest
from rest_framework.test import APIClient

from spiderweb.engine.errors import PoolInUse
from spiderweb.ipam import services
from spiderweb.ipam.models import Allocation
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db


def _node_client(node="node-1") -> APIClient:
    _, token = services.node_credential_issue(node_name=node)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_tenant_delete_refuses_a_tenant_owning_a_coordinator(tenant_a):
    f.coordinator(f.coordinator_document(), owner=tenant_a)
    with pytest.raises(PoolInUse, match="default"):
        services.tenant_delete(tenant=tenant_a)


def test_gc_releases_only_this_nodes_unknown_containers_and_keeps_statefulsets():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    ann = {"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p"]})}
    kept = f.facts(name="alive", annotations=ann)
    gone = f.facts(name="gone", annotations=ann)
    sts = f.facts(name="db-0", annotations=ann, owner_kind="StatefulSet", owner_name="db")
    other_node = f.facts(name="elsewhere", annotations=ann, node="node-2")
    for pod, cid in ((kept, "c-alive"), (gone, "c-gone"), (sts, "c-db"), (other_node, "c-other")):
        f.allocate(pod, container_id=cid, network="macvlan-net")
    other_network = f.facts(name="other-net", annotations=ann)
    f.allocate(other_network, container_id="c-net2", network="sriov-net")

    response = _node_client().post(
        "/api/internal/v1/ipam/gc",
        {"network": "macvlan-net", "validAttachments": [{"containerID": "c-alive", "ifname": "eth0"}]},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["released"] == ["10.1.0.11"]
    left = set(Allocation.objects.values_list("endpoint__name", flat=True))
    assert left == {"alive", "db-0", "elsewhere", "other-net"}


def test_gc_rejects_malformed_attachments_and_a_missing_network():
    client = _node_client()
    response = client.post("/api/internal/v1/ipam/gc", {"network": "n", "validAttachments": "all"}, format="json")
    assert response.status_code == 400
    response = client.post("/api/internal/v1/ipam/gc", {"validAttachments": []}, format="json")
    assert response.status_code == 400 and "network" in response.json()["message"]
