"""Typed readers for keys of a plugin's config section, failing with code 7 and the key's full path.

JSON has no schema here, so each plugin reads its keys through these once, into a frozen record, and a
wrong type or value stops the call with a message that names the key (``ipam.clean_gateway must be a
boolean``) instead of surfacing later as a confusing agent error.
"""

from __future__ import annotations

from cni import errors, logs
from cni.record import Record

if False:  # annotations only (postponed): collections.abc would add ~1 ms to every call's start-up
    from collections.abc import Mapping

# Spiderpool's log level names (zap) mapped to the stdlib's.
LOG_LEVELS = {
    "debug": logs.DEBUG,
    "info": logs.INFO,
    "warn": logs.WARNING,
    "warning": logs.WARNING,
    "error": logs.ERROR,
    "dpanic": logs.CRITICAL,
    "panic": logs.CRITICAL,
    "fatal": logs.CRITICAL,
}
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


class LogSettings(Record):
    """Where and how much a plugin logs. ``path`` empty means no file log (the default)."""

    __slots__ = ("path", "level", "max_size_mb", "max_count")
    _defaults = {"path": "", "level": logs.DEBUG, "max_size_mb": 100, "max_count": 10}


def invalid(where: str, problem: str, value: object = None) -> errors.CNIError:
    """The code-7 error for one bad key."""
    details = "" if value is None else _short(value)
    return errors.CNIError(errors.INVALID_NETWORK_CONFIG, f"invalid network config: {where} {problem}", details)


def section(config: Mapping[str, object], key: str, *, required: bool) -> dict:
    """A nested object such as ``ipam``; ``{}`` when optional and absent or null."""
    value = config.get(key)
    if value is None:
        if required:
            raise errors.CNIError(errors.INVALID_NETWORK_CONFIG, f"invalid network config: missing {key!r} section")
        return {}
    if not isinstance(value, dict):
        raise invalid(key, "must be a JSON object", value)
    return value


def read_bool(config: Mapping[str, object], key: str, default: bool, where: str) -> bool:
    """A JSON boolean (``null`` or absent → default)."""
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"{where}{key}", "must be a boolean", value)
    return value


def read_int(config: Mapping[str, object], key: str, default: int, where: str, *, low: int, high: int) -> int:
    """A JSON integer within ``low..high``; booleans and floats are refused (Go would refuse them too)."""
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{where}{key}", "must be an integer", value)
    if not low <= value <= high:
        raise invalid(f"{where}{key}", f"must be in range [{low},{high}]", value)
    return value


def read_str(config: Mapping[str, object], key: str, default: str, where: str) -> str:
    """A JSON string (``null`` or absent → default)."""
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise invalid(f"{where}{key}", "must be a string", value)
    return value


def read_str_list(config: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
    """A JSON array of non-empty strings (``null`` or absent → empty)."""
    value = config.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise invalid(f"{where}{key}", "must be an array of strings", value)
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise invalid(f"{where}{key}[{index}]", "must be a non-empty string", item)
    return tuple(value)


def read_socket_path(config: Mapping[str, object], key: str, default: str, where: str) -> str:
    """An absolute unix socket path that fits in ``sun_path``."""
    path = read_str(config, key, default, where) or default
    if not path.startswith("/"):
        raise invalid(f"{where}{key}", "must be an absolute path", path)
    if "\x00" in path or len(path.encode("utf-8", "surrogateescape")) > MAX_SOCKET_PATH_BYTES:
        raise invalid(f"{where}{key}", f"must be at most {MAX_SOCKET_PATH_BYTES} bytes without NUL", path)
    return path


def read_log_level(config: Mapping[str, object], key: str, where: str) -> int:
    """A Spiderpool log level name; the default is ``debug``, as in Spiderpool's code (spec A14)."""
    name = read_str(config, key, "debug", where) or "debug"
    level = LOG_LEVELS.get(name.lower())
    if level is None:
        raise invalid(f"{where}{key}", f"must be one of {sorted(LOG_LEVELS)}", name)
    return level


def read_log_path(config: Mapping[str, object], key: str, where: str) -> str:
    """A log file path; empty means no file log."""
    path = read_str(config, key, "", where)
    if path and ("\x00" in path or not path.startswith("/")):
        raise invalid(f"{where}{key}", "must be an absolute path", path)
    return path


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
