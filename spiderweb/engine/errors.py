"""The one exception hierarchy of Spiderweb's IPAM.

Every error carries a stable ``code`` string. HTTP status codes and CNI error codes are mapped from ``code`` once,
elsewhere, so the engine never needs to know who called it. Messages are written for people: they name the
offending value and say what was expected.
"""

from __future__ import annotations

from typing import Any


class IPAMError(Exception):
    """Base of every IPAM error; also used as-is for internal errors (``code = "internal"``).

    ``details`` is JSON-able extra context (for example the per-pool reasons behind ``NoPoolAvailable``), so the
    API and the CNI plugin can pass it on without knowing the error type.

    >>> err = IPAMError("boom", details={"pool": "p1"})
    >>> (err.code, err.message, err.details, str(err))
    ('internal', 'boom', {'pool': 'p1'}, 'boom')
    """

    code = "internal"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = {} if details is None else details

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"code", "message", "details"}`` so every transport renders an error the same way.

        >>> NotFound("IPPool 'p1' does not exist").to_dict()
        {'code': 'not_found', 'message': "IPPool 'p1' does not exist", 'details': {}}
        """
        return {"code": self.code, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class InvalidInput(IPAMError):
    """Malformed input: a bad CIDR, a bad range, a bad JSON annotation, a wrongly typed field."""

    code = "invalid_input"


class FamilyDisabled(InvalidInput):
    """The cluster disabled that IP family (``enableIPv4`` / ``enableIPv6`` is false)."""

    code = "family_disabled"


class NotFound(IPAMError):
    """A named pool, subnet or endpoint does not exist."""

    code = "not_found"


class Conflict(IPAMError):
    """Overlap, change of an immutable field, address held by someone else, object still in use."""

    code = "conflict"


class Exhausted(IPAMError):
    """Every candidate pool is full; ``details["candidates"]`` explains each one."""

    code = "ip_exhausted"


class NoPoolAvailable(IPAMError):
    """No candidate pool survived filtering; ``details["candidates"]`` explains each one."""

    code = "no_pool_available"


class PoolInUse(Conflict):
    """Deleting or shrinking a pool that still holds allocations; ``details["holders"]`` names them."""

    code = "pool_in_use"


class Forbidden(IPAMError):
    """The caller may not touch this object."""

    code = "forbidden"


class Unavailable(IPAMError):
    """A transient failure: retry later."""

    code = "unavailable"
