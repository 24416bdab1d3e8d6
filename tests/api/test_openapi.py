"""The OpenAPI 3 document of the public API: served, valid, warning-free and complete; Swagger UI loads."""

import pytest
from django.urls import reverse
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

PUBLIC_PATHS = {
    "/api/v1/tenants/": {"get", "post"},
    "/api/v1/tenants/{id}/": {"get", "put", "patch", "delete"},
    "/api/v1/subnets/": {"get", "post"},
    "/api/v1/subnets/{id}/": {"get", "put", "patch", "delete"},
    "/api/v1/pools/": {"get", "post"},
    "/api/v1/pools/{id}/": {"get", "put", "patch", "delete"},
    "/api/v1/pools/{id}/utilization/": {"get"},
    "/api/v1/reserved-ips/": {"get", "post"},
    "/api/v1/reserved-ips/{id}/": {"get", "put", "patch", "delete"},
    "/api/v1/endpoints/": {"get"},
    "/api/v1/endpoints/{id}/": {"get"},
    "/api/v1/allocations/": {"get"},
    "/api/v1/allocations/{id}/": {"get"},
    "/api/v1/allocations/{id}/release/": {"post"},
    "/api/v1/address-history/": {"get"},
    "/api/v1/address-history/{id}/": {"get"},
    "/api/v1/changes/": {"get"},
    "/api/v1/changes/{id}/": {"get"},
    "/api/v1/settings/": {"get", "patch"},
    "/api/v1/explain/": {"post"},
    "/api/v1/gc/check/": {"get", "post"},
    "/api/v1/gc/scan/": {"post"},
}


def test_schema_is_served_and_lists_every_public_path_and_no_internal_one(client):
    response = client.get(reverse("schema"), {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {path: set(ops) & {"get", "post", "put", "patch", "delete"} for path, ops in paths.items()} == PUBLIC_PATHS
    assert not [path for path in paths if "internal" in path]


def test_schema_generates_without_warnings_and_validates():
    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)
    assert not GENERATOR_STATS._warn_cache, list(GENERATOR_STATS._warn_cache)
    assert not GENERATOR_STATS._error_cache, list(GENERATOR_STATS._error_cache)
    validate_schema(schema)


def test_schema_documents_the_crd_field_names():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    pool = schema["components"]["schemas"]["IPPoolRequest"]["properties"]
    assert {"ipVersion", "subnet", "ips", "excludeIPs", "gateway", "routes", "podAffinity", "namespaceAffinity",
            "namespaceName", "nodeAffinity", "nodeName", "multusName", "default", "disable"} <= set(pool)


def test_swagger_ui_loads(client):
    response = client.get(reverse("swagger-ui"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger-ui" in response.content


@pytest.mark.parametrize(
    "basename", ["tenant", "subnet", "ippool", "reservedip", "endpoint", "allocation", "addresshistory", "objectchange"]
)
def test_browsable_api_pages_render_for_a_session_user(client, django_user_model, basename):
    client.force_login(django_user_model.objects.create_user("staff", is_staff=True))
    response = client.get(reverse(f"{basename}-list"), HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
