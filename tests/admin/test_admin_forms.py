"""Admin writes go through the services: rule violations show on the form, refused deletes keep the object and say
why, and every change lands in the change log with the admin user as the actor."""

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from spiderweb.changelog.models import ObjectChange
from spiderweb.ipam import services
from spiderweb.ipam.models import AddressHistory, Allocation, IPPool, NodeCredential, ReservedIP, Subnet
from spiderweb.tenancy.models import Tenant

pytestmark = pytest.mark.django_db

POOL_ADD = reverse("admin:ipam_ippool_add")
NO_INLINE_ROWS = {
    "allocations-TOTAL_FORMS": "0",
    "allocations-INITIAL_FORMS": "0",
    "allocations-MIN_NUM_FORMS": "0",
    "allocations-MAX_NUM_FORMS": "0",
}


def pool_form(tenant, **fields):
    """The add form of a pool as a browser would submit it (unset booleans are absent)."""
    data = {
        "name": "p-admin", "tenant": tenant.pk, "labels": "{}", "ip_version": "", "subnet": "10.9.0.0/24",
        "ips": "10.9.0.10-10.9.0.20", "exclude_ips": "", "gateway": "", "routes": "[]", "pod_affinity": "",
        "namespace_affinity": "", "namespace_name": "", "node_affinity": "", "node_name": "", "multus_name": "",
        **NO_INLINE_ROWS,
    }
    return data | fields


def form_errors(response) -> dict:
    assert response.status_code == 200, "a refused form is shown again, not redirected"
    form = response.context["adminform"].form
    return {field: list(messages) for field, messages in form.errors.items()}


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --------------------------------------------------------------------------------------------------- add/change


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"subnet": "10.9.1.0/16"}, "subnet", '"10.9.1.0/16" is not canonical, use "10.9.0.0/16"'),
        ({"subnet": "10.9.0.0/33"}, "subnet", "'10.9.0.0/33' is not a valid IP CIDR"),
        ({"ips": "10.8.0.1"}, "ips", "10.8.0.1 is outside subnet 10.9.0.0/24."),
        ({"gateway": "10.9.0.10"}, "gateway", "gateway 10.9.0.10 is one of the pool's IPs"),
        ({"routes": '[{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}]'}, "routes", "is the default route"),
        ({"ip_version": "6"}, "subnet", "'10.9.0.0/24' is an IPv4 CIDR, expected IPv6"),
    ],
    ids=["non-canonical", "bad-prefix", "ips-outside", "gateway-in-ips", "default-route", "family-mismatch"],
)
def test_an_invalid_pool_shows_the_error_on_its_field(admin_web, world, fields, field, text):
    response = admin_web.post(POOL_ADD, pool_form(world["tenant"], **fields))
    errors = form_errors(response)
    assert any(text in message for message in errors[field]), errors
    assert not IPPool.objects.filter(name="p-admin").exists()


def test_a_pool_overlapping_another_pool_shows_the_error(admin_web, world):
    response = admin_web.post(POOL_ADD, pool_form(world["tenant"], subnet="10.1.0.0/24", ips="10.1.0.12-10.1.0.20"))
    assert "10.1.0.12-10.1.0.13 already belong to IPPool pool-1." in form_errors(response)["ips"]


def test_a_valid_pool_is_created_through_the_service_and_logged(admin_web, world, superuser):
    response = admin_web.post(POOL_ADD, pool_form(world["tenant"], ips="10.9.0.12\n10.9.0.10, 10.9.0.11"))
    assert response.status_code == 302
    pool = IPPool.objects.get(name="p-admin")
    assert (pool.ip_version, pool.ips) == (4, ["10.9.0.10-10.9.0.12"])  # derived and merged like the webhook
    assert pool.labels["ipam.spidernet.io/ippool-cidr"] == "10-9-0-0-24"
    change = ObjectChange.objects.get(object_type="ipam.ippool", object_id=pool.pk, action="create")
    assert (change.user_name, change.user_id) == ("root", superuser.pk)


def test_changing_a_pool_cannot_rename_it_and_is_logged(admin_web, world):
    pool = world["pool"]
    page = admin_web.get(reverse("admin:ipam_ippool_change", args=[pool.pk]))
    assert {"name", "tenant"} & set(page.context["adminform"].form.fields) == set()
    data = pool_form(world["tenant"], name="renamed", subnet="10.1.0.0/24", ips="10.1.0.10-10.1.0.13",
                     node_name="node-1\nnode-2")
    response = admin_web.post(reverse("admin:ipam_ippool_change", args=[pool.pk]), data)
    assert response.status_code == 302
    pool.refresh_from_db()
    assert pool.name == "pool-1"
    assert pool.node_name == ["node-1", "node-2"]
    change = ObjectChange.objects.get(object_type="ipam.ippool", object_id=pool.pk, action="update")
    assert change.diff["node_name"] == [[], ["node-1", "node-2"]]


def test_shrinking_a_pool_below_an_allocated_address_shows_the_error(admin_web, world):
    pool = world["pool"]
    data = pool_form(world["tenant"], subnet="10.1.0.0/24", ips="10.1.0.12-10.1.0.13")
    response = admin_web.post(reverse("admin:ipam_ippool_change", args=[pool.pk]), data)
    assert "cannot remove allocated addresses 10.1.0.11 from the pool." in form_errors(response)["ips"]


def test_an_invalid_subnet_shows_the_error(admin_web, world):
    data = {"name": "s2", "tenant": world["tenant"].pk, "labels": "{}", "ip_version": "", "subnet": "10.1.0.0/16",
            "ips": "", "exclude_ips": "", "gateway": "", "routes": "[]"}
    response = admin_web.post(reverse("admin:ipam_subnet_add"), data)
    assert "10.1.0.0/16 overlaps SpiderSubnet subnet-1 (10.1.0.0/24)." in form_errors(response)["subnet"]
    assert not Subnet.objects.filter(name="s2").exists()


def test_a_reservation_is_typed_one_range_per_line(admin_web, world):
    data = {"name": "r2", "tenant": world["tenant"].pk, "labels": "{}", "ip_version": "",
            "ips": "10.1.0.201\n10.1.0.202"}
    response = admin_web.post(reverse("admin:ipam_reservedip_add"), data)
    assert response.status_code == 302
    reserved = ReservedIP.objects.get(name="r2")
    assert (reserved.ip_version, reserved.ips) == (4, ["10.1.0.201-10.1.0.202"])


def test_an_invalid_reservation_shows_the_error(admin_web, world):
    data = {"name": "r2", "tenant": world["tenant"].pk, "labels": "{}", "ip_version": "", "ips": "10.1.0.300"}
    response = admin_web.post(reverse("admin:ipam_reservedip_add"), data)
    assert "'10.1.0.300' is not a valid IP address" in form_errors(response)["ips"]


# ------------------------------------------------------------------------------------------------------ delete


def test_deleting_a_pool_with_allocations_shows_the_error_and_keeps_it(admin_web, world):
    pool = world["pool"]
    response = admin_web.post(reverse("admin:ipam_ippool_delete", args=[pool.pk]), {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse("admin:ipam_ippool_change", args=[pool.pk])
    assert "pool-1 was not deleted: IPPool pool-1 still holds 1 allocations: 10.1.0.11 (default/web-1, eth0)" in (
        messages_of(response)
    )
    assert IPPool.objects.filter(pk=pool.pk).exists()
    assert not ObjectChange.objects.filter(object_type="ipam.ippool", action="delete").exists()
    assert not LogEntry.objects.filter(object_id=str(pool.pk), action_flag=3).exists()


def test_deleting_an_empty_pool_goes_through_the_service(admin_web, world):
    pool = services.ippool_create(tenant=world["tenant"], name="empty", spec={"subnet": "10.9.0.0/24"})
    confirm = admin_web.get(reverse("admin:ipam_ippool_delete", args=[pool.pk]))
    assert confirm.status_code == 200
    response = admin_web.post(reverse("admin:ipam_ippool_delete", args=[pool.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not IPPool.objects.filter(pk=pool.pk).exists()
    assert ObjectChange.objects.get(object_type="ipam.ippool", object_id=pool.pk, action="delete").user_name == "root"


def test_bulk_delete_keeps_the_pools_the_service_refuses(admin_web, world):
    empty = services.ippool_create(tenant=world["tenant"], name="empty", spec={"subnet": "10.9.0.0/24"})
    data = {"action": "delete_selected", "_selected_action": [world["pool"].pk, empty.pk], "post": "yes"}
    response = admin_web.post(reverse("admin:ipam_ippool_changelist"), data, follow=True)
    assert response.status_code == 200
    assert list(IPPool.objects.values_list("name", flat=True)) == ["pool-1"]
    assert any("pool-1 was not deleted" in m for m in messages_of(response))


def test_deleting_a_subnet_that_controls_pools_shows_the_error(admin_web, world):
    subnet = world["subnet"]
    response = admin_web.post(reverse("admin:ipam_subnet_delete", args=[subnet.pk]), {"post": "yes"}, follow=True)
    assert "subnet-1 was not deleted: SpiderSubnet subnet-1 still controls IPPools pool-1" in messages_of(response)
    assert Subnet.objects.filter(pk=subnet.pk).exists()


def test_deleting_a_tenant_that_owns_objects_shows_the_error(admin_web, world):
    tenant = world["tenant"]
    response = admin_web.post(reverse("admin:tenancy_tenant_delete", args=[tenant.pk]), {"post": "yes"}, follow=True)
    assert any(m.startswith("tenant-a was not deleted: tenant tenant-a still owns") for m in messages_of(response))
    assert Tenant.objects.filter(pk=tenant.pk).exists()


# ----------------------------------------------------------------------------------------------------- tenants


def test_tenant_create_and_membership_changes_are_logged(admin_web, superuser):
    response = admin_web.post(reverse("admin:tenancy_tenant_add"), {"name": "t2", "description": "new"})
    assert response.status_code == 302
    tenant = Tenant.objects.get(name="t2")
    assert ObjectChange.objects.get(object_type="tenancy.tenant", object_id=tenant.pk, action="create").user_name == (
        "root"
    )
    response = admin_web.post(reverse("admin:tenancy_tenant_change", args=[tenant.pk]),
                              {"description": "new", "members": [superuser.pk]})
    assert response.status_code == 302
    change = ObjectChange.objects.get(object_type="tenancy.tenant", object_id=tenant.pk, message="members changed")
    assert change.diff["members"] == [[], [superuser.pk]]


def test_tenant_added_with_members_is_created_with_them(admin_web, superuser):
    # Given the Add form with a member selected (issue 10: a 500 "instance is on database None")
    response = admin_web.post(reverse("admin:tenancy_tenant_add"),
                              {"name": "t3", "description": "", "members": [superuser.pk]})
    # Then the tenant is created with its member
    assert response.status_code == 302, response.content[:2000]
    tenant = Tenant.objects.get(name="t3")
    assert list(tenant.members.all()) == [superuser]
    assert ObjectChange.objects.filter(object_type="tenancy.tenant", object_id=tenant.pk, action="create").exists()


# ------------------------------------------------------------------------------------------ allocations, nodes


def test_release_action_frees_the_address_and_records_it_in_the_history(admin_web, world):
    live = Allocation.objects.get()
    data = {"action": "release_selected", "_selected_action": [live.pk]}
    response = admin_web.post(reverse("admin:ipam_allocation_changelist"), data, follow=True)
    assert response.status_code == 200
    assert "Released 1 address(es): 10.1.0.11" in messages_of(response)
    assert not Allocation.objects.exists()
    history = AddressHistory.objects.get(address="10.1.0.11")
    assert (history.pod_name, history.release_reason) == ("web-1", "admin:root")


def test_release_action_is_not_offered_without_the_change_permission(client, django_user_model, world):
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_allocation"))
    client.force_login(viewer)
    response = client.get(reverse("admin:ipam_allocation_changelist"))
    assert response.status_code == 200
    assert b"release_selected" not in response.content
    response = client.post(reverse("admin:ipam_allocation_changelist"),
                           {"action": "release_selected", "_selected_action": [Allocation.objects.get().pk]})
    assert Allocation.objects.count() == 1


def _shown_tokens(response) -> list[str]:
    return re.findall(r'<code class="node-token">([^<]+)</code>', response.content.decode())


def _assert_token_only_in_the_page(response, token):
    assert not [m for m in messages_of(response) if token in m]
    assert not [c for c in response.cookies.values() if token in c.value]
    session = response.wsgi_request.session
    session.save()
    assert token not in str(dict(session.items()))
    assert "no-store" in response["Cache-Control"]


def test_issuing_a_node_credential_shows_a_working_token_once_never_in_a_cookie(admin_web):
    # Given the admin, when a node credential is added
    response = admin_web.post(reverse("admin:ipam_nodecredential_add"), {"node_name": "node-7"})
    # then the token is in this response's page only: no message, cookie, session or cache holds it
    assert response.status_code == 200
    [token] = _shown_tokens(response)
    _assert_token_only_in_the_page(response, token)
    assert services.node_credential_authenticate(token).node_name == "node-7"
    assert token not in NodeCredential.objects.get(node_name="node-7").token_hash
    # and the next page does not show it again
    assert token not in admin_web.get(reverse("admin:ipam_nodecredential_changelist")).content.decode()


def test_rotating_node_tokens_shows_the_new_ones_once_never_in_a_cookie(admin_web):
    services.node_credential_issue(node_name="node-8", created_by=None)
    credential = NodeCredential.objects.get(node_name="node-8")
    response = admin_web.post(reverse("admin:ipam_nodecredential_changelist"),
                              {"action": "rotate_tokens", "_selected_action": [credential.pk]})
    assert response.status_code == 200
    [token] = _shown_tokens(response)
    _assert_token_only_in_the_page(response, token)
    assert services.node_credential_authenticate(token).node_name == "node-8"


def test_deleting_a_tenant_held_by_a_coordinator_shows_the_error(admin_web):
    from tests.ipam import factories

    tenant = services.tenant_create(name="t-coord")
    factories.coordinator(factories.coordinator_document(), owner=tenant)
    response = admin_web.post(reverse("admin:tenancy_tenant_delete", args=[tenant.pk]), {"post": "yes"}, follow=True)
    assert "t-coord was not deleted: tenant t-coord still owns coordinator default" in messages_of(response)
    assert Tenant.objects.filter(pk=tenant.pk).exists()


def test_cluster_settings_cannot_switch_both_families_off(admin_web, world):
    from spiderweb.ipam.models import ClusterSettings

    response = admin_web.post(reverse("admin:ipam_clustersettings_change", args=[1]),
                              {"cluster_subnet_default_flexible_ip_number": "1"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert "At least one of enableIPv4 and enableIPv6 must be on." in errors
    assert ClusterSettings.load().enable_ipv4 is True
