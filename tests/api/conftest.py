"""Users, tenants and API clients shared by the REST API tests.

Two tenants; `staff` sees everything, `member` belongs to tenant-a only, `outsider` to tenant-b only.
`api(user)` returns a client authenticated with the user's DRF token (`api()` is anonymous).
"""

import pytest
from knox.models import AuthToken
from rest_framework.test import APIClient

from spiderweb.tenancy.models import Tenant


@pytest.fixture
def tenant_a():
    return Tenant.objects.create(name="tenant-a")


@pytest.fixture
def tenant_b():
    return Tenant.objects.create(name="tenant-b")


@pytest.fixture
def staff(django_user_model):
    """A staff user holding every permission of the tenancy, IPAM and change-log models (is_staff alone grants
    nothing: see `viewer`)."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("staff", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["tenancy", "ipam", "changelog"]))
    return user


@pytest.fixture
def viewer(django_user_model):
    """A staff user with only the view permissions of the tenancy, IPAM and change-log models."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        content_type__app_label__in=["tenancy", "ipam", "changelog"], codename__startswith="view_"))
    return user


@pytest.fixture
def bare_staff(django_user_model):
    """A staff user without any permission."""
    return django_user_model.objects.create_user("bare", is_staff=True)


@pytest.fixture
def member(django_user_model, tenant_a):
    user = django_user_model.objects.create_user("alice")
    tenant_a.members.add(user)
    return user


@pytest.fixture
def outsider(django_user_model, tenant_b):
    user = django_user_model.objects.create_user("bob")
    tenant_b.members.add(user)
    return user


@pytest.fixture
def api():
    def client_for(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            _, token = AuthToken.objects.create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client

    return client_for
