"""Auto pools on PostgreSQL (spec §4.3–§4.7): pre-allocation, shrink, reclaim, re-adoption, third-party pools,
and the allocator's side (it looks the pool up and waits while it is missing or growing)."""

import dataclasses
import uuid

import pytest

from spiderweb.engine.autopool import App, IPNumber, SubnetRequest, auto_pool_name
from spiderweb.engine.errors import InvalidInput
from spiderweb.engine.facts import TopController
from spiderweb.engine.keys import ANNO_IPPOOL_IP_NUMBER, ANNO_SUBNET, ANNO_SUBNETS, LABEL_OWNER_APP_NAME
from spiderweb.engine.ranges import int_to_ip
from spiderweb.ipam import allocation, services
from spiderweb.ipam.autopools import autopools_reclaim, autopools_reconcile
from spiderweb.ipam.models import IPPool
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def subnet():
    return services.subnet_create(tenant=f.tenant(), name="s4", spec={"subnet": "10.70.0.0/24",
                                                                       "ips": ["10.70.0.10-10.70.0.40"],
                                                                       "gateway": "10.70.0.1"})


@pytest.fixture
def subnet6():
    return services.subnet_create(tenant=f.tenant(), name="s6", spec={"subnet": "fd70::/64",
                                                                       "ips": ["fd70::10-fd70::40"]})


def app(name="web", uid=None, kind="Deployment", api="apps/v1"):
    return App(api_version=api, kind=kind, namespace="default", name=name, uid=uid or str(uuid.uuid4()))


ETH0_S4 = (SubnetRequest("eth0", v4="s4"),)


def reconcile(a, replicas, number="+1", requests=ETH0_S4, reclaim=True):
    flexible = number.startswith("+")
    return autopools_reconcile(app=a, requests=list(requests), ip_number=IPNumber(flexible, int(number.lstrip("+"))),
                               replicas=replicas, reclaim=reclaim)


def pod_of(a, name, annotations):
    """A pod of application ``a`` as the agent reports it (its top controller is the application)."""
    facts = f.facts(name, owner_kind=a.kind, owner_name=a.name, annotations=annotations)
    owner = TopController(kind=a.kind, name=a.name, uid=a.uid, api_version=a.api_version)
    return dataclasses.replace(facts, owner=owner)


def test_a_pool_follows_the_replicas_with_its_spare_addresses(subnet):
    web = app()
    [state] = reconcile(web, 2)
    pool = IPPool.objects.get(name=state.pool)
    assert state.pool == auto_pool_name(4, "web", "eth0", web.uid)
    assert (pool.total_ip_count, pool.ips, pool.owner_subnet, pool.gateway) == (3, ["10.70.0.10-10.70.0.12"], subnet,
                                                                                "10.70.0.1")
    assert pool.labels[LABEL_OWNER_APP_NAME] == "web" and pool.annotations[ANNO_IPPOOL_IP_NUMBER] == "+1"
    assert pool.pod_affinity == {"matchLabels": {"ipam.spidernet.io/app-api-group": "apps",
                                                 "ipam.spidernet.io/app-api-version": "v1",
                                                 "ipam.spidernet.io/app-kind": "Deployment",
                                                 "ipam.spidernet.io/app-namespace": "default",
                                                 "ipam.spidernet.io/app-name": "web"}}
    assert reconcile(web, 10)[0].size == 11
    assert reconcile(web, 10)[0].size == 11, "idempotent"


def test_shrinking_drops_only_free_addresses(subnet):
    web = app()
    [state] = reconcile(web, 5)
    annotations = {ANNO_SUBNET: '{"ipv4": ["s4"]}'}
    held = [f.allocate(pod_of(web, f"web-{i}", annotations))["ips"][0]["address"] for i in range(4)]
    [state] = reconcile(web, 0, number="+0")
    pool = IPPool.objects.get(name=state.pool)
    assert (state.size, state.shortfall) == (4, "IPPool available free IPs are not enough: 4 more addresses are in use "
                                                "than the 0 wanted")
    kept = {int_to_ip(n, 4) for n in pool.total_ranges.iter_addresses()}
    assert kept == {a.split("/")[0] for a in held}, "exactly the addresses pods hold are left"
    [state] = reconcile(web, 5)
    assert state.size == 6 and not state.shortfall


def test_a_subnet_short_of_addresses_grows_what_it_can_and_says_why(subnet):
    other = app("big")
    reconcile(other, 28, number="28")
    [state] = reconcile(app(), 5, number="5")
    assert (state.size, state.desired) == (3, 5)
    assert state.shortfall.startswith("insufficient subnet FreeIPs")


def test_dual_stack_and_two_nics(subnet, subnet6):
    services.subnet_create(tenant=f.tenant(), name="s4b",
                           spec={"subnet": "10.71.0.0/24", "ips": ["10.71.0.10-10.71.0.20"]})
    states = reconcile(app(), 2, requests=(SubnetRequest("eth0", v4="s4", v6="s6"), SubnetRequest("net1", v4="s4b")))
    assert sorted((s.pool.split("-")[0], s.pool.split("-")[-2], s.size) for s in states) == [
        ("auto4", "eth0", 3), ("auto4", "net1", 3), ("auto6", "eth0", 3)]


def test_reclaim_waits_for_the_last_address_then_deletes(subnet):
    web = app()
    reconcile(web, 1)
    facts = pod_of(web, "web-0", {ANNO_SUBNET: '{"ipv4": ["s4"]}'})
    f.allocate(facts)
    outcome = autopools_reclaim(app_uid=web.uid)
    assert outcome["deleted"] == [] and len(outcome["waiting"]) == 1
    assert IPPool.objects.get(auto_app_uid=web.uid).terminating, "no new allocation from a dying pool"
    f.release(facts)
    assert len(autopools_reclaim(app_uid=web.uid)["deleted"]) == 1
    assert not IPPool.objects.filter(auto_app_uid=web.uid).exists()


def test_a_reclaim_false_pool_is_kept_and_readopted_by_the_same_application(subnet):
    old = app()
    [first] = reconcile(old, 2, reclaim=False)
    assert autopools_reclaim(app_uid=old.uid) == {"deleted": [], "waiting": []}
    new = app(uid=str(uuid.uuid4()))
    [again] = reconcile(new, 2, reclaim=False)
    assert again.pool == first.pool
    assert IPPool.objects.get(name=first.pool).auto_app_uid == new.uid


def test_a_name_too_long_for_the_owner_label_gets_no_pool(subnet):
    with pytest.raises(InvalidInput, match="63 characters"):
        reconcile(app("x" * 64), 1)


# ------------------------------------------------------------------------------------------------ allocator side


def test_the_allocator_waits_while_the_pool_is_missing_then_allocates_from_it(subnet):
    web = app()
    facts = pod_of(web, "web-0", {ANNO_SUBNET: '{"ipv4": ["s4"]}'})
    with pytest.raises(allocation.AutoPoolNotReady, match="not ready yet"):
        f.allocate(facts)
    [state] = reconcile(web, 1)
    assert f.allocate(facts)["ips"][0]["ipPool"] == state.pool


def test_a_full_pool_still_growing_is_a_wait_not_exhaustion(subnet):
    web = app()
    [state] = reconcile(web, 1, number="+0")
    annotations = {ANNO_SUBNET: '{"ipv4": ["s4"]}'}
    f.allocate(pod_of(web, "web-0", annotations))
    IPPool.objects.filter(name=state.pool).update(auto_desired=2)  # the controller's next step, not taken yet
    with pytest.raises(allocation.AutoPoolNotReady, match="still growing"):
        f.allocate(pod_of(web, "web-1", annotations))


def test_a_third_party_controller_gets_its_pool_at_add(subnet):
    clone = app("clone", kind="CloneSet", api="apps.kruise.io/v1alpha1")
    annotations = {ANNO_SUBNETS: '[{"interface": "eth0", "ipv4": ["s4"]}]', ANNO_IPPOOL_IP_NUMBER: "+2"}
    facts = pod_of(clone, "clone-abc", annotations)
    response = f.allocate(facts)
    pool = IPPool.objects.get(name=response["ips"][0]["ipPool"])
    assert pool.total_ip_count == 2 and pool.annotations[ANNO_IPPOOL_IP_NUMBER] == "+2"
    missing = pod_of(clone, "clone-def", {ANNO_SUBNET: '{"ipv4": ["s4"]}'})
    with pytest.raises(InvalidInput, match="ippool-ip-number"):
        f.allocate(missing)


def test_the_rest_api_and_the_admin_say_which_workload_owns_an_auto_pool(subnet, admin_client):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    web = app()
    [state] = reconcile(web, 2)
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    body = api.get("/api/v1/pools/", {"name": state.pool}).json()
    pool = next(p for p in body["results"] if p["name"] == state.pool)
    assert pool["ownerApplication"] == {"kind": "Deployment", "namespace": "default", "name": "web", "uid": web.uid,
                                        "interface": "eth0", "desiredIPCount": 3, "ipNumber": "+1"}
    page = admin_client.get(f"/admin/ipam/ippool/{IPPool.objects.get(name=state.pool).pk}/change/")
    assert "Deployment default/web (eth0), 3 of 3 addresses, ippool-ip-number +1" in page.content.decode()


def test_only_the_application_controller_changes_an_auto_pools_addresses(subnet):
    from rest_framework.test import APIClient

    from spiderweb.ipam.validation import SpecInvalid

    [state] = reconcile(app(), 2)
    pool = IPPool.objects.get(name=state.pool)
    with pytest.raises(SpecInvalid, match="managed by the application controller"):
        services.ippool_update(pool=pool, spec={"ips": ["10.70.0.10-10.70.0.20"]})
    services.ippool_update(pool=pool, spec={"ips": pool.ips, "disable": True})  # other fields stay editable
    api = APIClient()
    from django.contrib.auth import get_user_model

    api.force_authenticate(get_user_model().objects.create_superuser("root2", "r2@example.com", "pw"))
    response = api.patch(f"/api/v1/pools/{pool.pk}/", {"ips": ["10.70.0.10-10.70.0.20"]}, format="json")
    assert response.status_code == 400 and "application controller" in response.json()["ips"][0]
    assert IPPool.objects.get(pk=pool.pk).ips == pool.ips


def test_the_subnet_page_lists_its_pools_with_their_usage(subnet, admin_client):
    [state] = reconcile(app(), 2)
    page = admin_client.get(f"/admin/ipam/subnet/{subnet.pk}/change/").content.decode()
    assert f"{state.pool}</a> — auto pool of Deployment default/web</td>" in page
    assert "0.0%</span> 0 of 3</td>" in page  # its usage bar: none of its 3 addresses allocated
