"""Request rates: per user and per anonymous client on the public API, per node on the internal API, per client
address on the admin login.

Counters live in Django's cache: per process with the default in-memory cache, shared between portal processes
when `SPIDERWEB_CACHE_URL` names a Redis. Rates are DRF's `<n>/<second|minute|hour|day>` from the environment
(`settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`). A throttled request gets 429 with Retry-After; the node agent
retries 429 like a 503.
"""

from django.http import JsonResponse
from rest_framework.throttling import SimpleRateThrottle


class NodeRateThrottle(SimpleRateThrottle):
    """One bucket per node credential: a runaway or compromised agent cannot starve the other nodes."""

    scope = "node"

    def get_cache_key(self, request, view):
        node = getattr(request.user, "node_name", None)
        return self.cache_format % {"scope": self.scope, "ident": node} if node else None


class LoginRateThrottle(SimpleRateThrottle):
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
