"""The API tests' users and tenants (``tests/api/conftest.py``) for the metrics tests."""

from tests.api.conftest import api, member, outsider, staff, tenant_a, tenant_b  # noqa: F401
