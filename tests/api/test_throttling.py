"""Request rates (issue 10, Low 9): the public API per user and per anonymous client, the internal API per node,
the admin login per client address. Over the rate: 429 with Retry-After, and other callers are unaffected."""

import urllib.error
import urllib.request

import pytest
import redis
from django.urls import reverse
from knox.models import AuthToken
from rest_framework import throttling
from rest_framework.test import APIClient

from spiderweb.ipam import services
from spiderweb.ipam.api import throttles
from tests import live

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


def test_the_rates_are_not_enforced_while_the_counters_cannot_be_read(api, staff, rates, settings, caplog,
                                                                     monkeypatch):
    # Given a rate of 2 a minute and counters in a Redis that does not answer
    rates(user="2/minute")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0", "OPTIONS": {"socket_connect_timeout": 0.5}}}
    monkeypatch.setattr(throttles, "_cache_down", {"logged_at": float("-inf"), "retry_at": float("-inf")})
    tried = []
    real_allow = throttling.SimpleRateThrottle.allow_request
    monkeypatch.setattr(throttling.SimpleRateThrottle, "allow_request",
                        lambda self, *args: tried.append(1) or real_allow(self, *args))
    # When a user makes four requests
    answers = [api(staff).get(reverse("tenant-list")).status_code]
    asked = len(tried)
    answers += [api(staff).get(reverse("tenant-list")).status_code for _ in range(3)]
    # Then all are answered, the throttles asked the cache for the first only (not again for CACHE_RETRY_INTERVAL),
    # and the log says the rates are not enforced, once
    assert answers == [200, 200, 200, 200]
    assert asked and len(tried) == asked
    assert caplog.text.count("request rates not enforced") == 1
    # And once the interval has passed, the cache is asked again
    monkeypatch.setitem(throttles._cache_down, "retry_at", float("-inf"))
    assert api(staff).get(reverse("tenant-list")).status_code == 200
    assert len(tried) == 2 * asked


def _get_status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.django_db(transaction=True)
def test_the_portal_processes_count_in_one_redis(staff, tmp_path, settings):
    # Given the portal under gunicorn with two worker processes, a rate of 3 a minute and SPIDERWEB_CACHE_URL
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs the Redis broker")
    token = AuthToken.objects.create(user=staff)[1]
    env = live.live_env()
    shared = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    shared.flushdb()
    portal = live.portal_start(tmp_path, env | {"SPIDERWEB_CACHE_URL": env["CELERY_BROKER_URL"],
                                                "SPIDERWEB_THROTTLE_USER": "3/minute"}, workers=2)
    try:
        # When the user makes six requests, each on a connection of its own (any worker may take it)
        answers = [_get_status(f"{portal.url}{reverse('tenant-list')}", token) for _ in range(6)]
        # Then three are answered, whichever process took them, and the counter is in that Redis
        assert answers == [200, 200, 200, 429, 429, 429]
        assert shared.keys(f"spiderweb-cache:*throttle_user_{staff.pk}")
    finally:
        live.stop(portal)
        shared.flushdb()
        shared.close()
