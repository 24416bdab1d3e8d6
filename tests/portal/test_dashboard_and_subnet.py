"""The capacity dashboard (the portal's home) and the subnet page's layout of pools and free space."""

import pytest
from django.urls import reverse

from spiderweb.ipam import selectors, services
from tests.ipam import factories as f
from tests.portal.bulk import bulk_allocate

pytestmark = pytest.mark.django_db


def test_the_portal_home_is_the_dashboard(admin_web, world):
    assert admin_web.get("/")["Location"] == "/admin/dashboard/"


def test_dashboard_ranks_pools_nearest_exhaustion_and_sums_tenants(admin_web, world):
    # given pool-1 at 1 of 4, a fuller pool at 9 of 10 and an empty one, and a disabled full pool
    full = f.pool("nearly-full", "10.3.0.0/24", ["10.3.0.1-10.3.0.10"], owner=world["tenant"])
    bulk_allocate(full, 9)
    f.pool("empty", "10.4.0.0/24", ["10.4.0.1-10.4.0.100"], owner=world["tenant"])
    off = f.pool("off", "10.5.0.0/24", ["10.5.0.1-10.5.0.2"], owner=world["tenant"], disable=True)
    bulk_allocate(off, 2)
    # when the dashboard opens
    response = admin_web.get("/admin/dashboard/")
    summary = response.context["summary"]
    # then the fullest enabled pool is first, the disabled one is left out of the ranking
    assert [p.name for p in summary["nearest_exhaustion"]] == ["nearly-full", "pool-1", "empty"]
    assert summary["nearest_exhaustion"][0].usage["utilization"] == 90.0
    tenant = summary["tenants"][0]
    assert (tenant["tenant"].name, tenant["pools"], tenant["allocated"], tenant["usable"]) == ("tenant-a", 4, 12, 116)
    assert tenant["utilization"] == round(100 * 12 / 116, 2)
    content = response.content.decode()
    assert "90.0%" in content and 'id="sw-nearest-exhaustion"' in content
    assert reverse("admin:ipam_subnet_change", args=[world["subnet"].pk]) in content


def test_dashboard_and_rest_agree_on_a_pool(admin_web, world):
    services.reservedip_create(tenant=world["tenant"], name="keep-13", spec={"ips": ["10.1.0.13"]})
    summary = admin_web.get("/admin/dashboard/").context["summary"]
    rest = admin_web.get(f"/api/v1/pools/{world['pool'].pk}/utilization/").json()
    assert summary["pools"][0].usage == rest


def test_dashboard_shows_only_the_users_tenants(client, django_user_model, world):
    tenant_b = services.tenant_create(name="tenant-b")
    f.pool("pool-b", "10.7.0.0/24", ["10.7.0.1-10.7.0.10"], owner=tenant_b)
    user = django_user_model.objects.create_user("bob", is_staff=True)
    tenant_b.members.add(user)
    client.force_login(user)
    summary = client.get("/admin/dashboard/").context["summary"]
    assert [p.name for p in summary["pools"]] == ["pool-b"]
    assert [row["tenant"].name for row in summary["tenants"]] == ["tenant-b"]


def test_subnet_page_lays_out_pools_and_the_free_space_between_them(admin_web, world):
    # given subnet-1 (10.1.0.10-99) with pool-1 (10.1.0.10-13) and a second pool at 10.1.0.50-59
    f.pool("pool-2", "10.1.0.0/24", ["10.1.0.50-10.1.0.59"], owner=world["tenant"])
    layout = selectors.subnet_layout(world["subnet"])
    assert [(row["kind"], row["pool"].name if row["kind"] == "pool" else row["ranges"]) for row in layout] == [
        ("pool", "pool-1"), ("free", ["10.1.0.14-10.1.0.49"]), ("pool", "pool-2"), ("free", ["10.1.0.60-10.1.0.99"])]
    assert layout[1]["count"] == 36
    content = admin_web.get(reverse("admin:ipam_subnet_change", args=[world["subnet"].pk])).content.decode()
    assert 'id="sw-subnet-layout"' in content
    assert "10.1.0.14-10.1.0.49" in content and "36 addresses not in any pool" in content
    assert content.index("pool-1") < content.index("10.1.0.14-10.1.0.49") < content.index("pool-2")
    assert "25.0%" in content  # pool-1's bar
