"""CNI error objects, the agent's failures, and the one place that maps agent error codes to CNI codes.

A runtime only understands what a plugin prints on stdout, so every failure ends up as one
``{"cniVersion", "code", "msg", "details"}`` object. Codes below 100 are the CNI spec's own; 100 and above
are ours and each has one documented meaning (see ``CODE_MEANINGS`` and cni/README.md).
"""

from __future__ import annotations

# Standard codes from the CNI spec ("Error" section).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
LIMITED_CONNECTIVITY = 51

# Ours (the spec leaves 100 and above to plugins).
INTERNAL = 100
AGENT_INVALID_INPUT = 101
AGENT_FAMILY_DISABLED = 102
AGENT_NOT_FOUND = 103
AGENT_CONFLICT = 104
AGENT_IP_EXHAUSTED = 105
AGENT_NO_POOL_AVAILABLE = 106
AGENT_POOL_IN_USE = 107
AGENT_FORBIDDEN = 108
AGENT_BAD_RESPONSE = 109
NO_ADDRESS_FOR_INTERFACE = 110

CODE_MEANINGS = {
    INCOMPATIBLE_VERSION: "incompatible CNI version (unsupported cniVersion, or a command the version lacks)",
    UNSUPPORTED_FIELD: "unsupported field in network configuration",
    UNKNOWN_CONTAINER: "container unknown or does not exist",
    INVALID_ENVIRONMENT: "invalid or missing CNI_* environment variable, including CNI_ARGS",
    IO_FAILURE: "I/O failure reading stdin or writing stdout",
    DECODING_FAILURE: "stdin is not a JSON object",
    INVALID_NETWORK_CONFIG: "invalid network configuration (a key of the plugin's section, name, prevResult)",
    TRY_AGAIN_LATER: "transient: the agent is unreachable, unhealthy or answered 'unavailable'",
    PLUGIN_NOT_AVAILABLE: "STATUS: the agent cannot serve ADD requests now",
    LIMITED_CONNECTIVITY: "STATUS: not available, existing containers may have limited connectivity",
    INTERNAL: "unexpected failure inside the plugin, or the agent's 'internal' error",
    AGENT_INVALID_INPUT: "the agent rejected the request as invalid ('invalid_input', e.g. a bad pod annotation)",
    AGENT_FAMILY_DISABLED: "the requested IP family is disabled in the cluster ('family_disabled')",
    AGENT_NOT_FOUND: "a named pool, subnet or endpoint does not exist ('not_found')",
    AGENT_CONFLICT: "the request conflicts with existing state ('conflict')",
    AGENT_IP_EXHAUSTED: "every candidate pool is full ('ip_exhausted')",
    AGENT_NO_POOL_AVAILABLE: "no candidate pool survived selection ('no_pool_available')",
    AGENT_POOL_IN_USE: "the pool still holds allocations ('pool_in_use')",
    AGENT_FORBIDDEN: "the agent refused the operation ('forbidden', 'forbid_stateless', 'forbid_stateful')",
    AGENT_BAD_RESPONSE: "the agent answered something that does not follow its API contract",
    NO_ADDRESS_FOR_INTERFACE: "the agent allocated, but no address for CNI_IFNAME",
}

# The single mapping of the agent's stable error codes (spiderweb.engine.errors) to CNI codes.
AGENT_CODE_TO_CNI = {
    "invalid_input": AGENT_INVALID_INPUT,
    "family_disabled": AGENT_FAMILY_DISABLED,
    "not_found": AGENT_NOT_FOUND,
    "conflict": AGENT_CONFLICT,
    "ip_exhausted": AGENT_IP_EXHAUSTED,
    "no_pool_available": AGENT_NO_POOL_AVAILABLE,
    "pool_in_use": AGENT_POOL_IN_USE,
    "forbidden": AGENT_FORBIDDEN,
    "forbid_stateless": AGENT_FORBIDDEN,
    "forbid_stateful": AGENT_FORBIDDEN,
    "unavailable": TRY_AGAIN_LATER,
    "internal": INTERNAL,
}

# An ``invalid_input`` whose ``details.reason`` says what was invalid gets the spec's code for it
# (the agent's ``agent/coordination.py`` sets these): a bad network config value, a netns that does not exist.
AGENT_INVALID_INPUT_REASON_TO_CNI = {
    "invalid_config": INVALID_NETWORK_CONFIG,
    "unknown_container": UNKNOWN_CONTAINER,
}

# Used only when an error body carries no code we know (a proxy error page, an older agent).
_HTTP_STATUS_TO_AGENT_CODE = {
    400: "invalid_input",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
    521: "forbid_stateless",
    522: "forbid_stateful",
}


class CNIError(Exception):
    """A failure that is printed to the runtime as a CNI error object; ``code`` decides how it reads it."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details
        # The config's cniVersion when it was known at the time of failure; the error is printed in it.
        self.cni_version: str | None = None

    def to_dict(self, cni_version: str) -> dict:
        """The CNI error object. ``details`` is a string, as the spec defines it."""
        return {"cniVersion": cni_version, "code": self.code, "msg": self.msg, "details": self.details}


class AgentUnreachable(Exception):
    """The agent socket could not be used at all (missing, refused, reset, timed out, not HTTP).

    Kept apart from ``AgentError`` because the right answer differs: ADD/DEL say "try again later" (11) so the
    runtime retries, STATUS says "not available" (50).
    """


class AgentError(Exception):
    """The agent answered with a non-2xx status; ``code`` is its stable error code string."""

    def __init__(self, status: int, code: str, message: str, details: object = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @property
    def is_transient(self) -> bool:
        """True when retrying later may succeed (the agent could not reach the portal or Kubernetes)."""
        return self.code == "unavailable"

    @property
    def is_gone(self) -> bool:
        """True when the thing a DEL wanted to remove does not exist, which a DEL counts as success."""
        return self.code == "not_found"


class AgentBadResponse(Exception):
    """The agent answered 2xx but with a body that breaks the API contract."""


def agent_code_for_http_status(status: int) -> str:
    """The agent error code implied by an HTTP status, for error bodies that carry no usable ``code``."""
    if status in _HTTP_STATUS_TO_AGENT_CODE:
        return _HTTP_STATUS_TO_AGENT_CODE[status]
    return "internal"


def cni_error_from_agent_error(error: AgentError) -> CNIError:
    """Turn an agent error into the CNI error printed to the runtime.

    ``msg`` is the agent's ``message`` unchanged (it is written for a person and ends up in pod events);
    ``details`` keeps the agent code, HTTP status and structured details for whoever debugs it.
    """
    cni_code = AGENT_CODE_TO_CNI.get(error.code, INTERNAL)
    reason = error.details.get("reason") if isinstance(error.details, dict) else None
    if error.code == "invalid_input" and isinstance(reason, str):
        cni_code = AGENT_INVALID_INPUT_REASON_TO_CNI.get(reason, cni_code)
    details = {"agentCode": error.code, "httpStatus": error.status}
    if error.details not in (None, {}, []):
        details["details"] = error.details
    return CNIError(cni_code, error.message or f"spiderpool-agent error {error.code}", _json_text(details))


def cni_error_from_unreachable(error: AgentUnreachable, *, code: int = TRY_AGAIN_LATER) -> CNIError:
    """Turn "cannot talk to the agent" into a CNI error; 11 by default so the runtime retries."""
    return CNIError(code, f"spiderpool-agent is not reachable: {error}", "")


def _json_text(value: object) -> str:
    """Compact, ASCII-only JSON text; ``repr`` as a last resort so building an error never fails."""
    import json  # only on the error path: json costs start-up time (see cni/jsontext.py)

    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError):
        return repr(value)
