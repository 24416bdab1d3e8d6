"""``GET /healthz``: the portal's readiness, 200 ``{"database": "ok"}`` when PostgreSQL answers ``SELECT 1``, else
503 with the reason class. Answered first in the middleware chain, before the host check, because the kubelet
probes the pod's IP, which is never in ``SPIDERWEB_ALLOWED_HOSTS``."""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from django.http import JsonResponse

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"


def database_healthy() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True, "ok"
    except DatabaseError as exc:
        log.warning("health check: database unavailable: %s", exc)
        return False, "unavailable"
    finally:
        # A probe must not keep a connection a later request inherits in a bad state.
        connection.close_if_unusable_or_obsolete()


class HealthMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path != HEALTH_PATH:
            return self.get_response(request)
        ok, database = database_healthy()
        return JsonResponse({"database": database}, status=200 if ok else 503)
