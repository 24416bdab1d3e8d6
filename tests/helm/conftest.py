"""The API tests' tenants for the chart tests that start the portal."""

from tests.api.conftest import tenant_a  # noqa: F401
