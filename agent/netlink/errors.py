"""Errors raised by the netlink layer, each with a stable ``code`` the socket API maps to an HTTP status once.

Configuration problems are plain ``ValueError`` (raised while merging/validating, before any kernel change);
these classes are for failures met while talking to the kernel or the network.
"""

from __future__ import annotations

from typing import Any


class NetlinkError(Exception):
    """Base class: ``code`` is stable, ``message`` is for a person, ``details`` is JSON-able context."""

    code = "netlink_failed"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = {} if details is None else details

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"code", "message", "details"}``, the agent's error body."""
        return {"code": self.code, "message": self.message, "details": self.details}


class CoordinatorError(NetlinkError):
    """A coordinator ADD/DEL/CHECK could not be carried out (wrong mode for this pod, missing NIC, kernel error)."""

    code = "coordinator_failed"


class IfacerError(NetlinkError):
    """ifacer refused or failed to create a VLAN or bond parent device."""

    code = "ifacer_failed"


class DetectionError(NetlinkError):
    """A conflict/gateway probe could not run (interface missing, sends kept failing); not a verdict."""

    code = "detection_failed"
