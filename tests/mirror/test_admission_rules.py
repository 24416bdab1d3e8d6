"""Admission rules that let wrong objects in (issue 10; spec §1.2–§1.3, §5.1): each is refused now, through the
webhook and, where the REST API shares the rule, through the REST API too."""

import copy
import json

import pytest

from spiderweb.controllers.mirror.documents import crd_body, doc_from_row, mirror_kind
from spiderweb.controllers.mirror.status import INT64_MAX, ippool_status, subnet_status
from spiderweb.ipam import services
from spiderweb.ipam.models import IPPool
from tests.ipam import factories as f

from .test_webhooks import VALIDATE, pool_obj, post, review

pytestmark = pytest.mark.django_db


def validate_pool(client, operation, obj, old=None):
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", operation, obj, old))
    return body["response"]


# ------------------------------------------------------------------------------------- CREATE of an existing name


def test_a_create_of_a_name_kubernetes_already_has_is_refused_and_the_row_is_unchanged(client):
    # Given pool p1, mirrored (it has a CRD, so a k8s_uid)
    obj = pool_obj("p1", uid="uid-1", ipVersion=4, subnet="10.1.0.0/24", ips=["10.1.0.10"])
    assert validate_pool(client, "CREATE", obj)["allowed"] is True
    # When someone creates p1 again with another spec and UID (the API server will refuse it: the name is taken)
    again = pool_obj("p1", uid="uid-2", ipVersion=4, subnet="10.1.0.0/24", ips=["10.1.0.99"])
    response = validate_pool(client, "CREATE", again)
    # Then the webhook refuses it too, and the row keeps its spec and UID
    assert response["allowed"] is False and "already exists" in response["status"]["message"]
    pool = IPPool.objects.get(name="p1")
    assert (pool.ips, pool.k8s_uid) == (["10.1.0.10"], "uid-1")


def test_the_mirror_creating_the_crd_of_a_portal_row_is_allowed(client):
    # Given a pool made in the portal, not yet in Kubernetes
    pool = f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.20"])
    mk = mirror_kind("SpiderIPPool")
    body = crd_body(mk, pool, doc_from_row(mk, pool))
    body["metadata"]["uid"] = "uid-new"
    # When the mirror creates its CRD (the row's own spec)
    response = validate_pool(client, "CREATE", body)
    # Then it is admitted and the row learns its UID
    assert response["allowed"] is True, response
    assert IPPool.objects.get(name="p1").k8s_uid == "uid-new"


def test_a_kubectl_create_over_a_portal_row_with_another_spec_is_refused(client):
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.20"])
    obj = pool_obj("p1", ipVersion=4, subnet="10.1.0.0/24", ips=["10.1.0.30"])
    response = validate_pool(client, "CREATE", obj)
    assert response["allowed"] is False and "another spec" in response["status"]["message"]
    assert IPPool.objects.get(name="p1").ips == ["10.1.0.10-10.1.0.20"]


# ---------------------------------------------------------------------------------------------- empty podAffinity


@pytest.mark.parametrize("affinity", [{}, {"matchLabels": {}, "matchExpressions": []}, {"matchLabels": {}}])
def test_an_empty_pod_affinity_is_refused(client, affinity):
    # (the REST API's side: tests/api/test_bad_input.py)
    obj = pool_obj("p1", ipVersion=4, subnet="10.1.0.0/24", ips=["10.1.0.10"], podAffinity=affinity)
    response = validate_pool(client, "CREATE", obj)
    assert response["allowed"] is False and "podAffinity must have" in response["status"]["message"]
    assert not IPPool.objects.exists()


# -------------------------------------------------------------------------------------------- terminating updates


@pytest.mark.parametrize("change", ["labels", "spec"])
def test_any_update_of_a_terminating_pool_with_its_finalizer_is_refused(client, change):
    obj = pool_obj("p1", ipVersion=4, subnet="10.1.0.0/24", ips=["10.1.0.10"])
    obj["metadata"] |= {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["spiderpool.spidernet.io"]}
    edited = copy.deepcopy(obj)
    if change == "labels":
        edited["metadata"]["labels"] = {"team": "x"}
    else:
        edited["spec"]["ips"] = ["10.1.0.11"]
    response = validate_pool(client, "UPDATE", edited, obj)
    assert response["allowed"] is False and "terminating" in response["status"]["message"]


def test_a_terminating_subnet_label_edit_is_refused(client):
    obj = {"metadata": {"name": "s1", "uid": "u", "deletionTimestamp": "2026-01-01T00:00:00Z",
                        "finalizers": ["spiderpool.spidernet.io"]}, "spec": {"subnet": "10.3.0.0/16"}}
    edited = copy.deepcopy(obj)
    edited["metadata"]["labels"] = {"team": "x"}
    _, body = post(client, VALIDATE + "spidersubnet", review("SpiderSubnet", "UPDATE", edited, obj))
    assert body["response"]["allowed"] is False


# ------------------------------------------------------------------------------------------ int64 status counters


def test_status_counts_beyond_int64_are_saturated():
    # Given an IPv6 pool and subnet over more than 2**63 addresses
    ips = ["fd00::-fd00:0:0:ff:ffff:ffff:ffff:ffff"]  # 2**72 addresses
    subnet = services.subnet_create(tenant=f.tenant(), name="s6", spec={"subnet": "fd00::/56", "ips": ips})
    pool = f.pool("p6", "fd00::/56", ips)
    # Then the CRD status carries the int64 maximum, as upstream writes it, not a number the API server refuses
    assert ippool_status(pool)["totalIPCount"] == INT64_MAX
    status = subnet_status(subnet)
    assert status["totalIPCount"] == status["allocatedIPCount"] == INT64_MAX
    assert json.dumps(status)  # and it is still JSON
