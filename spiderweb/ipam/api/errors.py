"""The one place where IPAM error codes become HTTP status codes, and the DRF exception handler using it."""

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, InterfaceError, OperationalError
from django.db.models import ProtectedError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from spiderweb import metrics
from spiderweb.engine.errors import IPAMError, Unavailable
from spiderweb.ipam.validation import WIRE_NAMES, SpecInvalid

log = logging.getLogger(__name__)

HTTP_STATUS = {
    "invalid_input": status.HTTP_400_BAD_REQUEST,
    "family_disabled": status.HTTP_400_BAD_REQUEST,
    "not_found": status.HTTP_404_NOT_FOUND,
    "forbidden": status.HTTP_403_FORBIDDEN,
    "conflict": status.HTTP_409_CONFLICT,
    "pool_in_use": status.HTTP_409_CONFLICT,
    "ip_exhausted": status.HTTP_409_CONFLICT,
    "no_pool_available": status.HTTP_409_CONFLICT,
    "forbid_stateless": status.HTTP_409_CONFLICT,
    "forbid_stateful": status.HTTP_409_CONFLICT,
    "unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    "autopool_not_ready": status.HTTP_503_SERVICE_UNAVAILABLE,
    "internal": status.HTTP_500_INTERNAL_SERVER_ERROR,
}


def ipam_error_response(exc: IPAMError) -> Response:
    """`{code, message, details}`; a `SpecInvalid` also gets DRF-style `{field: [messages]}` keys.

    Field names are the ones the caller used (camelCase, as in the CRDs), both at the top level and in
    `details.fields`.
    """
    body = exc.to_dict()
    if isinstance(exc, SpecInvalid):
        wire_fields = {WIRE_NAMES.get(field, field): list(messages) for field, messages in exc.fields.items()}
        body["details"] = {**body["details"], "fields": wire_fields}
        body.update(wire_fields)
    return Response(body, status=HTTP_STATUS.get(exc.code, status.HTTP_500_INTERNAL_SERVER_ERROR))


# What a caller is told for the database errors a retry cures, by SQLSTATE; anything else is "unavailable".
DATABASE_RETRY_MESSAGES = {
    "55P03": "timed out waiting for a lock another request holds (SPIDERWEB_DB_LOCK_TIMEOUT_MS); retry",
    "40P01": "the database broke a deadlock by aborting this request; retry",
    "40001": "the request conflicted with a concurrent one; retry",
}


def database_unavailable(exc: OperationalError | InterfaceError) -> Unavailable:
    """A lost connection, a database that is restarting, a lock wait that timed out: all are transient.

    They become `Unavailable` (503), which node agents retry; as an HTML 500 they failed the CNI call for good.
    The message does not repeat the driver's text, which can name database hosts to a tenant; the log has it.
    """
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or getattr(exc.__cause__, "pgcode", None)
    log.warning("database error answered as 503 unavailable: %s", exc)
    metrics.DB_RETRYABLE.labels(sqlstate=sqlstate or "connection").inc()
    message = DATABASE_RETRY_MESSAGES.get(sqlstate or "", "the database is unavailable; retry")
    return Unavailable(message, details={"sqlstate": sqlstate} if sqlstate else {})


def exception_handler(exc, context):
    """IPAM errors keep their code and explanation; constraint violations are 409s and model errors 400s, not 500s.

    Database connection errors and lock timeouts are 503 `unavailable` (retry later) in the same JSON shape.
    """
    if isinstance(exc, IPAMError):
        return ipam_error_response(exc)
    if isinstance(exc, (OperationalError, InterfaceError)):
        return ipam_error_response(database_unavailable(exc))
    if isinstance(exc, ProtectedError):
        holders = sorted({f"{obj._meta.verbose_name} {obj}" for obj in exc.protected_objects})[:20]
        return Response(
            {
                "code": "conflict",
                "message": f"still referenced by {', '.join(holders)}",
                "details": {"holders": holders},
            },
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, IntegrityError):
        log.warning("constraint violation reached the API: %s", exc)
        return Response(
            {"code": "conflict", "message": "the change conflicts with existing data; reload and retry", "details": {}},
            status=status.HTTP_409_CONFLICT,
        )
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            fields = {WIRE_NAMES.get(k, k): [m for e in v for m in e.messages] for k, v in exc.error_dict.items()}
        else:
            fields = {"non_field_errors": exc.messages}
        message = "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items())
        return Response(
            {"code": "invalid_input", "message": message, "details": {"fields": fields}, **fields},
            status=status.HTTP_400_BAD_REQUEST,
        )
    return drf_exception_handler(exc, context)
