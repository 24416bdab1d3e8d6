"""The agent's errors and the one place their stable ``code`` strings become HTTP status codes.

Errors are :class:`spiderweb.engine.errors.IPAMError` (codes shared with the portal) or the netlink layer's
``NetlinkError`` (``coordinator_failed``, ...); both carry ``code``/``message``/``details``. The socket API answers
them as ``{"code", "message", "details"}`` with the status below; the CNI executables map the code again, once,
to a CNI error code (cni/errors.py).
"""

from __future__ import annotations

from typing import Any

from spiderweb.engine.errors import Forbidden, IPAMError, Unavailable

HTTP_STATUS = {
    "invalid_input": 400,
    "family_disabled": 400,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "pool_in_use": 409,
    "ip_exhausted": 409,
    "no_pool_available": 409,
    "unavailable": 503,
    "forbid_stateless": 521,
    "forbid_stateful": 522,
    "internal": 500,
}


def http_status(code: str, fallback: int = 500) -> int:
    """The socket API's status for an error code; ``fallback`` for codes it does not know."""
    return HTTP_STATUS.get(code, fallback)


class QueueFull(Unavailable):
    """More requests are waiting than the agent queues (spec §7.6); the CNI retries later."""

    def __init__(self, limit: int) -> None:
        super().__init__("queue is full", details={"queueSize": limit})


class ForbidStateless(Forbidden):
    """Batch release of conflicting IPs is switched off (``SPIDERPOOL_ENABLED_RELEASE_CONFLICT_IPS=false``): 521."""

    code = "forbid_stateless"


class ForbidStateful(Forbidden):
    """StatefulSet/KubeVirt pods keep their addresses even after an IP conflict: 522."""

    code = "forbid_stateful"


class PortalError(IPAMError):
    """The portal answered an error; ``code``/``message``/``details`` are the portal's, ``status`` its HTTP status."""

    def __init__(self, code: str, message: str, *, status: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.code = code
        self.status = status


class PortalUnavailable(Unavailable):
    """The portal could not be reached (or kept answering 502/503/504) after the retries."""


def error_body(exc: Any) -> dict[str, Any]:
    """``{"code", "message", "details"}`` for an IPAMError or NetlinkError (anything with those attributes)."""
    details = getattr(exc, "details", None)
    return {
        "code": str(getattr(exc, "code", "internal")),
        "message": str(getattr(exc, "message", "") or exc),
        "details": details if isinstance(details, dict) else ({} if details is None else {"value": details}),
    }
