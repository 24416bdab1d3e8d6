"""Django model permissions decide what staff may do; `is_staff` alone grants nothing (issue 10, Medium 3).

`viewer` is staff with only the view permissions, `bare_staff` staff with none: neither may create or delete
pools in other tenants, change cluster settings, release a live pod's address or create tenants.
"""

import json

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from spiderweb.ipam import services
from spiderweb.ipam.models import Allocation, ClusterSettings, IPPool
from spiderweb.tenancy.models import Tenant
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool_a(tenant_a):
    return services.ippool_create(tenant=tenant_a, name="a-pool", spec={"subnet": "10.1.0.0/24",
                                                                         "ips": ["10.1.0.10-10.1.0.20"]})


def test_a_view_only_staff_user_sees_every_tenant_but_changes_nothing(api, viewer, tenant_a, tenant_b, pool_a):
    client = api(viewer)
    # Sees everything
    assert [p["name"] for p in client.get(reverse("ippool-list")).json()["results"]] == ["a-pool"]
    # Creates nothing in another tenant
    body = {"name": "b-pool", "tenant": tenant_b.name, "subnet": "10.2.0.0/24"}
    response = client.post(reverse("ippool-list"), body, format="json")
    assert response.status_code == 400 and "not a member" in response.json()["tenant"][0]
    # Changes and deletes nothing
    detail = reverse("ippool-detail", args=[pool_a.pk])
    assert client.patch(detail, {"disable": True}, format="json").status_code == 403
    assert client.delete(detail).status_code == 403
    assert IPPool.objects.filter(name="a-pool", disable=False).exists()
    assert not IPPool.objects.filter(name="b-pool").exists()


def test_a_view_only_staff_user_cannot_change_settings_release_or_create_tenants(api, viewer, tenant_a, pool_a):
    f.allocate(f.facts("web-0", annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["a-pool"]})}))
    client = api(viewer)
    assert client.patch(reverse("cluster-settings"), {"enableIPv6": False}, format="json").status_code == 403
    assert ClusterSettings.load().enable_ipv6 is True
    live = Allocation.objects.get()
    assert client.post(reverse("allocation-release", args=[live.pk])).status_code == 403
    assert Allocation.objects.filter(pk=live.pk).exists()
    assert client.post(reverse("tenant-list"), {"name": "new-tenant"}, format="json").status_code == 403
    assert client.delete(reverse("tenant-detail", args=[tenant_a.pk])).status_code == 403
    assert set(Tenant.objects.values_list("name", flat=True)) == {"tenant-a"}


def test_staff_without_permissions_sees_only_their_memberships(api, bare_staff, tenant_a, pool_a):
    client = api(bare_staff)
    assert client.get(reverse("ippool-list")).json()["results"] == []
    assert client.get(reverse("ippool-detail", args=[pool_a.pk])).status_code == 404
    assert client.get(reverse("tenant-list")).json()["results"] == []
    # Membership, not the staff flag, is what lets them in
    tenant_a.members.add(bare_staff)
    assert client.get(reverse("ippool-detail", args=[pool_a.pk])).status_code == 200


def test_one_permission_grants_exactly_that_action_in_every_tenant(api, bare_staff, tenant_b):
    bare_staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_ippool", "view_ippool"]))
    client = api(bare_staff)
    body = {"name": "b-pool", "tenant": tenant_b.name, "subnet": "10.2.0.0/24"}
    response = client.post(reverse("ippool-list"), body, format="json")
    assert response.status_code == 201, response.json()
    pool = IPPool.objects.get(name="b-pool")
    assert client.delete(reverse("ippool-detail", args=[pool.pk])).status_code == 403


def test_a_permission_on_a_non_staff_account_grants_nothing_beyond_membership(api, member, tenant_b):
    member.user_permissions.add(*Permission.objects.filter(codename__in=["add_ippool", "view_ippool"]))
    body = {"name": "b-pool", "tenant": tenant_b.name, "subnet": "10.2.0.0/24"}
    assert api(member).post(reverse("ippool-list"), body, format="json").status_code == 400


def test_the_admin_refuses_a_view_only_staff_user_too(client, viewer, tenant_a, pool_a):
    client.force_login(viewer)
    assert client.get(reverse("admin:ipam_ippool_changelist")).status_code == 200
    assert client.get(reverse("admin:ipam_ippool_add")).status_code == 403
    assert client.post(reverse("admin:ipam_ippool_delete", args=[pool_a.pk]), {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:tenancy_tenant_add")).status_code == 403
    assert IPPool.objects.filter(pk=pool_a.pk).exists()
