"""CRUD and permission tests of every tenant-facing resource, from the shared suites in tests/api/base.py."""

import pytest
from django.urls import reverse

from spiderweb.ipam import services
from spiderweb.ipam.models import IPPool, ReservedIP, Subnet
from spiderweb.tenancy.models import Tenant
from tests.api.base import ResourceTests, TenantOwnedResourceTests
from tests.ipam import factories

pytestmark = pytest.mark.django_db


class TestTenantAPI(ResourceTests):
    basename = "tenant"
    model = Tenant
    object_type = "tenancy.tenant"

    def make(self, tenant, index):
        return tenant  # a tenant "owned by" a tenant is the tenant itself

    def create_body(self, tenant):
        return {"name": "tenant-new", "description": "made by the test"}

    def patch_body(self, obj):
        return {"description": "changed"}

    def assert_patched(self, obj):
        assert obj.description == "changed"

    # Only staff create tenants: a member is refused outright, whatever the body says.
    def test_member_creates_in_their_tenant(self, api, member, tenant_a):
        response = api(member).post(self.list_url(), self.create_body(tenant_a), format="json")
        assert response.status_code == 403
        assert not Tenant.objects.filter(name="tenant-new").exists()

    def test_member_cannot_create_into_a_foreign_tenant(self, api, member, tenant_b):
        self.test_member_creates_in_their_tenant(api, member, tenant_b)

    def test_member_cannot_change_their_own_tenant(self, api, member, tenant_a):
        response = api(member).patch(self.detail_url(tenant_a), {"description": "mine now"}, format="json")
        assert response.status_code == 403
        tenant_a.refresh_from_db()
        assert tenant_a.description == ""

    def test_deleting_a_tenant_that_owns_pools_is_a_409_naming_them(self, api, staff, tenant_a):
        services.ippool_create(tenant=tenant_a, name="held", spec={"subnet": "10.1.0.0/24"})
        response = api(staff).delete(self.detail_url(tenant_a))
        assert response.status_code == 409
        assert response.json()["code"] == "pool_in_use"
        assert "held" in response.json()["message"]
        assert Tenant.objects.filter(pk=tenant_a.pk).exists()

    def test_deleting_a_tenant_that_owns_a_coordinator_is_a_409_not_a_500(self, api, staff, tenant_a):
        factories.coordinator(factories.coordinator_document(), owner=tenant_a)
        response = api(staff).delete(self.detail_url(tenant_a))
        assert response.status_code == 409
        assert "default" in response.json()["message"]
        assert Tenant.objects.filter(pk=tenant_a.pk).exists()

    def test_invalid_tenant_name_is_a_400(self, api, staff):
        response = api(staff).post(self.list_url(), {"name": "Not_A_Label"}, format="json")
        assert response.status_code == 400
        assert "DNS label" in response.json()["name"][0]


class TestSubnetAPI(TenantOwnedResourceTests):
    basename = "subnet"
    model = Subnet
    object_type = "ipam.subnet"

    def make(self, tenant, index):
        return services.subnet_create(
            tenant=tenant, name=f"subnet-{index}",
            spec={"subnet": f"172.16.{index}.0/24", "ips": [f"172.16.{index}.10-172.16.{index}.99"]},
        )

    def create_body(self, tenant):
        return {"name": "subnet-new", "tenant": tenant.name, "subnet": "172.16.200.0/24",
                "ips": ["172.16.200.10-172.16.200.99"]}

    def patch_body(self, obj):
        return {"gateway": str(obj.network[1])}

    def assert_patched(self, obj):
        assert obj.gateway == str(obj.network[1])
        assert obj.generation == 2


class TestIPPoolAPI(TenantOwnedResourceTests):
    basename = "ippool"
    model = IPPool
    object_type = "ipam.ippool"

    def make(self, tenant, index):
        return services.ippool_create(
            tenant=tenant, name=f"pool-{index}",
            spec={"subnet": f"10.{index}.0.0/24", "ips": [f"10.{index}.0.10-10.{index}.0.20"]},
        )

    def create_body(self, tenant):
        return {"name": "pool-new", "tenant": tenant.name, "subnet": "10.200.0.0/24", "ips": ["10.200.0.10"]}

    def patch_body(self, obj):
        return {"disable": True, "nodeName": ["node-9"]}

    def assert_patched(self, obj):
        assert obj.disable is True
        assert obj.node_name == ["node-9"]
        assert obj.generation == 2

    def test_utilization(self, api, member, tenant_a):
        pool = self.make(tenant_a, 1)
        response = api(member).get(reverse("ippool-utilization", args=[pool.pk]))
        assert response.status_code == 200
        assert response.json() == {"totalIPCount": 11, "reservedIPCount": 0, "allocatedIPCount": 0,
                                   "freeIPCount": 11, "utilization": 0.0}

    def test_utilization_of_another_tenants_pool_is_404(self, api, outsider, tenant_a):
        pool = self.make(tenant_a, 1)
        assert api(outsider).get(reverse("ippool-utilization", args=[pool.pk])).status_code == 404

    def test_filters(self, api, staff, tenant_a):
        self.make(tenant_a, 1)
        services.ippool_create(tenant=tenant_a, name="v6", spec={"subnet": "fd00::/120", "ips": ["fd00::10"]})
        client = api(staff)
        assert self.names(client.get(self.list_url(), {"ipVersion": 6})) == ["v6"]
        assert self.names(client.get(self.list_url(), {"subnet": "10.1.0.0/24"})) == ["pool-1"]
        assert self.names(client.get(self.list_url(), {"search": "fd00"})) == ["v6"]
        ordered = client.get(self.list_url(), {"ordering": "-name"}).json()["results"]
        assert [p["name"] for p in ordered] == ["v6", "pool-1"]


class TestReservedIPAPI(TenantOwnedResourceTests):
    basename = "reservedip"
    model = ReservedIP
    object_type = "ipam.reservedip"

    def make(self, tenant, index):
        return services.reservedip_create(tenant=tenant, name=f"reserved-{index}", spec={"ips": [f"192.168.{index}.1"]})

    def create_body(self, tenant):
        # A member may reserve only their own tenant's addresses: the tenant gets a pool holding them.
        if not IPPool.objects.filter(name=f"home-{tenant.name}").exists():
            net = "192.168.200" if tenant.name == "tenant-a" else "192.168.201"
            services.ippool_create(tenant=tenant, name=f"home-{tenant.name}",
                                   spec={"subnet": f"{net}.0/24", "ips": [f"{net}.1-{net}.9"]})
        return {"name": "reserved-new", "tenant": tenant.name, "ips": ["192.168.200.1-192.168.200.3"]}

    def patch_body(self, obj):
        return {"ips": ["192.168.250.7"]}

    def assert_patched(self, obj):
        assert obj.ips == ["192.168.250.7"]
        assert obj.generation == 2
