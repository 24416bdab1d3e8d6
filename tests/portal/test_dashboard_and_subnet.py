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


def test_dashboard_draws_addresses_held_over_time_and_forecasts_exhaustion(admin_web, world):
    from datetime import timedelta

    from django.utils import timezone

    from spiderweb.ipam.models import AddressHistory, Allocation

    # given a pool of 10: 4 addresses held for 10 days, 4 more since yesterday, and one held from 12 to 3 days ago
    now = timezone.now()
    pool = f.pool("growing", "10.3.0.0/24", ["10.3.0.1-10.3.0.10"], owner=world["tenant"])
    addresses = bulk_allocate(pool, 8)
    Allocation.objects.filter(pool=pool, address__in=addresses[:4]).update(bound_at=now - timedelta(days=10))
    Allocation.objects.filter(pool=pool, address__in=addresses[4:]).update(bound_at=now - timedelta(days=1))
    AddressHistory.objects.create(pool=pool, pool_name="growing", ip_version=4, address="10.3.0.9",
                                  pod_namespace="default", pod_name="old", pod_uid="u-old", interface="eth0",
                                  allocated_at=now - timedelta(days=12), released_at=now - timedelta(days=3))
    AddressHistory.objects.filter(pool=world["pool"]).update(allocated_at=now - timedelta(days=30),
                                                             released_at=now - timedelta(days=29))
    Allocation.objects.filter(pool=world["pool"]).update(bound_at=now - timedelta(days=30))
    # when the dashboard opens
    response = admin_web.get("/admin/dashboard/")
    summary = response.context["summary"]
    # then 14 daily points: pool-1's one address throughout, growing's 4 (+1 from history) then 8 since yesterday
    counts = [point["count"] for point in summary["timeline"]]
    assert len(counts) == 14
    assert counts[0] == 1  # 13 days ago
    assert counts[1] == 1 + 1  # 12 days ago: the history holding began
    assert counts[3] == 1 + 4 + 1  # 10 days ago
    assert counts[-3] == 1 + 4  # 2 days ago: the history holding ended 3 days ago
    assert counts[-1] == 1 + 8
    # and growing, +3 in 7 days (5 held a week ago, 8 now) with 2 free, runs out in 2 / (3/7) = 4.7 days;
    # pool-1 is not growing
    growing = next(p for p in summary["pools"] if p.name == "growing")
    assert growing.days_left == 4.7
    assert next(p for p in summary["pools"] if p.name == "pool-1").days_left is None
    content = response.content.decode()
    assert 'id="sw-timeline"' in content and "~4.7 days" in content and "not growing" in content


def test_dashboard_shows_what_the_gc_released_and_the_auto_pools(admin_web, world):
    # Given a pod whose address the IP GC released (through the same release the GC calls) and one released by DEL
    from spiderweb.engine.autopool import App, IPNumber, SubnetRequest
    from spiderweb.ipam import allocation
    from spiderweb.ipam.autopools import autopools_reconcile
    from spiderweb.ipam.models import GC_RELEASE_SCAN

    for name, reason in (("leaked", GC_RELEASE_SCAN), ("deleted", "cni-del")):
        pod = f.facts(name, annotations={"ipam.spidernet.io/ippool": '{"ipv4": ["pool-1"]}'})
        allocation.ippool_allocate(request=allocation.AllocateRequest(facts=pod, if_name="eth0"))
        allocation.ippool_release(namespace=pod.namespace, name=name, pod_uid=pod.uid, reason=reason)
    # And a Deployment's auto pool cut from subnet-1 by the application controller's reconcile
    web = App(api_version="apps/v1", kind="Deployment", namespace="default", name="web", uid="uid-web")
    autopools_reconcile(app=web, requests=[SubnetRequest("eth0", v4=world["subnet"].name)],
                        ip_number=IPNumber(True, 1), replicas=2, reclaim=True)
    # When the dashboard opens
    response = admin_web.get("/admin/dashboard/")
    activity = response.context["activity"]
    # Then it counts the GC's release only, and the auto pool at its wanted size
    assert (activity["gc_released_day"], activity["gc_released_week"]) == (1, 1)
    assert [row.pod_name for row in activity["gc_latest"]] == ["leaked"]
    assert (activity["auto_pools"], activity["auto_workloads"], activity["auto_growing"]) == (1, 1, 0)
    assert [change.action for change in activity["auto_latest"]] == ["create"]
    content = response.content.decode()
    assert 'id="sw-controller-activity"' in content and "of default/leaked (gc-scan" in content
    assert "1 auto pool serving 1 workload, 0 still short" in content
