"""JSON in and out through CPython's ``_json`` accelerator, without ``import json`` on the success path.

``json`` imports ``re`` (with ``enum`` and ``functools``): a few milliseconds of every executable's start-up, for
work that ``json`` hands to ``_json`` anyway. Decoding uses ``_json``'s scanner directly; only when it fails is
``json`` imported, to raise ``json``'s own error (``ValueError`` with line and column). Encoding writes
ASCII-only text, compact or indented by four spaces, strings escaped by ``_json``. Without ``_json`` (another
Python implementation) both fall back on ``json``.
"""

from __future__ import annotations

try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_scanner as _make_scanner
except ImportError:  # pragma: no cover - CPython always has it
    _quote = _make_scanner = None

_WHITESPACE = " \t\n\r"


class _ScanContext:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    def __init__(self, parse_constant):
        self.parse_constant = parse_constant


def _nan_or_infinity(name: str) -> float:
    return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


def loads(text: str, *, parse_constant=None) -> object:
    """``json.loads(text, parse_constant=...)`` for a ``str``; raises ``ValueError`` as ``json`` does."""
    parse_constant = parse_constant or _nan_or_infinity
    if _make_scanner is not None:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = _make_scanner(_ScanContext(parse_constant))(text, start)
        except (StopIteration, ValueError, SystemError):
            # Bad JSON: json, below, raises the error with its usual message. (``_json`` builds that error from
            # ``json.decoder``, which it only finds once ``json`` is imported; before that it fails with SystemError.)
            pass
        else:
            if not text[end:].strip(_WHITESPACE):
                return value
    import json

    return json.loads(text, parse_constant=parse_constant)


def dumps(value: object, *, indent: int | None = None) -> str:
    """ASCII-only JSON of dicts, lists, tuples, strings, numbers, booleans and ``None`` (``TypeError`` otherwise).

    Compact (``,`` and ``:``) without ``indent``; with it, ``json.dumps(value, indent=indent)``'s layout.
    """
    if _quote is None:  # pragma: no cover
        import json

        return json.dumps(value, indent=indent, separators=None if indent else (",", ":"))
    parts: list[str] = []
    _encode(value, parts, indent, 0)
    return "".join(parts)


def _encode(value: object, out: list[str], indent: int | None, depth: int) -> None:
    if isinstance(value, str):
        out.append(_quote(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            out.append("NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))
        else:
            out.append(float.__repr__(value))
    elif isinstance(value, dict):
        _container(value.items(), "{", "}", out, indent, depth, keyed=True)
    elif isinstance(value, (list, tuple)):
        _container(value, "[", "]", out, indent, depth, keyed=False)
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _container(items, opening: str, closing: str, out: list[str], indent: int | None, depth: int, *,
               keyed: bool) -> None:
    if depth > 500:
        raise ValueError("JSON nesting is too deep")
    out.append(opening)
    inner = "" if indent is None else "\n" + " " * (indent * (depth + 1))
    first = True
    for item in items:
        out.append(inner if first else "," + inner)
        first = False
        if keyed:
            key, item = item
            out.append(_quote(_key(key)))
            out.append(": " if indent is not None else ":")
        _encode(item, out, indent, depth + 1)
    if not first and indent is not None:
        out.append("\n" + " " * (indent * depth))
    out.append(closing)


def _key(key: object) -> str:
    """Object keys as ``json`` writes them: strings as they are; numbers, booleans and ``None`` as JSON text."""
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return {True: "true", False: "false", None: "null"}[key]
    if isinstance(key, (int, float)):
        return repr(key) if isinstance(key, float) else int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
