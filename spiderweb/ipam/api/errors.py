"""The one place where IPAM error codes become HTTP status codes, and the DRF exception handler using it."""

import logging

from django.db import IntegrityError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from spiderweb.engine.errors import IPAMError
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
    "internal": status.HTTP_500_INTERNAL_SERVER_ERROR,
}


def ipam_error_response(exc: IPAMError) -> Response:
    body = exc.to_dict()
    if isinstance(exc, SpecInvalid):
        # DRF-style field errors, keyed by the names the caller used (camelCase, as in the CRDs).
        for field, messages in exc.fields.items():
            body[WIRE_NAMES.get(field, field)] = messages
    return Response(body, status=HTTP_STATUS.get(exc.code, 500))


def exception_handler(exc, context):
    """IPAM errors keep their code and explanation; a constraint violation is a 409, never a 500."""
    if isinstance(exc, IPAMError):
        return ipam_error_response(exc)
    if isinstance(exc, IntegrityError):
        log.warning("constraint violation reached the API: %s", exc)
        return Response(
            {"code": "conflict", "message": "the change conflicts with existing data; reload and retry"},
            status=status.HTTP_409_CONFLICT,
        )
    return drf_exception_handler(exc, context)
