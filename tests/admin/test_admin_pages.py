"""Every admin page renders for a superuser: changelist, add (or a 403 where adding is not allowed) and change."""

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

pytestmark = pytest.mark.django_db

MODELS = sorted(admin.site._registry, key=lambda model: model._meta.label)


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_the_admin_covers_every_spiderweb_model():
    from django.apps import apps

    ours = {m for app in ("ipam", "tenancy", "changelog") for m in apps.get_app_config(app).get_models()}
    assert ours - set(MODELS) == set()


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model._meta.label)
def test_changelist_add_and_change_pages_render(admin_web, superuser, world, model):
    model_admin = admin.site._registry[model]
    obj = model.objects.first()
    assert obj is not None, f"the world fixture must create a {model._meta.label}"

    assert admin_web.get(admin_url(model, "changelist")).status_code == 200
    assert admin_web.get(admin_url(model, "change", obj.pk)).status_code == 200

    request = RequestFactory().get("/")
    request.user = superuser
    expected = 200 if model_admin.has_add_permission(request) else 403
    assert admin_web.get(admin_url(model, "add")).status_code == expected


@pytest.mark.parametrize(
    ("model_label", "query", "shown", "hidden"),
    [
        ("ipam.IPPool", {"q": "pool-1"}, "pool-1", None),
        ("ipam.IPPool", {"ip_version__exact": "6"}, None, "pool-1"),
        ("ipam.Subnet", {"q": "10.1.0.0"}, "subnet-1", None),
        ("ipam.Allocation", {"q": "10.1.0.11"}, "10.1.0.11", "10.1.0.12"),
        ("ipam.AddressHistory", {"q": "web-0"}, "web-0", "web-1"),
        ("changelog.ObjectChange", {"object_type": "ipam.reservedip"}, "reserved-1", "pool-1"),
        ("tenancy.Tenant", {"q": "tenant-a"}, "tenant-a", None),
    ],
)
def test_changelist_search_and_filters(admin_web, world, model_label, query, shown, hidden):
    from django.apps import apps

    response = admin_web.get(admin_url(apps.get_model(model_label), "changelist"), query)
    assert response.status_code == 200
    page = " | ".join(str(row) for row in response.context["cl"].result_list)
    if shown:
        assert shown in page
    if hidden:
        assert hidden not in page


def test_pool_changelist_shows_utilization(admin_web, world):
    # pool-1 has 4 addresses and one live allocation
    response = admin_web.get(admin_url(world["pool"].__class__, "changelist"))
    assert b"25.0%" in response.content


def test_subnet_changelist_shows_allocations_of_its_pools(admin_web, world):
    response = admin_web.get(admin_url(world["subnet"].__class__, "changelist"))
    row = response.context["cl"].result_list[0]
    assert (row.n_pools, row.n_alloc) == (1, 1)
