"""Reading the socket API's JSON bodies: every problem is an ``InvalidInput`` (HTTP 400) naming the field.

The CNI executables validate what they send, but the socket is an API of its own (other clients, older plugins),
so bodies are checked here once, with all missing fields reported together.
"""

from __future__ import annotations

from typing import Any

from spiderweb.engine.errors import InvalidInput


def body_object(body: Any, what: str) -> dict:
    """The body as a JSON object, or ``InvalidInput`` naming the schema (``IpamAddArgs``, ...)."""
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object ({what})")
    return body


def require(body: dict, *names: str, what: str, may_be_empty: tuple[str, ...] = ()) -> None:
    """Fail with every missing or empty required field listed, in the order given.

    Fields in ``may_be_empty`` must be present but may be ``""`` (``podUID``: the CNI sends what CNI_ARGS had).

    >>> require({"a": "x", "b": ""}, "a", "b", "c", what="IpamDelArgs")
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: IpamDelArgs is missing required field(s): b, c
    """
    missing = [
        name for name in names
        if body.get(name) is None or (body.get(name) == "" and name not in may_be_empty)
    ]
    if missing:
        raise InvalidInput(f"{what} is missing required field(s): {', '.join(missing)}", details={"missing": missing})


def text(body: dict, name: str, default: str = "") -> str:
    """A string field (``default`` when absent or null)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, got {type(value).__name__}")
    return value


def flag(body: dict, name: str, default: bool = False) -> bool:
    """A boolean field (``default`` when absent or null)."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false, got {value!r}")
    return value


def text_list(body: dict, name: str) -> list[str]:
    """A list of strings (``[]`` when absent or null)."""
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"{name} must be a list of strings")
    return list(value)


def obj(body: dict, name: str) -> dict:
    """A required JSON object field."""
    value = body.get(name)
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object")
    return value
