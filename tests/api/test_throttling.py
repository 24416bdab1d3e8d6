"""Request rates (issue 10, Low 9): the public API per user and per anonymous client, the internal API per node,
the admin login per client address. Over the rate: 429 with Retry-After, and other callers are unaffected."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from spiderweb.ipam import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    def set_rates(**rates):
        monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"anon": "100/minute", "user": "100/minute",
                                                                    "node": "100/minute", "login": "100/minute",
                                                                    **rates})
    return set_rates


def test_a_user_over_the_rate_gets_429_and_others_do_not(api, staff, member, rates):
    rates(user="3/minute")
    client = api(staff)
    answers = [client.get(reverse("tenant-list")).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    assert "Retry-After" in client.get(reverse("tenant-list"))
    assert api(member).get(reverse("tenant-list")).status_code == 200


def node_client(node_name):
    _, token = services.node_credential_issue(node_name=node_name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_the_internal_api_is_throttled_per_node(rates):
    rates(node="2/minute")
    noisy, quiet = node_client("node-1"), node_client("node-2")
    query = {"podNamespace": "default", "podName": "nobody"}
    url = reverse("internal-workloadendpoint")
    answers = [noisy.get(url, query).status_code for _ in range(3)]
    assert answers == [404, 404, 429]
    assert quiet.get(url, query).status_code == 404


def test_admin_login_attempts_are_throttled_per_client(client, django_user_model, rates):
    rates(login="3/minute")
    django_user_model.objects.create_user("admin", password="right-password-1", is_staff=True)
    url = reverse("admin:login")
    answers = [client.post(url, {"username": "admin", "password": f"guess-{i}"}).status_code for i in range(4)]
    assert answers == [200, 200, 200, 429]
    # The right password does not get past the throttle either, until the window passes
    assert client.post(url, {"username": "admin", "password": "right-password-1"}).status_code == 429
    assert client.get(url).status_code == 200
