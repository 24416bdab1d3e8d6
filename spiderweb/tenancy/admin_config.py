"""``django.contrib.admin`` with the portal's site (a module of its own: it is imported before the models load)."""

from django.contrib.admin.apps import AdminConfig


class PortalAdminConfig(AdminConfig):
    """Installed instead of ``django.contrib.admin`` so that ``admin.site`` is a
    `spiderweb.tenancy.admin_site.PortalAdminSite`."""

    default_site = "spiderweb.tenancy.admin_site.PortalAdminSite"
