"""Global search: an address, a CIDR, a pod, a namespace or a name lands on what contains or names it, among the
objects the user may see (the REST API's tenant rules)."""

import pytest
from django.urls import reverse

from spiderweb.ipam import services
from spiderweb.ipam.models import Allocation
from tests.admin.conftest import annotated
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db

SEARCH = "/admin/search/"


def hits(response, section):
    return [obj.name if hasattr(obj, "name") else str(obj) for obj, _ in response.context["rows"][section]]


def test_an_address_finds_its_subnet_pool_allocation_and_past_holders(admin_web, world):
    response = admin_web.get(SEARCH, {"q": "10.1.0.11"})
    assert response.status_code == 200
    assert hits(response, "subnets") == ["subnet-1"]
    assert hits(response, "pools") == ["pool-1"]
    assert [a.address for a, _ in response.context["rows"]["allocations"]] == ["10.1.0.11"]
    content = response.content.decode()
    allocation = Allocation.objects.get(address="10.1.0.11")
    assert reverse("admin:ipam_allocation_change", args=[allocation.pk]) in content
    assert "?address=10.1.0.11" in content  # its history, one click away
    # an address released earlier shows its past holder
    past = admin_web.get(SEARCH, {"q": "10.1.0.10"})
    assert [h.pod_name for h, _ in past.context["rows"]["history"]] == ["web-0"]
    assert past.context["rows"]["allocations"] == []


def test_an_address_outside_every_pool_finds_only_the_subnet_or_nothing(admin_web, world):
    inside_subnet = admin_web.get(SEARCH, {"q": "10.1.0.50"})  # the subnet alone: its page opens
    assert inside_subnet["Location"] == reverse("admin:ipam_subnet_change", args=[world["subnet"].pk])
    nowhere = admin_web.get(SEARCH, {"q": "172.18.40.15"})
    assert nowhere.context["hit_count"] == 0
    assert b"Nothing you may see matches" in nowhere.content


def test_a_reserved_address_finds_its_reservation(admin_web, world):
    response = admin_web.get(SEARCH, {"q": "10.1.0.200"})
    assert hits(response, "reserved") == ["reserved-1"]


def test_a_cidr_finds_overlapping_subnets_pools_and_the_allocations_inside(admin_web, world):
    f.pool("other", "10.2.0.0/24", ["10.2.0.1-10.2.0.9"], owner=world["tenant"])
    response = admin_web.get(SEARCH, {"q": "10.1.0.8/29"})  # host bits allowed in a search: 10.1.0.8-15
    assert response.context["kind"] == "cidr"
    assert hits(response, "pools") == ["pool-1"] and hits(response, "subnets") == ["subnet-1"]
    assert [a.address for a, _ in response.context["rows"]["allocations"]] == ["10.1.0.11"]
    assert admin_web.get(SEARCH, {"q": "10.1.0.0/30"}).context["rows"]["allocations"] == []


def test_a_pod_or_namespace_finds_its_allocation_and_a_single_hit_opens_it(admin_web, world):
    allocation = Allocation.objects.get(address="10.1.0.11")
    single = admin_web.get(SEARCH, {"q": "web-1"})
    assert single.status_code == 302
    assert single["Location"] == reverse("admin:ipam_allocation_change", args=[allocation.pk])
    f.allocate(annotated("pool-1", "db-0"))
    by_namespace = admin_web.get(SEARCH, {"q": "default"})
    assert [a.address for a, _ in by_namespace.context["rows"]["allocations"]] == ["10.1.0.11", "10.1.0.12"]


def test_a_name_finds_pools_subnets_and_tenants(admin_web, world):
    response = admin_web.get(SEARCH, {"q": "1"})
    assert hits(response, "pools") == ["pool-1"] and hits(response, "subnets") == ["subnet-1"]
    assert hits(response, "reserved") == ["reserved-1"]
    assert admin_web.get(SEARCH, {"q": "tenant-a"})["Location"] == reverse(
        "admin:tenancy_tenant_change", args=[world["tenant"].pk])


def test_empty_and_unreadable_queries_get_a_page_not_an_error(admin_web, world):
    assert b"Type an address" in admin_web.get(SEARCH).content
    for query in ("10.1.0.0/99", "10.1.0.300", "'; drop table", "::ffff:zz"):
        response = admin_web.get(SEARCH, {"q": query})
        assert response.status_code == 200, query
        assert response.context["hit_count"] == 0, query


def test_search_shows_only_what_the_user_may_see(client, django_user_model, world):
    # given a staff member of tenant-b only, without view permissions on other tenants' objects
    tenant_b = services.tenant_create(name="tenant-b")
    f.pool("pool-b", "10.1.0.0/24", ["10.1.0.60-10.1.0.70"], owner=tenant_b)
    user = django_user_model.objects.create_user("bob", is_staff=True)
    tenant_b.members.add(user)
    client.force_login(user)
    # when they search an address of tenant-a's pool and one of their own
    theirs = client.get(SEARCH, {"q": "10.1.0.65"})
    others = client.get(SEARCH, {"q": "10.1.0.11"})
    # then they find their pool and nothing of tenant-a
    assert theirs.status_code == 302 and theirs["Location"].endswith(f"/{f.pool_get('pool-b').pk}/change/")
    assert others.context["hit_count"] == 0


def test_search_needs_a_staff_login(client, django_user_model, world):
    assert client.get(SEARCH, {"q": "10.1.0.11"}).status_code == 302
    client.force_login(django_user_model.objects.create_user("alice"))
    response = client.get(SEARCH, {"q": "10.1.0.11"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_every_admin_page_has_the_search_box_and_the_dashboard_link(admin_web, world):
    content = admin_web.get(reverse("admin:index")).content.decode()
    assert 'action="/admin/search/"' in content and 'href="/admin/dashboard/"' in content
