"""The admin site, opened to tenant members: staff and members of a tenant log in; nobody else does.

Django's stock site admits staff only. Here membership of a tenant is enough to enter; what a member then sees
and changes is decided page by page by the same rules the REST API uses (`tenant_object_permission` and the
scoped querysets of `spiderweb.ipam.selectors`), so entering grants nothing by itself.
"""

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from spiderweb.tenancy.selectors import tenant_ids_of_member


def may_enter_portal(user) -> bool:
    """An active user who is staff or a member of at least one tenant."""
    if not (user and user.is_authenticated and user.is_active):
        return False
    return bool(user.is_staff or tenant_ids_of_member(user).exists())


class PortalAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form with the portal's entry rule instead of "staff only"."""

    def confirm_login_allowed(self, user):
        if not may_enter_portal(user):
            raise ValidationError(self.error_messages["invalid_login"], code="invalid_login",
                                  params={"username": self.username_field.verbose_name})


class PortalAdminSite(admin.AdminSite):
    login_form = PortalAuthenticationForm

    def has_permission(self, request):
        return may_enter_portal(request.user)
