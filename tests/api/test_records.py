"""Read-only allocation records (endpoints, allocations, address history, change log): tenant scoping, the admin
release action, and the request id / actor carried into the change log."""

import json
import uuid

import pytest
from django.urls import reverse

from spiderweb.changelog.models import ObjectChange
from spiderweb.ipam import services
from spiderweb.ipam.models import AddressHistory, Allocation, Endpoint
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db


def annotated(pool: str, name: str, **kwargs):
    return f.facts(name, annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pool]})}, **kwargs)


@pytest.fixture
def two_pods(tenant_a, tenant_b):
    """web-a holds 10.1.0.10 from tenant-a's pool; web-b holds 10.2.0.10 from tenant-b's pool."""
    f.pool("pool-a", "10.1.0.0/24", ["10.1.0.10-10.1.0.20"], owner=tenant_a)
    f.pool("pool-b", "10.2.0.0/24", ["10.2.0.10-10.2.0.20"], owner=tenant_b)
    f.allocate(annotated("pool-a", "web-a"))
    f.allocate(annotated("pool-b", "web-b"))
    return Allocation.objects.get(address="10.1.0.10"), Allocation.objects.get(address="10.2.0.10")


@pytest.mark.parametrize(
    ("basename", "key", "mine", "theirs"),
    [
        ("endpoint", "name", "web-a", "web-b"),
        ("allocation", "address", "10.1.0.10", "10.2.0.10"),
    ],
)
def test_records_are_scoped_to_the_callers_tenants(api, member, staff, two_pods, basename, key, mine, theirs):
    url = reverse(f"{basename}-list")
    assert [item[key] for item in api(member).get(url).json()["results"]] == [mine]
    assert sorted(item[key] for item in api(staff).get(url).json()["results"]) == sorted([mine, theirs])


def test_address_history_is_scoped_to_the_callers_tenants(api, member, staff, two_pods):
    # Given both pods released (a holding enters the history when it ends)
    f.release(annotated("pool-a", "web-a", uid=two_pods[0].pod_uid))
    f.release(annotated("pool-b", "web-b", uid=two_pods[1].pod_uid))
    url = reverse("addresshistory-list")
    assert [h["address"] for h in api(member).get(url).json()["results"]] == ["10.1.0.10"]
    assert sorted(h["address"] for h in api(staff).get(url).json()["results"]) == ["10.1.0.10", "10.2.0.10"]


def test_another_tenants_allocation_is_a_404(api, member, two_pods):
    _, theirs = two_pods
    assert api(member).get(reverse("allocation-detail", args=[theirs.pk])).status_code == 404
    assert api(member).get(reverse("endpoint-detail", args=[theirs.endpoint_id])).status_code == 404


def test_records_are_read_only(api, staff, two_pods):
    mine, _ = two_pods
    client = api(staff)
    assert client.post(reverse("allocation-list"), {}, format="json").status_code == 405
    assert client.delete(reverse("allocation-detail", args=[mine.pk])).status_code == 405
    assert client.patch(reverse("endpoint-detail", args=[mine.endpoint_id]), {}, format="json").status_code == 405
    assert client.post(reverse("objectchange-list"), {}, format="json").status_code == 405


def test_anonymous_cannot_read_records(api, two_pods):
    for basename in ("endpoint", "allocation", "addresshistory", "objectchange"):
        assert api().get(reverse(f"{basename}-list")).status_code == 401


def test_endpoint_shows_the_pods_allocations_in_spiderpool_terms(api, member, two_pods):
    endpoint = api(member).get(reverse("endpoint-list"), {"name": "web-a"}).json()["results"][0]
    assert endpoint["ownerControllerType"] == "Pod"
    assert [(a["pool"], a["cidr"], a["interface"]) for a in endpoint["allocations"]] == [
        ("pool-a", "10.1.0.10/24", "eth0")
    ]


def test_an_endpoint_shows_a_member_only_the_allocations_from_their_tenants_pools(api, member, tenant_a, tenant_b):
    # Given a dual-stack pod whose IPv4 address comes from tenant-a and whose IPv6 address comes from tenant-b
    f.pool("pool-a", "10.1.0.0/24", ["10.1.0.10"], owner=tenant_a)
    f.pool("pool-b6", "fd00::/120", ["fd00::10"], owner=tenant_b)
    f.allocate(f.facts("dual", annotations={"ipam.spidernet.io/ippool": json.dumps(
        {"ipv4": ["pool-a"], "ipv6": ["pool-b6"]})}))
    # When a member of tenant-a reads the endpoint
    [endpoint] = api(member).get(reverse("endpoint-list")).json()["results"]
    # Then tenant-b's address is not in it
    assert [a["address"] for a in endpoint["allocations"]] == ["10.1.0.10"]


def test_allocation_filters(api, staff, two_pods):
    client = api(staff)
    url = reverse("allocation-list")
    assert [a["address"] for a in client.get(url, {"pool": "pool-b"}).json()["results"]] == ["10.2.0.10"]
    assert [a["address"] for a in client.get(url, {"pod": "web-a"}).json()["results"]] == ["10.1.0.10"]
    assert client.get(url, {"node": "node-9"}).json()["count"] == 0


def test_staff_release_frees_the_address_and_the_history_records_who(api, staff, two_pods):
    # Given a live allocation
    mine, _ = two_pods
    # When staff releases it through the API
    response = api(staff).post(reverse("allocation-release", args=[mine.pk]))
    # Then it is gone and its history is closed with the releasing user as the reason
    assert response.status_code == 200
    assert response.json() == {"released": ["10.1.0.10"]}
    assert not Allocation.objects.filter(pk=mine.pk).exists()
    history = AddressHistory.objects.get(address="10.1.0.10")
    assert history.released_at is not None
    assert history.release_reason == "admin:staff"
    # And the address history endpoint shows it as released
    shown = api(staff).get(reverse("addresshistory-list"), {"address": "10.1.0.10"}).json()["results"]
    assert [(h["podName"], h["releaseReason"]) for h in shown] == [("web-a", "admin:staff")]
    assert api(staff).get(reverse("addresshistory-list"), {"releaseReason": "admin:staff"}).json()["count"] == 1


def test_non_staff_cannot_release_even_their_own_tenants_allocation(api, member, two_pods):
    mine, _ = two_pods
    response = api(member).post(reverse("allocation-release", args=[mine.pk]))
    assert response.status_code == 403
    assert Allocation.objects.filter(pk=mine.pk).exists()
    assert not AddressHistory.objects.filter(address="10.1.0.10").exists()


def test_address_history_keeps_every_holder(api, staff, tenant_a):
    # Given an address used by one pod, released, and given to the next pod
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10"], owner=tenant_a)
    first, second = annotated("p1", "web-0"), annotated("p1", "web-1")
    f.allocate(first)
    f.release(first, reason="cni-del")
    f.allocate(second)
    client = api(staff)
    # Then the history has the first holder and the allocation names the current one
    shown = client.get(reverse("addresshistory-list"), {"address": "10.1.0.10"}).json()["results"]
    assert [(h["podName"], h["releaseReason"]) for h in shown] == [("web-0", "cni-del")]
    live = client.get(reverse("allocation-list"), {"address": "10.1.0.10"}).json()["results"]
    assert [a["endpoint"] for a in live] == ["default/web-1"]
    # And once the second lets go too, both holders are listed, newest first
    f.release(second, reason="gc")
    shown = client.get(reverse("addresshistory-list"), {"address": "10.1.0.10"}).json()["results"]
    assert [(h["podName"], h["releaseReason"]) for h in shown] == [("web-1", "gc"), ("web-0", "cni-del")]


# ------------------------------------------------------------------------------------------------- change log


def test_change_log_is_scoped_to_the_callers_tenants(api, member, tenant_a, tenant_b):
    services.ippool_create(tenant=tenant_a, name="pool-a", spec={"subnet": "10.1.0.0/24"})
    services.ippool_create(tenant=tenant_b, name="pool-b", spec={"subnet": "10.2.0.0/24"})
    shown = api(member).get(reverse("objectchange-list"), {"objectType": "ipam.ippool"}).json()["results"]
    assert [c["objectRepr"] for c in shown] == ["pool-a"]


def test_change_log_api_shows_before_after_and_diff(api, staff, tenant_a):
    client = api(staff)
    created = client.post(reverse("ippool-list"), {"name": "p1", "tenant": "tenant-a", "subnet": "10.1.0.0/24"},
                          format="json").json()
    patched = client.patch(reverse("ippool-detail", args=[created["id"]]), {"disable": True}, format="json")
    changes = client.get(reverse("objectchange-list"), {"objectID": created["id"], "action": "update"}).json()
    [change] = changes["results"]
    assert change["userName"] == "staff"
    assert change["requestID"] == patched["X-Request-ID"]
    assert change["diff"]["disable"] == [False, True]
    assert change["prechangeData"]["disable"] is False
    assert change["postchangeData"]["disable"] is True


def test_every_response_carries_a_request_id(api, staff):
    response = api(staff).get(reverse("ippool-list"))
    assert uuid.UUID(response["X-Request-ID"])
    other = api(staff).get(reverse("ippool-list"))
    assert other["X-Request-ID"] != response["X-Request-ID"]


def test_a_refused_write_records_no_change(api, staff, tenant_a):
    api(staff).post(reverse("ippool-list"), {"name": "p1", "tenant": "tenant-a", "subnet": "10.1.1.0/16"},
                    format="json")
    assert not ObjectChange.objects.filter(object_type="ipam.ippool").exists()


def test_a_statefulset_address_released_by_an_admin_is_not_handed_back(api, staff, tenant_a):
    # Given StatefulSet pod db-0 holding an address (README, A11: the endpoint and pool records are one row)
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.12"], owner=tenant_a)
    pod = f.facts("db-0", owner_kind="StatefulSet", owner_name="db",
                  annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p1"]})})
    f.allocate(pod)
    held = Allocation.objects.get()
    # When an administrator releases it
    response = api(staff).post(reverse("allocation-release", args=[held.pk]))
    assert response.status_code == 200 and response.json() == {"released": [held.address]}
    # Then both records are gone together (no endpoint is left pointing at an address the pool no longer records)
    assert not Endpoint.objects.exists()
    # And the pod's next ADD gets another address, and the history says who released the first one
    f.allocate(pod)
    again = Allocation.objects.get()
    assert again.address != held.address and again.pod_uid == pod.uid
    history = AddressHistory.objects.get(address=held.address)
    assert (history.pod_name, history.release_reason) == ("db-0", "admin:staff")
