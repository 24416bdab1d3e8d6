"""Tenant web access (issue 12): a tenant member logs in to the portal and sees and manages only their tenant's
objects, by the REST API's rules (asked of the same functions); they create, rotate and revoke their own API token.

Two tenants: alice is a member of tenant-a only (not staff, no model permission); tenant-b owns a subnet and a pool.
"""

import csv
import io
import json

import pytest
from django.urls import reverse
from import_export.forms import SelectableFieldsExportForm
from knox.models import AuthToken
from rest_framework.test import APIClient

from spiderweb.ipam import services
from spiderweb.ipam.models import IPPool
from spiderweb.ipam.resources import IPPoolResource
from spiderweb.tenancy.models import Tenant
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db

PASSWORD = "tenant-a-password"
TOKENS = "/admin/tokens/"


@pytest.fixture
def tenants():
    a = services.tenant_create(name="tenant-a")
    b = services.tenant_create(name="tenant-b")
    services.subnet_create(tenant=a, name="a-subnet", spec={"subnet": "10.1.0.0/24", "ips": ["10.1.0.10-10.1.0.99"]})
    services.subnet_create(tenant=b, name="b-subnet", spec={"subnet": "10.2.0.0/24", "ips": ["10.2.0.10-10.2.0.99"]})
    f.pool("a-pool", "10.1.0.0/24", ["10.1.0.10-10.1.0.20"], owner=a)
    f.pool("b-pool", "10.2.0.0/24", ["10.2.0.10-10.2.0.20"], owner=b)
    f.allocate(f.facts("b-web-0", annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["b-pool"]})}))
    return {"a": a, "b": b}


@pytest.fixture
def alice(django_user_model, tenants):
    user = django_user_model.objects.create_user("alice", password=PASSWORD)
    tenants["a"].members.add(user)
    return user


@pytest.fixture
def member_web(client, alice):
    client.force_login(alice)
    return client


def pool_url(name, view="change"):
    return reverse(f"admin:ipam_ippool_{view}", args=[IPPool.objects.get(name=name).pk])


# ---------------------------------------------------------------------------------------------------- logging in


def test_a_tenant_member_logs_in_with_the_admin_login_form(client, alice):
    response = client.post("/admin/login/?next=/admin/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_user_of_no_tenant_is_refused_at_login(client, django_user_model, tenants):
    django_user_model.objects.create_user("nobody", password=PASSWORD)
    response = client.post("/admin/login/?next=/admin/", {"username": "nobody", "password": PASSWORD})
    assert response.status_code == 200
    assert "Please enter the correct username and password" in response.content.decode()
    assert client.get("/admin/").status_code == 302  # back to the login page


def test_a_deactivated_member_is_refused(client, alice):
    alice.is_active = False
    alice.save()
    response = client.post("/admin/login/?next=/admin/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200 and "_auth_user_id" not in client.session


# ------------------------------------------------------------------------------------------------- what they see


def test_member_sees_only_their_tenants_pools_and_subnets(member_web):
    pools = member_web.get(reverse("admin:ipam_ippool_changelist")).content.decode()
    assert "a-pool" in pools and "b-pool" not in pools
    assert "tenant-b" not in pools  # not even in the tenant filter
    subnets = member_web.get(reverse("admin:ipam_subnet_changelist")).content.decode()
    assert "a-subnet" in subnets and "b-subnet" not in subnets


def test_another_tenants_pool_is_a_404_and_own_pool_opens(member_web):
    assert member_web.get(pool_url("a-pool")).status_code == 200
    assert member_web.get(pool_url("b-pool")).status_code == 404
    assert member_web.get(pool_url("b-pool", "delete")).status_code == 404
    assert member_web.get(pool_url("b-pool", "history")).status_code == 404


def test_member_sees_no_allocation_history_or_change_of_another_tenant(member_web):
    for name in ("allocation", "addresshistory", "endpoint"):
        page = member_web.get(reverse(f"admin:ipam_{name}_changelist"))
        assert page.status_code == 200, name
        assert "b-pool" not in page.content.decode() and "b-web-0" not in page.content.decode(), name
    changes = member_web.get(reverse("admin:changelog_objectchange_changelist")).content.decode()
    assert "a-pool" in changes and "b-pool" not in changes and "b-subnet" not in changes


def test_the_change_log_stays_read_only_for_a_member(member_web):
    from spiderweb.changelog.models import ObjectChange

    own = ObjectChange.objects.filter(object_repr="a-pool").first()
    url = reverse("admin:changelog_objectchange_delete", args=[own.pk])
    assert member_web.post(url, {"post": "yes"}).status_code == 403
    assert ObjectChange.objects.filter(pk=own.pk).exists()
    page = member_web.get(reverse("admin:changelog_objectchange_change", args=[own.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()


@pytest.mark.parametrize("page", ["admin:ipam_clustersettings_changelist", "admin:ipam_nodecredential_changelist",
                                  "admin:ipam_coordinator_changelist", "admin:auth_user_changelist",
                                  "admin:auth_group_changelist", "admin:knox_authtoken_changelist",
                                  "admin:tenancy_tenant_changelist", "admin:ipam_podtombstone_changelist",
                                  "admin:ipam_releasedaddress_changelist"])
def test_member_cannot_reach_cluster_pages(member_web, page):
    assert member_web.get(reverse(page)).status_code == 403


def test_the_index_lists_only_what_a_member_may_open(member_web):
    index = member_web.get("/admin/").content.decode()
    assert "/admin/ipam/ippool/" in index
    for hidden in ("clustersettings", "nodecredential", "auth/user", "knox/authtoken", "coordinator"):
        assert f"/admin/{hidden}" not in index and hidden not in index, hidden


def test_search_dashboard_and_explain_stay_inside_the_tenant(member_web):
    found = member_web.get("/admin/search/", {"q": "10.2.0.10"})
    assert "b-pool" not in found.content.decode()
    dashboard = member_web.get("/admin/dashboard/").content.decode()
    assert "a-pool" in dashboard and "b-pool" not in dashboard and "tenant-b" not in dashboard
    form = {"namespace": "default", "name": "web-9", "node": "node-1", "interface": "eth0",
            "pod_annotations": 'ipam.spidernet.io/ippool={"ipv4": ["b-pool"]}'}
    result = member_web.post("/admin/explain/", form).context["result"]
    assert result["ok"] is False and "10.2.0" not in json.dumps(result)


# ----------------------------------------------------------------------------------------------- what they change


def pool_form(**fields):
    return {"name": "a-pool-2", "tenant": "", "ip_version": "", "subnet": "10.1.0.0/24", "ips": "10.1.0.30-10.1.0.40",
            "exclude_ips": "", "gateway": "", "routes": "", "labels": "", "namespace_name": "", "node_name": "",
            "multus_name": "", "pod_affinity": "", "namespace_affinity": "", "node_affinity": "", "vlan": "",
            **fields}


def test_member_creates_a_pool_in_their_tenant(member_web, tenants):
    response = member_web.post(reverse("admin:ipam_ippool_add"), pool_form(tenant=tenants["a"].pk))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert IPPool.objects.get(name="a-pool-2").tenant == tenants["a"]


def test_the_tenant_choice_offers_only_the_members_tenants(member_web, tenants):
    form = member_web.get(reverse("admin:ipam_ippool_add")).context["adminform"].form
    assert list(form.fields["tenant"].queryset) == [tenants["a"]]
    response = member_web.post(reverse("admin:ipam_ippool_add"), pool_form(tenant=tenants["b"].pk))
    assert response.status_code == 200 and "tenant" in response.context["adminform"].form.errors
    assert not IPPool.objects.filter(name="a-pool-2").exists()


def test_a_pool_in_another_tenants_subnet_is_refused_with_the_rest_message(member_web, alice, tenants):
    # Given tenant-b's subnet 10.2.0.0/24
    # When alice creates a pool in it, in her own tenant, from the admin and from the REST API
    page = member_web.post(reverse("admin:ipam_ippool_add"),
                           pool_form(tenant=tenants["a"].pk, subnet="10.2.0.0/24", ips="10.2.0.50-10.2.0.60"))
    api = APIClient()
    api.force_authenticate(alice)
    rest = api.post(reverse("ippool-list"), {"name": "a-pool-2", "tenant": "tenant-a", "subnet": "10.2.0.0/24",
                                             "ips": ["10.2.0.50-10.2.0.60"]}, format="json")
    # Then both refuse it with the same message, and nothing is created
    assert rest.status_code == 400
    message = rest.json()["subnet"][0]
    assert "another tenant" in message
    assert page.status_code == 200
    assert page.context["adminform"].form.errors["subnet"] == [message]
    assert not IPPool.objects.filter(name="a-pool-2").exists()


def test_member_cannot_change_or_delete_another_tenants_pool(member_web):
    b_pool = IPPool.objects.get(name="b-pool")
    response = member_web.post(pool_url("b-pool", "delete"), {"post": "yes"})
    assert response.status_code == 404
    response = member_web.post(reverse("admin:ipam_ippool_changelist"),
                               {"action": "disable_selected", "_selected_action": [b_pool.pk]})
    b_pool.refresh_from_db()
    assert IPPool.objects.filter(pk=b_pool.pk).exists() and b_pool.disable is False


def test_member_disables_their_own_pool_with_the_bulk_action(member_web):
    a_pool = IPPool.objects.get(name="a-pool")
    response = member_web.post(reverse("admin:ipam_ippool_changelist"),
                               {"action": "disable_selected", "_selected_action": [a_pool.pk]})
    assert response.status_code == 302
    a_pool.refresh_from_db()
    assert a_pool.disable is True


# ------------------------------------------------------------------------------------------- import and export


def _export_csv(client) -> str:
    fields = {SelectableFieldsExportForm.create_boolean_field_name(IPPoolResource, name): "on"
              for name in IPPoolResource().get_export_order()}
    response = client.post(reverse("admin:ipam_ippool_export"), {"format": "0", "resource": "0", **fields})
    assert response.status_code == 200
    return response.content.decode()


def _import_csv(client, text: str):
    """Upload `text` as a pool CSV; returns the dry run's result and the confirm form's data."""
    upload = io.BytesIO(text.encode())
    upload.name = "pools.csv"
    preview = client.post(reverse("admin:ipam_ippool_import"), {"format": "0", "resource": "0",
                                                                 "import_file": upload})
    assert preview.status_code == 200
    confirm = preview.context.get("confirm_form")
    return preview.context["result"], (confirm.initial if confirm is not None else None)


def test_member_exports_the_pools_they_see(member_web):
    text = _export_csv(member_web)
    assert "a-pool" in text and "b-pool" not in text


def test_member_imports_a_pool_into_their_tenant(member_web):
    # Given tenant-a's pool exported, then deleted
    text = _export_csv(member_web)
    services.ippool_delete(pool=IPPool.objects.get(name="a-pool"))
    # When alice imports the file
    result, confirm = _import_csv(member_web, text)
    assert not result.has_errors() and not result.has_validation_errors()
    assert member_web.post(reverse("admin:ipam_ippool_process_import"), confirm).status_code == 302
    # Then the pool is back in tenant-a
    assert IPPool.objects.get(name="a-pool").tenant.name == "tenant-a"


def _pools_csv(*rows: tuple[str, str, str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "tenant", "subnet", "ips"])
    writer.writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize(("row", "refusal"), [
    (("b-pool-2", "tenant-b", "10.2.0.0/24", '["10.2.0.50"]'), "you may not add IP pools of tenant tenant-b"),
    (("b-pool", "tenant-b", "10.2.0.0/24", '["10.2.0.10-10.2.0.21"]'),
     "you may not change IP pools of tenant tenant-b"),
    (("a-pool-2", "tenant-a", "10.2.0.0/24", '["10.2.0.50"]'), "another tenant"),
])
def test_member_imports_nothing_outside_their_tenant(member_web, row, refusal):
    # Given a file with one row for her own tenant and one that is not hers to write (another tenant's new pool,
    # another tenant's pool, or a pool of hers inside another tenant's subnet)
    text = _pools_csv(("a-pool-3", "tenant-a", "10.1.0.0/24", '["10.1.0.50"]'), row)
    # When alice imports it
    result, confirm = _import_csv(member_web, text)
    # Then the row is refused with the reason, there is nothing to confirm, and nothing was written
    assert result.has_validation_errors() and confirm is None
    assert [invalid.number for invalid in result.invalid_rows] == [2]
    assert refusal in str(result.invalid_rows[0].error_dict)
    assert not IPPool.objects.filter(name__in=["a-pool-2", "a-pool-3", "b-pool-2"]).exists()
    assert IPPool.objects.get(name="b-pool").ips == ["10.2.0.10-10.2.0.20"]


# ----------------------------------------------------------------------------------------------- their API tokens


def token_client(token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_member_creates_a_token_shown_once_and_it_works_on_the_rest_api(member_web, alice):
    response = member_web.post(TOKENS, {"action": "create"})
    assert response.status_code == 200
    token = response.context["issued"]
    assert token and token in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert all(token not in morsel.value for morsel in response.cookies.values())
    assert all(token not in morsel.value for morsel in member_web.cookies.values())
    # Listed by its first characters only, afterwards
    listing = member_web.get(TOKENS).content.decode()
    assert token[:8] in listing and token not in listing
    # And the REST API takes it, scoped to tenant-a
    pools = token_client(token).get(reverse("ippool-list"))
    assert pools.status_code == 200
    assert [row["name"] for row in pools.json()["results"]] == ["a-pool"]


def test_member_rotates_a_token_the_old_one_stops_working(member_web, alice):
    old = member_web.post(TOKENS, {"action": "create"}).context["issued"]
    key = AuthToken.objects.get(user=alice).token_key
    new = member_web.post(TOKENS, {"action": "rotate", "token_key": key}).context["issued"]
    assert new and new != old
    assert token_client(old).get(reverse("ippool-list")).status_code == 401
    assert token_client(new).get(reverse("ippool-list")).status_code == 200
    assert AuthToken.objects.filter(user=alice).count() == 1


def test_member_revokes_a_token(member_web, alice):
    token = member_web.post(TOKENS, {"action": "create"}).context["issued"]
    key = AuthToken.objects.get(user=alice).token_key
    response = member_web.post(TOKENS, {"action": "revoke", "token_key": key})
    assert response.status_code == 200 and response.context["issued"] is None
    assert token_client(token).get(reverse("ippool-list")).status_code == 401


def test_another_users_token_cannot_be_rotated_or_revoked(member_web, django_user_model):
    bob = django_user_model.objects.create_user("bob")
    Tenant.objects.get(name="tenant-b").members.add(bob)
    AuthToken.objects.create(user=bob)
    key = AuthToken.objects.get(user=bob).token_key
    for action in ("rotate", "revoke"):
        response = member_web.post(TOKENS, {"action": action, "token_key": key})
        assert response.status_code == 400
        assert "No such token of yours" in response.content.decode()
    assert AuthToken.objects.filter(user=bob).count() == 1
    assert key not in member_web.get(TOKENS).content.decode()


def test_an_unknown_token_action_is_a_clear_error(member_web):
    response = member_web.post(TOKENS, {"action": "steal"})
    assert response.status_code == 400
    assert response.context["error"] == "Unknown action 'steal': use one of create, rotate, revoke."
    assert "Unknown action" in response.content.decode()


def test_the_token_page_needs_a_login(client, tenants):
    response = client.get(TOKENS)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
