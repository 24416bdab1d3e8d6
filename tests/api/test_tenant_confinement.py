"""A tenant member writes only inside their tenant's own address space (issue 10, High 1).

A reservation is a cluster-wide veto on addresses: a member who could reserve 0.0.0.0-255.255.255.255 (or another
tenant's StatefulSet address) would make every allocation of every tenant fail with ip_exhausted. A pool inside
another tenant's SpiderSubnet would use up that subnet's capacity, block its deletion and learn its name.
"""

import pytest
from django.urls import reverse

from spiderweb.ipam import services
from spiderweb.ipam.models import ClusterSettings, IPPool, ReservedIP

pytestmark = pytest.mark.django_db

RESERVED = reverse("reservedip-list")
POOLS = reverse("ippool-list")


@pytest.fixture
def own_pool(tenant_a):
    return services.ippool_create(tenant=tenant_a, name="a-pool", spec={"subnet": "10.1.0.0/24",
                                                                         "ips": ["10.1.0.10-10.1.0.50"]})


@pytest.fixture
def foreign_pool(tenant_b):
    return services.ippool_create(tenant=tenant_b, name="b-pool", spec={"subnet": "10.2.0.0/24",
                                                                         "ips": ["10.2.0.10-10.2.0.50"]})


@pytest.mark.parametrize("ips", [["0.0.0.0-255.255.255.255"], ["::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
                                 ["10.2.0.10"], ["10.1.0.40-10.1.0.60"]])
def test_member_cannot_reserve_outside_their_tenants_pools(api, member, tenant_a, own_pool, foreign_pool, ips):
    # Given a member of tenant-a; tenant-b owns 10.2.0.10-50 (a StatefulSet's address, say)
    # When the member reserves the whole cluster, another tenant's address, or a range reaching past their pool
    response = api(member).post(RESERVED, {"name": "grab", "tenant": tenant_a.name, "ips": ips}, format="json")
    # Then it is refused, and nothing is reserved
    assert response.status_code == 400, response.content
    assert "not addresses of tenant tenant-a's own pools or subnets" in response.json()["ips"][0]
    assert not ReservedIP.objects.filter(name="grab").exists()


def test_member_reserves_inside_their_pool_and_subnet(api, member, tenant_a, own_pool):
    services.subnet_create(tenant=tenant_a, name="a-subnet", spec={"subnet": "10.9.0.0/24", "ips": ["10.9.0.5"]})
    body = {"name": "mine", "tenant": tenant_a.name, "ips": ["10.1.0.10-10.1.0.12", "10.9.0.5"]}
    response = api(member).post(RESERVED, body, format="json")
    assert response.status_code == 201, response.content


def test_member_cannot_move_a_reservation_onto_another_tenant(api, member, tenant_a, own_pool, foreign_pool):
    reserved = services.reservedip_create(tenant=tenant_a, name="mine", spec={"ips": ["10.1.0.10"]})
    response = api(member).patch(reverse("reservedip-detail", args=[reserved.pk]), {"ips": ["10.2.0.10"]},
                                 format="json")
    assert response.status_code == 400, response.content
    reserved.refresh_from_db()
    assert reserved.ips == ["10.1.0.10"]


def test_staff_may_reserve_anywhere(api, staff, tenant_a):
    response = api(staff).post(RESERVED, {"name": "ops", "tenant": tenant_a.name, "ips": ["10.77.0.1"]},
                               format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("subnet_feature", [True, False])
def test_member_cannot_create_a_pool_in_another_tenants_subnet(api, member, tenant_a, tenant_b, subnet_feature):
    # Given tenant-b's SpiderSubnet
    ClusterSettings.objects.update_or_create(pk=1, defaults={"enable_spider_subnet": subnet_feature})
    services.subnet_create(tenant=tenant_b, name="b-secret-subnet",
                           spec={"subnet": "10.3.0.0/24", "ips": ["10.3.0.10-10.3.0.99"]})
    # When a member of tenant-a creates a pool in it
    body = {"name": "squat", "tenant": tenant_a.name, "subnet": "10.3.0.0/24", "ips": ["10.3.0.10-10.3.0.99"]}
    response = api(member).post(POOLS, body, format="json")
    # Then it is refused without naming the other tenant's subnet
    assert response.status_code == 400, response.content
    assert "lies in a SpiderSubnet of another tenant" in response.json()["subnet"][0]
    assert "b-secret-subnet" not in response.content.decode()
    assert not IPPool.objects.filter(name="squat").exists()


def test_member_creates_a_pool_in_their_own_subnet(api, member, tenant_a):
    services.subnet_create(tenant=tenant_a, name="a-subnet", spec={"subnet": "10.3.0.0/24",
                                                                   "ips": ["10.3.0.10-10.3.0.99"]})
    body = {"name": "mine", "tenant": tenant_a.name, "subnet": "10.3.0.0/24", "ips": ["10.3.0.10-10.3.0.20"]}
    response = api(member).post(POOLS, body, format="json")
    assert response.status_code == 201, response.content


def test_member_cannot_create_a_subnet_that_adopts_another_tenants_pool(api, member, tenant_a, foreign_pool):
    # Given tenant-b's pool b-pool in 10.2.0.0/24 (no subnet yet)
    body = {"name": "grab-subnet", "tenant": tenant_a.name, "subnet": "10.2.0.0/24", "ips": ["10.2.0.1-10.2.0.99"]}
    # When a member of tenant-a creates a subnet over it (it would adopt b-pool as its owner)
    response = api(member).post(reverse("subnet-list"), body, format="json")
    # Then it is refused, and b-pool keeps no owner subnet
    assert response.status_code == 400, response.content
    assert "covers pools of another tenant" in response.json()["subnet"][0]
    foreign_pool.refresh_from_db()
    assert foreign_pool.owner_subnet is None
