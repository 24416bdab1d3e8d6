"""AdmissionReview handling through the Django test client: mutate, allow, deny, dryRun, UPDATE merges, DELETE."""

import base64
import json
import uuid

import pytest

from spiderweb.changelog.models import ObjectChange
from spiderweb.controllers.mirror.models import MirrorState
from spiderweb.ipam import services
from spiderweb.ipam.models import ClusterSettings, IPPool, ReservedIP, Subnet
from spiderweb.tenancy.models import Tenant
from tests.ipam import factories as f

from .jsonpatch import json_patch_apply

pytestmark = pytest.mark.django_db
MUTATE = "/mutate-spiderpool-spidernet-io-v2beta1-"
VALIDATE = "/validate-spiderpool-spidernet-io-v2beta1-"


def review(kind, operation, obj=None, old=None, *, dry_run=False, user="alice"):
    name = ((obj or old or {}).get("metadata") or {}).get("name", "")
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()), "kind": {"group": "spiderpool.spidernet.io", "version": "v2beta1", "kind": kind},
            "resource": {"group": "spiderpool.spidernet.io", "version": "v2beta1", "resource": kind.lower() + "s"},
            "name": name, "operation": operation, "userInfo": {"username": user},
            "object": obj, "oldObject": old, "dryRun": dry_run,
        },
    }


def post(client, path, body, *, secure=True):
    response = client.post(path, data=json.dumps(body), content_type="application/json", secure=secure)
    return response.status_code, response.json()


def pool_obj(name, uid=None, labels=None, **spec):
    return {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
            "metadata": {"name": name, "uid": uid or str(uuid.uuid4()), "labels": labels or {}}, "spec": spec}


def test_mutate_pool_returns_a_jsonpatch_with_defaults_and_subnet_inheritance(client):
    services.subnet_create(tenant=f.tenant(), name="s1", spec={"subnet": "10.6.0.0/16", "ips": ["10.6.0.1-10.6.0.200"],
                                                              "gateway": "10.6.0.254"})
    Subnet.objects.filter(name="s1").update(k8s_uid="uid-s1")
    obj = pool_obj("p1", subnet="10.6.0.0/16", ips=["10.6.0.12", "10.6.0.10-10.6.0.11"])
    status, body = post(client, MUTATE + "spiderippool", review("SpiderIPPool", "CREATE", obj))
    assert status == 200 and body["response"]["allowed"] is True
    patch = json.loads(base64.b64decode(body["response"]["patch"]))
    mutated = json_patch_apply(obj, patch)
    assert mutated["spec"] == {"subnet": "10.6.0.0/16", "ips": ["10.6.0.10-10.6.0.12"], "ipVersion": 4,
                               "gateway": "10.6.0.254"}
    assert mutated["metadata"]["finalizers"] == ["spiderpool.spidernet.io"]
    assert mutated["metadata"]["labels"]["ipam.spidernet.io/ippool-cidr"] == "10-6-0-0-16"
    assert mutated["metadata"]["ownerReferences"][0]["uid"] == "uid-s1"


def test_mutate_refuses_empty_reserved_ip_with_a_message(client):
    obj = {"metadata": {"name": "r1"}, "spec": {"ips": []}}
    status, body = post(client, MUTATE + "spiderreservedip", review("SpiderReservedIP", "CREATE", obj))
    assert status == 200 and body["response"]["allowed"] is False
    assert "at least one IP range" in body["response"]["status"]["message"]


def test_valid_pool_is_allowed_and_written_with_tenant_label_and_actor(client):
    Tenant.objects.create(name="team-x")
    obj = pool_obj("p1", labels={"spiderweb.io/tenant": "team-x"}, ipVersion=4, subnet="10.1.0.0/24",
                   ips=["10.1.0.10-10.1.0.20"])
    status, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", obj))
    assert body["response"]["allowed"] is True, body
    pool = IPPool.objects.get(name="p1")
    assert pool.tenant.name == "team-x" and pool.ips == ["10.1.0.10-10.1.0.20"]
    assert pool.k8s_uid == obj["metadata"]["uid"]
    assert ObjectChange.objects.filter(object_repr="p1", action="create").get().user_name == "kubernetes:alice"


def test_unknown_tenant_label_falls_back_to_the_default_tenant(client, settings):
    settings.SPIDERWEB_DEFAULT_TENANT = "fallback"
    obj = pool_obj("p1", labels={"spiderweb.io/tenant": "nobody"}, subnet="10.1.0.0/24", ips=["10.1.0.10"])
    post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", obj))
    assert IPPool.objects.get(name="p1").tenant.name == "fallback"


def test_invalid_pool_is_denied_with_the_rest_api_message_and_nothing_written(client):
    obj = pool_obj("p1", subnet="10.1.0.0/24", ips=["10.2.0.10"])
    status, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", obj))
    response = body["response"]
    assert status == 200 and response["allowed"] is False and response["status"]["code"] == 422
    expected = 'SpiderIPPool "p1" is invalid: ips: 10.2.0.10 is outside subnet 10.1.0.0/24.'
    assert response["status"]["message"] == expected
    assert not IPPool.objects.exists()


def test_overlapping_pool_is_denied(client):
    f.pool("a", "10.1.0.0/16", ["10.1.0.1"])
    obj = pool_obj("b", subnet="10.1.1.0/24", ips=["10.1.1.1"])
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", obj))
    assert body["response"]["allowed"] is False
    assert "overlaps the subnet 10.1.0.0/16 of IPPool a" in body["response"]["status"]["message"]


def test_dry_run_validates_but_writes_nothing(client):
    good = pool_obj("p1", subnet="10.1.0.0/24", ips=["10.1.0.10"])
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", good, dry_run=True))
    assert body["response"]["allowed"] is True
    bad = pool_obj("p2", subnet="10.1.0.0/24", ips=["10.9.0.10"])
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", bad, dry_run=True))
    assert body["response"]["allowed"] is False
    assert not IPPool.objects.exists() and not ObjectChange.objects.exists()


def test_update_merges_with_a_pending_portal_edit_of_another_field(client):
    obj = pool_obj("p1", ipVersion=4, subnet="10.1.0.0/24", ips=["10.1.0.10-10.1.0.20"])
    post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", obj))
    pool = IPPool.objects.get(name="p1")
    MirrorState.objects.create(kind="SpiderIPPool", name="p1", object_id=pool.pk, k8s_uid=obj["metadata"]["uid"],
                               synced_spec={"spec": {"ipVersion": 4, "subnet": "10.1.0.0/24",
                                                     "ips": ["10.1.0.10-10.1.0.20"]}, "labels": {}})
    services.ippool_update(pool=pool, spec={"node_name": ["n1"]})  # portal edit, not pushed yet
    new = json.loads(json.dumps(obj))
    new["spec"]["default"] = True
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "UPDATE", new, obj))
    assert body["response"]["allowed"] is True and "warnings" not in body["response"]
    pool.refresh_from_db()
    assert pool.default is True and pool.node_name == ["n1"]


def test_update_of_the_same_field_kubernetes_wins_and_the_portal_value_is_logged(client):
    obj = pool_obj("p1", ipVersion=4, subnet="10.1.0.0/24", ips=["10.1.0.10-10.1.0.20"])
    post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", obj))
    pool = IPPool.objects.get(name="p1")
    MirrorState.objects.create(kind="SpiderIPPool", name="p1", object_id=pool.pk, k8s_uid=obj["metadata"]["uid"],
                               synced_spec={"spec": {"ipVersion": 4, "subnet": "10.1.0.0/24",
                                                     "ips": ["10.1.0.10-10.1.0.20"]}, "labels": {}})
    services.ippool_update(pool=pool, spec={"node_name": ["portal-node"]})
    new = json.loads(json.dumps(obj))
    new["spec"]["nodeName"] = ["k8s-node"]
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "UPDATE", new, obj))
    assert body["response"]["allowed"] is True
    assert "spec.nodeName" in body["response"]["warnings"][0]
    pool.refresh_from_db()
    assert pool.node_name == ["k8s-node"]
    record = ObjectChange.objects.filter(object_repr="p1", message__startswith="conflict").get()
    assert "spec.nodeName" in record.message
    assert record.prechange_data["node_name"] == ["portal-node"]
    assert record.postchange_data["node_name"] == ["k8s-node"]


def test_update_cannot_change_an_immutable_field(client):
    obj = pool_obj("p1", ipVersion=4, subnet="10.1.0.0/24", ips=["10.1.0.10"])
    post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", obj))
    new = json.loads(json.dumps(obj))
    new["spec"]["subnet"] = "10.1.1.0/24"
    new["spec"]["ips"] = ["10.1.1.10"]
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "UPDATE", new, obj))
    assert body["response"]["allowed"] is False and "subnet is immutable" in body["response"]["status"]["message"]


def test_terminating_object_allows_finalizer_removal_but_not_spec_edits(client):
    obj = pool_obj("p1", ipVersion=4, subnet="10.1.0.0/24", ips=["10.1.0.10"])
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    obj["metadata"]["finalizers"] = ["spiderpool.spidernet.io"]
    released = json.loads(json.dumps(obj))
    released["metadata"]["finalizers"] = []
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "UPDATE", released, obj))
    assert body["response"]["allowed"] is True
    edited = json.loads(json.dumps(obj))
    edited["spec"]["ips"] = ["10.1.0.11"]
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "UPDATE", edited, obj))
    assert body["response"]["allowed"] is False and "terminating" in body["response"]["status"]["message"]


def _held_pool():
    pool = f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.20"])
    f.allocate(f.facts(annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p1"]})}))
    return pool


def test_delete_marks_the_row_terminating_and_allows(client):
    pool = _held_pool()
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "DELETE", None, pool_obj("p1")))
    assert body["response"]["allowed"] is True
    pool.refresh_from_db()
    assert pool.terminating is True


def test_delete_in_use_is_refused_when_the_cluster_setting_is_on(client):
    pool = _held_pool()
    ClusterSettings.objects.filter(pk=1).update(enable_validating_resources_deleted_webhook=True)
    ClusterSettings.invalidate_cache()
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "DELETE", None, pool_obj("p1")))
    assert body["response"]["allowed"] is False
    assert "still holds 1 allocated IPs" in body["response"]["status"]["message"]
    pool.refresh_from_db()
    assert pool.terminating is False


def test_delete_dry_run_marks_nothing(client):
    pool = _held_pool()
    _, body = post(client, VALIDATE + "spiderippool",
                   review("SpiderIPPool", "DELETE", None, pool_obj("p1"), dry_run=True))
    assert body["response"]["allowed"] is True
    pool.refresh_from_db()
    assert pool.terminating is False


def test_a_terminating_row_refuses_a_new_incarnation(client):
    _held_pool()
    post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "DELETE", None, pool_obj("p1")))
    obj = pool_obj("p1", subnet="10.1.0.0/24", ips=["10.1.0.10-10.1.0.20"])
    _, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", obj))
    assert body["response"]["allowed"] is False and "still being deleted" in body["response"]["status"]["message"]


def test_reserved_ip_and_subnet_are_written_too(client):
    reserved = {"metadata": {"name": "r1", "uid": "u-r1"}, "spec": {"ipVersion": 4, "ips": ["10.1.0.5"]}}
    _, body = post(client, VALIDATE + "spiderreservedip", review("SpiderReservedIP", "CREATE", reserved))
    assert body["response"]["allowed"] is True
    subnet = {"metadata": {"name": "s1", "uid": "u-s1"}, "spec": {"subnet": "10.3.0.0/16", "ips": ["10.3.0.1"]}}
    _, body = post(client, VALIDATE + "spidersubnet", review("SpiderSubnet", "CREATE", subnet))
    assert body["response"]["allowed"] is True
    assert ReservedIP.objects.get(name="r1").ips == ["10.1.0.5"] and Subnet.objects.get(name="s1").k8s_uid == "u-s1"


def test_a_coordinator_is_written_to_its_mirror_and_a_multusconfig_is_validated_by_the_rules(client):
    from spiderweb.ipam.models import Coordinator

    bad = {"metadata": {"name": "default"}, "spec": {"podCIDRType": "auto", "podMACPrefix": "01:00"}}
    _, body = post(client, VALIDATE + "spidercoordinator", review("SpiderCoordinator", "CREATE", bad))
    assert body["response"]["allowed"] is False and "unicast" in body["response"]["status"]["message"]
    assert not Coordinator.objects.exists()
    good = {"metadata": {"name": "default", "uid": "u-c"}, "spec": {"podCIDRType": "auto", "hijackCIDR": ["10.9.9.9"]}}
    _, body = post(client, VALIDATE + "spidercoordinator", review("SpiderCoordinator", "CREATE", good))
    assert body["response"]["allowed"] is True
    row = Coordinator.objects.get(name="default")
    assert (row.k8s_uid, row.hijack_cidr, row.veth_mtu, row.phase) == ("u-c", ["10.9.9.9/32"], 1500, "NotReady")
    smc = {"metadata": {"name": "m1", "namespace": "default"},
           "spec": {"cniType": "macvlan", "macvlan": {"master": ["eth0"]}}}
    _, body = post(client, VALIDATE + "spidermultusconfig", review("SpiderMultusConfig", "CREATE", smc))
    assert body["response"]["allowed"] is True


def test_plain_http_and_bad_bodies_are_refused(client):
    status, _ = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", pool_obj("p1")),
                     secure=False)
    assert status == 403
    response = client.post(VALIDATE + "spiderippool", data="{", content_type="application/json", secure=True)
    assert response.status_code == 400
    assert client.get(VALIDATE + "spiderippool", secure=True).status_code == 405
    assert client.get("/webhook-health-check").json() == {"status": "ok"}


# ------------------------------------------------------------------------------------ auto pools (spec §1.2, §4)


def _auto_pool_row():
    from spiderweb.engine.autopool import App, IPNumber, SubnetRequest
    from spiderweb.ipam.autopools import autopools_reconcile

    services.subnet_create(tenant=f.tenant(), name="sa", spec={"subnet": "10.9.0.0/24", "ips": ["10.9.0.10-10.9.0.30"]})
    app = App("apps/v1", "Deployment", "default", "web", str(uuid.uuid4()))
    [state] = autopools_reconcile(app=app, requests=[SubnetRequest("eth0", v4="sa")], ip_number=IPNumber(True, 1),
                                  replicas=1, reclaim=True)
    return IPPool.objects.get(name=state.pool)


def _as_crd(pool, **spec_changes):
    spec = {"ipVersion": 4, "subnet": pool.subnet, "ips": pool.ips, "podAffinity": pool.pod_affinity, **spec_changes}
    obj = pool_obj(pool.name, labels=pool.labels, **spec)
    obj["metadata"]["ownerReferences"] = [{"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderSubnet",
                                           "name": "sa", "uid": "u", "controller": True}]
    return obj


def test_an_auto_pools_addresses_belong_to_the_application_controller(client):
    pool = _auto_pool_row()
    same = _as_crd(pool)
    status, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "UPDATE", same, same))
    assert body["response"]["allowed"] is True, "the mirror's own write (the row's addresses) passes"
    edited = _as_crd(pool, ips=["10.9.0.10-10.9.0.20"])
    status, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "UPDATE", edited, same))
    assert body["response"]["allowed"] is False
    assert "managed by the application controller" in body["response"]["status"]["message"]
    assert IPPool.objects.get(pk=pool.pk).ips == pool.ips


def test_an_auto_pools_pod_affinity_names_only_the_application_keys(client):
    pool = _auto_pool_row()
    affinity = {"matchLabels": {**pool.pod_affinity["matchLabels"], "app": "other"}}
    obj = _as_crd(pool, podAffinity=affinity)
    status, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "UPDATE", obj, _as_crd(pool)))
    assert body["response"]["allowed"] is False and "not app" in body["response"]["status"]["message"]


def test_a_pool_whose_controller_subnet_does_not_exist_is_refused(client):
    obj = pool_obj("orphan", ipVersion=4, subnet="10.8.0.0/24", ips=["10.8.0.10"])
    obj["metadata"]["ownerReferences"] = [{"kind": "SpiderSubnet", "name": "gone", "uid": "u", "controller": True}]
    status, body = post(client, VALIDATE + "spiderippool", review("SpiderIPPool", "CREATE", obj))
    assert body["response"]["allowed"] is False
    assert "SpiderSubnet gone does not exist" in body["response"]["status"]["message"]
    assert not IPPool.objects.filter(name="orphan").exists()
