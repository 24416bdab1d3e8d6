"""The admin tests' world (a tenant, subnet, pool with one live and one released address, a reservation) and a
logged-in superuser, shared with the portal pages."""

from tests.admin.conftest import admin_web, superuser, world  # noqa: F401 (pytest fixtures)
