"""The pool page scales: no inlined allocations, free space from the engine's ranges, allocations paginated and
filterable, each address's history one click away, and the same utilization as the REST API."""

import pytest
from django.urls import reverse

from spiderweb.ipam import selectors, services
from spiderweb.ipam.models import Allocation
from tests.ipam import factories as f
from tests.portal.bulk import bulk_allocate

pytestmark = pytest.mark.django_db


def test_pool_page_shows_free_ranges_and_next_free_and_no_inlined_allocations(admin_web, world):
    # given pool-1 (10.1.0.10-13) whose 10.1.0.11 is held by web-1
    pool = world["pool"]
    held = Allocation.objects.get(pool=pool).address
    # when the admin opens the pool
    content = admin_web.get(reverse("admin:ipam_ippool_change", args=[pool.pk])).content.decode()
    # then the free space is shown and the held address is not listed anywhere on the page
    assert held == "10.1.0.11"
    assert '<code id="sw-next-free">10.1.0.10, 10.1.0.12, 10.1.0.13</code>' in content
    assert '<code id="sw-free-ranges">10.1.0.10, 10.1.0.12-10.1.0.13</code>' in content
    assert held not in content
    assert f"?pool__id__exact={pool.pk}" in content
    assert f"object_type=ipam.ippool&amp;object_id={pool.pk}" in content  # the change log


def test_free_space_leaves_out_reserved_addresses(world):
    services.reservedip_create(tenant=world["tenant"], name="keep-12", spec={"ips": ["10.1.0.12"]})
    space = selectors.ippool_address_space(world["pool"])
    assert space["free_ranges"] == ["10.1.0.10", "10.1.0.13"]
    assert space["next_free"] == ["10.1.0.10", "10.1.0.13"]
    assert space["usage"]["reservedIPCount"] == 1 and space["usage"]["freeIPCount"] == 2


def test_a_large_pool_page_lists_no_allocation_and_caps_the_free_ranges(admin_web, world):
    # given every other one of the first 600 addresses of a /22 held: 299 single free addresses and the tail
    pool = f.pool("big", "10.9.0.0/22", ["10.9.0.1-10.9.3.254"], owner=world["tenant"])
    addresses = bulk_allocate(pool, 600)
    released = Allocation.objects.filter(pool=pool, address__in=addresses[1::2])
    assert released.delete()[0] == 300
    # when the page opens
    content = admin_web.get(reverse("admin:ipam_ippool_change", args=[pool.pk])).content.decode()
    # then it names 20 free ranges, counts the rest, and lists none of the 300 held addresses
    space = selectors.ippool_address_space(pool)
    assert space["free_range_count"] == 300 and len(space["free_ranges"]) == 20
    assert "and 280 more" in content
    assert not any(f">{address}<" in content or f" {address}," in content for address in addresses[0:600:2])
    assert "Allocations of this pool (300)" in content


def test_allocations_of_a_pool_are_paginated_and_filtered_by_pool(admin_web, world):
    pool = f.pool("paged", "10.8.0.0/24", ["10.8.0.1-10.8.0.250"], owner=world["tenant"])
    bulk_allocate(pool, 150)
    url = reverse("admin:ipam_allocation_changelist")
    first = admin_web.get(url, {"pool__id__exact": pool.pk})
    cl = first.context["cl"]
    assert (cl.result_count, len(cl.result_list)) == (150, 100)
    assert {row.pool_id for row in cl.result_list} == {pool.pk}  # world's pool-1 allocation filtered out
    second = admin_web.get(url, {"pool__id__exact": pool.pk, "p": 2})
    assert len(second.context["cl"].result_list) == 50
    narrowed = admin_web.get(url, {"pool__id__exact": pool.pk, "q": "10.8.0.7"})
    assert [row.address for row in narrowed.context["cl"].result_list] == ["10.8.0.7", "10.8.0.70", "10.8.0.71",
                                                                          "10.8.0.72", "10.8.0.73", "10.8.0.74",
                                                                          "10.8.0.75", "10.8.0.76", "10.8.0.77",
                                                                          "10.8.0.78", "10.8.0.79"]


def test_each_allocation_links_to_its_address_history(admin_web, world):
    # given web-0 held 10.1.0.10 and released it; web-1 holds 10.1.0.11
    rows = admin_web.get(reverse("admin:ipam_allocation_changelist"), {"pool__id__exact": world["pool"].pk})
    assert "?address=10.1.0.11" in rows.content.decode()
    history = admin_web.get(reverse("admin:ipam_addresshistory_changelist"), {"address": "10.1.0.10"})
    assert [row.pod_name for row in history.context["cl"].result_list] == ["web-0"]


def test_admin_and_rest_report_the_same_utilization(admin_web, world, superuser):
    # given a reservation inside pool-1: 3 usable addresses, 1 allocated
    services.reservedip_create(tenant=world["tenant"], name="keep-13", spec={"ips": ["10.1.0.13"]})
    pool = world["pool"]
    # when REST and the admin list are asked
    rest = admin_web.get(f"/api/v1/pools/{pool.pk}/utilization/").json()
    listing = admin_web.get(reverse("admin:ipam_ippool_changelist")).content.decode()
    # then both say 33.33 % (the admin shows one decimal)
    assert rest["utilization"] == 33.33
    assert "33.3%" in listing and "25.0%" not in listing
    row = admin_web.get(reverse("admin:ipam_ippool_changelist")).context["cl"].result_list[0]
    assert row.usage == rest


def test_the_history_button_opens_the_change_log_of_the_object(admin_web, world):
    for obj in (world["pool"], world["subnet"], world["reserved"], world["tenant"]):
        opts = obj._meta
        response = admin_web.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[obj.pk]))
        assert response.status_code == 302
        changes = admin_web.get(response["Location"]).context["cl"].result_list
        assert changes and {(c.object_type, c.object_id) for c in changes} == {(opts.label_lower, obj.pk)}


def test_bulk_disable_and_enable_go_through_the_update_service(admin_web, world):
    from spiderweb.changelog.models import ObjectChange
    from spiderweb.ipam.models import IPPool

    other = f.pool("pool-2", "10.1.0.0/24", ["10.1.0.50-10.1.0.59"], owner=world["tenant"])
    url = reverse("admin:ipam_ippool_changelist")
    ids = [str(world["pool"].pk), str(other.pk)]
    response = admin_web.post(url, {"action": "disable_selected", "_selected_action": ids}, follow=True)
    assert "Disabled 2 pool(s): pool-1, pool-2" in response.content.decode()
    assert list(IPPool.objects.order_by("name").values_list("disable", "generation")) == [(True, 2), (True, 2)]
    assert ObjectChange.objects.filter(object_type="ipam.ippool", action="update").count() == 2
    admin_web.post(url, {"action": "enable_selected", "_selected_action": ids[:1]})
    assert list(IPPool.objects.order_by("name").values_list("disable", flat=True)) == [False, True]
