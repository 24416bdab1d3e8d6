"""CNI spec versions this package speaks, and the per-command version floors of the spec.

Kept apart so that the dispatcher, the result converter and the VERSION handlers agree on one list.
"""

from __future__ import annotations

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]

# CHECK appeared in spec 0.4.0, GC and STATUS in 1.1.0: a runtime that sends an older config version for
# these commands is talking a protocol that does not have them, which the reference skel rejects with code 1.
COMMAND_FLOORS = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def parse_version(text: str) -> tuple[int, int, int]:
    """Return ``(major, minor, micro)`` of a CNI version string, raising ``ValueError`` for anything else.

    Missing parts count as zero, as in the reference library: ``"1.1"`` → ``(1, 1, 0)``.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 3 or not all(part.isdigit() and part.isascii() for part in parts):
        raise ValueError(f"{text!r} is not a CNI version")
    numbers = [int(part) for part in parts] + [0, 0]
    return numbers[0], numbers[1], numbers[2]


def is_legacy_result_version(version: str) -> bool:
    """True for result formats before 1.0.0, whose ``ips`` entries carry a ``"version"`` field."""
    return parse_version(version) < (1, 0, 0)


def version_info(cni_version: str = LATEST_VERSION) -> dict:
    """The VERSION answer: the request's ``cniVersion`` (spec "VERSION Success") plus the supported list."""
    return {"cniVersion": cni_version, "supportedVersions": list(SUPPORTED_VERSIONS)}
