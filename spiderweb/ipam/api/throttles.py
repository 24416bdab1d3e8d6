"""Request rates: per user and per anonymous client on the public API, per node on the internal API, per client
address on the admin login.

Counters live in Django's cache: per process with the default in-memory cache, shared between portal processes
when `SPIDERWEB_CACHE_URL` names a Redis. Rates are DRF's `<n>/<second|minute|hour|day>` from the environment
(`settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`). A throttled request gets 429 with Retry-After; the node agent
retries 429 like a 503.

While the cache cannot be read, every throttle lets requests through and logs it: a rate limit is a guard, and a
Redis outage must not stop pods from getting addresses (PostgreSQL alone is on the allocation path).
"""

import logging
import time

from django.http import JsonResponse
from rest_framework import throttling

log = logging.getLogger(__name__)

CACHE_DOWN_LOG_INTERVAL = 60.0  # seconds between two warnings that the counters cannot be read
CACHE_RETRY_INTERVAL = 5.0  # seconds the throttles leave an unreachable cache alone before trying it again
_cache_down = {"logged_at": float("-inf"), "retry_at": float("-inf")}


class _FailOpen:
    """Let the request through when the counters' cache is unreachable (see the module's docstring), and do not
    ask it again for CACHE_RETRY_INTERVAL: a cache that times out would otherwise add its timeout to every request."""

    def allow_request(self, request, view):
        now = time.monotonic()
        if now < _cache_down["retry_at"]:
            return True
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - the cache backend's errors (redis-py's, OSError) vary
            _cache_down["retry_at"] = now + CACHE_RETRY_INTERVAL
            if now - _cache_down["logged_at"] >= CACHE_DOWN_LOG_INTERVAL:
                _cache_down["logged_at"] = now
                log.warning("request rates not enforced: the throttle cache cannot be read: %s: %s",
                            type(exc).__name__, exc)
            return True


class AnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    """DRF's, per anonymous client address."""


class UserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    """DRF's, per user."""


class NodeRateThrottle(_FailOpen, throttling.SimpleRateThrottle):
    """One bucket per node credential: a runaway or compromised agent cannot starve the other nodes."""

    scope = "node"

    def get_cache_key(self, request, view):
        node = getattr(request.user, "node_name", None)
        return self.cache_format % {"scope": self.scope, "ident": node} if node else None


class LoginRateThrottle(_FailOpen, throttling.SimpleRateThrottle):
    """Login attempts (POST) per client address: password guessing gets 429s after a few tries a minute."""

    scope = "login"

    def get_cache_key(self, request, view):
        if request.method != "POST":
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def login_throttled(login_view):
    """Wrap the admin's login view with `LoginRateThrottle`."""

    def view(request, *args, **kwargs):
        throttle = LoginRateThrottle()
        if not throttle.allow_request(request, None):
            wait = int(throttle.wait() or 60)
            response = JsonResponse({"code": "throttled", "message": f"too many login attempts; retry in {wait} s",
                                     "details": {}}, status=429)
            response["Retry-After"] = str(wait)
            return response
        return login_view(request, *args, **kwargs)

    return view
