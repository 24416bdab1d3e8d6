"""Inheritable CRUD and permission tests (NetBox's APIViewTestCases, pytest style).

A resource test class inherits `ResourceTests` (or `TenantOwnedResourceTests`) and says how to make an object in a
tenant, what a create body and a valid PATCH look like, and how to check the PATCH landed. Every resource then gets
the same checks: staff CRUD with change-log records, tenant scoping (404 for other tenants' objects, 400 when
creating into a tenant you are not a member of), anonymous refusal and immutable names.
"""

import uuid

from django.urls import reverse

from spiderweb.changelog.models import ObjectChange


class ResourceTests:
    """The tests every resource gets. Subclasses set `basename`, `model`, `object_type` and the hooks below."""

    basename = ""
    model = None
    object_type = ""

    # ---------------------------------------------------------------------------------------------------- hooks

    def make(self, tenant, index: int):
        """An object owned by `tenant`; `index` (1..99) keeps objects of one test apart."""
        raise NotImplementedError

    def create_body(self, tenant) -> dict:
        """A valid POST body creating a new object in `tenant`."""
        raise NotImplementedError

    def patch_body(self, obj) -> dict:
        raise NotImplementedError

    def assert_patched(self, obj) -> None:
        """`obj` (re-read from the database) shows the PATCH of `patch_body`."""
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------------- helpers

    def list_url(self):
        return reverse(f"{self.basename}-list")

    def detail_url(self, obj):
        return reverse(f"{self.basename}-detail", args=[obj.pk])

    def change(self, obj, action) -> ObjectChange:
        return ObjectChange.objects.get(object_type=self.object_type, object_id=obj.pk, action=action)

    @staticmethod
    def names(response) -> list[str]:
        return sorted(item["name"] for item in response.json()["results"])

    # ---------------------------------------------------------------------------------------------------- staff

    def test_staff_lists_every_tenants_objects(self, api, staff, tenant_a, tenant_b):
        # Given one object in each tenant
        a, b = self.make(tenant_a, 1), self.make(tenant_b, 2)
        # When staff lists them
        response = api(staff).get(self.list_url())
        # Then both are there, with the paginated envelope
        assert response.status_code == 200
        assert {a.name, b.name} <= set(self.names(response))
        assert response.json()["count"] == self.model.objects.count()

    def test_staff_retrieves_one(self, api, staff, tenant_a):
        obj = self.make(tenant_a, 1)
        response = api(staff).get(self.detail_url(obj))
        assert response.status_code == 200
        assert response.json()["id"] == obj.pk
        assert response.json()["name"] == obj.name

    def test_staff_creates_and_the_change_log_names_them(self, api, staff, tenant_a):
        body = self.create_body(tenant_a)
        response = api(staff).post(self.list_url(), body, format="json")
        assert response.status_code == 201, response.json()
        obj = self.model.objects.get(name=body["name"])
        assert response.json()["id"] == obj.pk
        change = self.change(obj, ObjectChange.Action.CREATE)
        assert change.user_name == "staff"
        assert change.request_id == uuid.UUID(response["X-Request-ID"])
        assert change.prechange_data is None
        assert change.postchange_data["name"] == body["name"]

    def test_staff_patches_and_the_change_log_keeps_before_and_after(self, api, staff, tenant_a):
        obj = self.make(tenant_a, 1)
        response = api(staff).patch(self.detail_url(obj), self.patch_body(obj), format="json")
        assert response.status_code == 200, response.json()
        obj.refresh_from_db()
        self.assert_patched(obj)
        change = self.change(obj, ObjectChange.Action.UPDATE)
        assert change.user_name == "staff"
        assert change.diff, "an update must record what changed"
        assert change.prechange_data != change.postchange_data

    def test_put_of_the_own_representation_succeeds(self, api, staff, tenant_a):
        # Given the object as the API shows it
        obj = self.make(tenant_a, 1)
        client = api(staff)
        shown = client.get(self.detail_url(obj)).json()
        # When it is PUT back unchanged
        response = client.put(self.detail_url(obj), shown, format="json")
        # Then it is accepted and nothing changed
        assert response.status_code == 200, response.json()
        assert response.json()["name"] == obj.name

    def test_staff_deletes_and_the_change_log_keeps_the_last_state(self, api, staff, tenant_a):
        obj = self.make(tenant_a, 1)
        response = api(staff).delete(self.detail_url(obj))
        assert response.status_code == 204
        assert not self.model.objects.filter(pk=obj.pk).exists()
        change = self.change(obj, ObjectChange.Action.DELETE)
        assert change.user_name == "staff"
        assert change.prechange_data["name"] == obj.name
        assert change.postchange_data is None

    def test_session_user_is_the_change_log_actor(self, staff, tenant_a, client):
        # Given staff logged in with a session (the browsable API, the admin's own browser)
        client.force_login(staff)
        body = self.create_body(tenant_a)
        # When they create through the API
        response = client.post(self.list_url(), body, content_type="application/json")
        # Then the change log names them and carries the request id the response returned
        assert response.status_code == 201, response.json()
        change = self.change(self.model.objects.get(name=body["name"]), ObjectChange.Action.CREATE)
        assert (change.user_name, change.user_id) == ("staff", staff.pk)
        assert str(change.request_id) == response["X-Request-ID"]

    # ------------------------------------------------------------------------------------------------ immutable

    def test_rename_is_rejected(self, api, staff, tenant_a):
        obj = self.make(tenant_a, 1)
        client = api(staff)
        patch = client.patch(self.detail_url(obj), {"name": "renamed"}, format="json")
        shown = client.get(self.detail_url(obj)).json()
        put = client.put(self.detail_url(obj), shown | {"name": "renamed"}, format="json")
        for response in (patch, put):
            assert response.status_code == 400
            assert "name is immutable" in response.json()["name"][0]
        obj.refresh_from_db()
        assert obj.name != "renamed"

    # -------------------------------------------------------------------------------------------------- tenancy

    def test_member_lists_only_their_tenants_objects(self, api, member, tenant_a, tenant_b):
        own, _ = self.make(tenant_a, 1), self.make(tenant_b, 2)
        response = api(member).get(self.list_url())
        assert response.status_code == 200
        assert self.names(response) == [own.name]

    def test_non_member_gets_404_for_another_tenants_object(self, api, outsider, tenant_a):
        obj = self.make(tenant_a, 1)
        client = api(outsider)
        assert client.get(self.detail_url(obj)).status_code == 404
        assert client.patch(self.detail_url(obj), self.patch_body(obj), format="json").status_code == 404
        assert client.delete(self.detail_url(obj)).status_code == 404
        assert self.model.objects.filter(pk=obj.pk).exists()

    def test_member_creates_in_their_tenant(self, api, member, tenant_a):
        body = self.create_body(tenant_a)
        response = api(member).post(self.list_url(), body, format="json")
        assert response.status_code == 201, response.json()
        assert self.change(self.model.objects.get(name=body["name"]), ObjectChange.Action.CREATE).user_name == "alice"

    def test_member_cannot_create_into_a_foreign_tenant(self, api, member, tenant_b):
        body = self.create_body(tenant_b)
        response = api(member).post(self.list_url(), body, format="json")
        assert response.status_code == 400
        assert response.json()["tenant"] == ["Tenant tenant-b does not exist or you are not a member of it."]
        assert not self.model.objects.filter(name=body["name"]).exists()

    # ------------------------------------------------------------------------------------------------ anonymous

    def test_anonymous_is_refused(self, api, tenant_a):
        obj = self.make(tenant_a, 1)
        client = api()
        assert client.get(self.list_url()).status_code == 401
        assert client.get(self.detail_url(obj)).status_code == 401
        assert client.post(self.list_url(), self.create_body(tenant_a), format="json").status_code == 401
        assert client.delete(self.detail_url(obj)).status_code == 401
        assert self.model.objects.filter(pk=obj.pk).exists()


class TenantOwnedResourceTests(ResourceTests):
    """Objects that belong to a tenant (subnets, pools, reserved IPs): the tenant cannot change after create."""

    def test_tenant_is_immutable(self, api, staff, tenant_a, tenant_b):
        obj = self.make(tenant_a, 1)
        response = api(staff).patch(self.detail_url(obj), {"tenant": tenant_b.name}, format="json")
        assert response.status_code == 400
        assert "tenant is immutable" in response.json()["tenant"][0]
        obj.refresh_from_db()
        assert obj.tenant == tenant_a

    def test_filter_by_tenant(self, api, staff, tenant_a, tenant_b):
        own, _ = self.make(tenant_a, 1), self.make(tenant_b, 2)
        response = api(staff).get(self.list_url(), {"tenant": tenant_a.name})
        assert self.names(response) == [own.name]
