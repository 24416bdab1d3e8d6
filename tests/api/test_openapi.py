"""The OpenAPI 3 document of the public API: served, valid, warning-free and complete; Swagger UI loads."""

import re

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
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
    "/api/v1/auth/token/": {"post"},
    "/api/v1/auth/token/rotate/": {"post"},
    "/api/v1/auth/token/logout/": {"post"},
    "/api/v1/auth/token/logout-all/": {"post"},
    "/api/v1/gc/check/": {"get", "post"},
    "/api/v1/gc/scan/": {"post"},
}


@pytest.fixture
def user_client(client, django_user_model):
    """A logged-in user with no tenant and no permission: the schema is the same for everyone."""
    client.force_login(django_user_model.objects.create_user("reader"))
    return client


def test_schema_is_served_and_lists_every_public_path_and_no_internal_one(user_client):
    response = user_client.get(reverse("schema"), {"format": "json"})
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


def test_swagger_ui_loads(user_client):
    response = user_client.get(reverse("swagger-ui"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger-ui" in response.content


def test_swagger_ui_loads_only_the_projects_own_static_files(user_client):
    # Given a logged-in user, when Swagger UI is served
    html = user_client.get(reverse("swagger-ui")).content.decode()
    # then every script, stylesheet and icon it loads is one of our static files (works air-gapped, no CDN)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(url.endswith("swagger-ui-bundle.js") for url in sources), sources
    static_url = "/" + settings.STATIC_URL.lstrip("/")
    for url in sources:
        assert url.startswith(static_url), url
        assert finders.find(url.split("?")[0].removeprefix(static_url)), f"{url} is not one of our static files"
    assert "cdn." not in html and "unpkg" not in html and "://" not in html.replace("http://testserver", "")


def test_schema_and_swagger_ui_need_a_login(client):
    # Given no session and no token
    # when the schema is asked for, then it is refused; Swagger UI sends the browser to the login page
    assert client.get(reverse("schema"), {"format": "json"}).status_code in (401, 403)
    response = client.get(reverse("swagger-ui"))
    assert response.status_code == 302 and response["Location"].startswith(settings.LOGIN_URL)


@pytest.mark.parametrize(
    "basename", ["tenant", "subnet", "ippool", "reservedip", "endpoint", "allocation", "addresshistory", "objectchange"]
)
def test_browsable_api_pages_render_for_a_session_user(client, django_user_model, basename):
    client.force_login(django_user_model.objects.create_user("staff", is_staff=True))
    response = client.get(reverse(f"{basename}-list"), HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
