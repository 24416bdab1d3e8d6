"""Kubernetes LabelSelector matching and validation, for pool podAffinity, namespaceAffinity and nodeAffinity.

Semantics follow ``metav1.LabelSelectorAsSelector``: ``matchLabels`` and every ``matchExpressions`` entry must
all hold; an empty selector matches everything. Whether a selector is "set" at all (None versus ``{}``) is the
caller's business (see ``selection``).
"""

from __future__ import annotations

import re
from typing import Any

from spiderweb.engine.errors import InvalidInput

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _check_label_key(key: object, where: str) -> None:
    """A label key is ``[prefix/]name``: prefix a DNS subdomain ≤ 253, name ≤ 63 alphanumerics with ``-_.``."""
    if not isinstance(key, str):
        raise InvalidInput(f"{where}: label key must be a string, got {key!r}")
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise InvalidInput(
            f"{where}: label key {key!r} has an invalid prefix; expected a DNS subdomain such as 'example.com'"
        )
    if not name or len(name) > 63 or not _NAME.match(name):
        raise InvalidInput(
            f"{where}: label key {key!r} is invalid; expected at most 63 characters of "
            "[A-Za-z0-9-_.], starting and ending with an alphanumeric"
        )


def _check_label_value(value: object, where: str) -> None:
    """A label value is empty or ≤ 63 alphanumerics with ``-_.``, starting and ending alphanumeric."""
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: label value must be a string, got {value!r}")
    if value and (len(value) > 63 or not _NAME.match(value)):
        raise InvalidInput(
            f"{where}: label value {value!r} is invalid; expected at most 63 characters of "
            "[A-Za-z0-9-_.], starting and ending with an alphanumeric"
        )


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_labels(labels: Any) -> None:
    """Raise InvalidInput unless ``labels`` is a map of valid Kubernetes label keys to valid values.

    >>> validate_labels({"app.kubernetes.io/name": "web", "tier": ""})
    >>> validate_labels({"bad key": "x"})
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: labels: label key 'bad key' is invalid; expected at most 63 characters \
of [A-Za-z0-9-_.], starting and ending with an alphanumeric
    """
    if not isinstance(labels, dict):
        raise InvalidInput(f"labels must map label keys to values, got {labels!r}")
    for key, value in labels.items():
        _check_label_key(key, "labels")
        _check_label_value(value, f"labels[{key!r}]")


def validate_dns_label(name: Any, what: str) -> None:
    """A DNS-1123 label (a namespace name): ≤ 63 lowercase alphanumerics and '-', alphanumeric at both ends.

    >>> validate_dns_label("kube-system", "namespace")
    >>> validate_dns_label("Kube_System", "namespace")
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: namespace 'Kube_System' is not a valid DNS-1123 label (at most 63 \
lowercase alphanumerics and '-', starting and ending with an alphanumeric)
    """
    if not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.match(name):
        raise InvalidInput(f"{what} {name!r} is not a valid DNS-1123 label (at most 63 lowercase alphanumerics and "
                           f"'-', starting and ending with an alphanumeric)")


def validate_dns_subdomain(name: Any, what: str) -> None:
    """A DNS-1123 subdomain (a node or NetworkAttachmentDefinition name): ≤ 253 characters of DNS labels and '.'.

    >>> validate_dns_subdomain("worker-1.example", "node name")
    """
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise InvalidInput(f"{what} {name!r} is not a valid DNS-1123 subdomain (at most 253 lowercase "
                           f"alphanumerics, '-' and '.', starting and ending with an alphanumeric)")


def validate_label_selector(selector: Any) -> None:
    """Raise InvalidInput when ``selector`` is not a well-formed Kubernetes LabelSelector; None is fine.

    >>> validate_label_selector({"matchLabels": {"app": "web"},
    ...                          "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]})
    >>> validate_label_selector({"matchExpressions": [{"key": "tier", "operator": "Exists", "values": ["a"]}]})
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: matchExpressions[0]: operator Exists takes no values, got ['a']
    """
    if selector is None:
        return
    if not isinstance(selector, dict):
        raise InvalidInput(f"a label selector must be an object with matchLabels/matchExpressions, got {selector!r}")
    unknown = sorted(set(selector) - {"matchLabels", "matchExpressions"})
    if unknown:
        raise InvalidInput(
            f"label selector has unknown field(s) {unknown}; expected matchLabels and/or matchExpressions"
        )
    match_labels = selector.get("matchLabels")
    if match_labels is not None:
        if not isinstance(match_labels, dict):
            raise InvalidInput(f"matchLabels must map label keys to values, got {match_labels!r}")
        for key, value in match_labels.items():
            _check_label_key(key, "matchLabels")
            _check_label_value(value, f"matchLabels[{key!r}]")
    expressions = selector.get("matchExpressions")
    if expressions is None:
        return
    if not isinstance(expressions, list):
        raise InvalidInput(f"matchExpressions must be a list, got {expressions!r}")
    for index, expression in enumerate(expressions):
        where = f"matchExpressions[{index}]"
        if not isinstance(expression, dict):
            raise InvalidInput(f"{where} must be an object with key, operator and values, got {expression!r}")
        unknown = sorted(set(expression) - {"key", "operator", "values"})
        if unknown:
            raise InvalidInput(f"{where} has unknown field(s) {unknown}; expected key, operator and values")
        _check_label_key(expression.get("key"), where)
        operator = expression.get("operator")
        if operator not in _OPERATORS:
            raise InvalidInput(f"{where}: operator {operator!r} is not one of {', '.join(_OPERATORS)}")
        values = expression.get("values")
        if values is None:
            values = []
        if not isinstance(values, list):
            raise InvalidInput(f"{where}: values must be a list of strings, got {values!r}")
        if operator in ("In", "NotIn") and not values:
            raise InvalidInput(f"{where}: operator {operator} needs at least one value")
        if operator in ("Exists", "DoesNotExist") and values:
            raise InvalidInput(f"{where}: operator {operator} takes no values, got {values!r}")
        for value in values:
            _check_label_value(value, f"{where}.values")


def label_selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """True when ``labels`` satisfy ``selector``; None or ``{}`` matches everything.

    >>> sel = {"matchLabels": {"app": "web"},
    ...        "matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["z1"]}]}
    >>> label_selector_matches(sel, {"app": "web"}), label_selector_matches(sel, {"app": "web", "zone": "z1"})
    (True, False)
    """
    validate_label_selector(selector)
    if not isinstance(labels, dict):
        raise InvalidInput(f"labels must be a dict of strings, got {labels!r}")
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


_TERM_SET = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_TERM_EQUALS = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_TERM_EXISTS = re.compile(r"^(?P<not>!?)\s*(?P<key>[^\s!=(),]+)$")


def _selector_terms(text: str) -> list[str]:
    """Split on commas and line breaks outside parentheses."""
    terms, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if depth == 0 and char in ",\n":
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    terms.append("".join(current).strip())
    return [term for term in terms if term]


def parse_selector_text(text: str) -> dict[str, Any] | None:
    """Read a label selector written as kubectl writes one (``-l``); empty text is no selector (None).

    ``key=value`` (or ``==``) goes to matchLabels; ``key!=value`` and ``key notin (a, b)`` become NotIn,
    ``key in (a, b)`` In, ``key`` Exists and ``!key`` DoesNotExist. Terms are separated by commas or line breaks.
    The result still goes through :func:`validate_label_selector` (the REST API's rules) where it is used.

    >>> parse_selector_text("app=web, tier in (db, cache)\\n!legacy")
    {'matchLabels': {'app': 'web'}, 'matchExpressions': [{'key': 'tier', 'operator': 'In', 'values': ['db', 'cache']}, {'key': 'legacy', 'operator': 'DoesNotExist'}]}
    >>> parse_selector_text("app=web, app=db")
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: 'app' is given two values, 'web' and 'db'
    >>> parse_selector_text("app >= 3")
    Traceback (most recent call last):
    ...
    spiderweb.engine.errors.InvalidInput: cannot read 'app >= 3': write key=value, key!=value, key in (a, b), key notin (a, b), key or !key
    """  # noqa: E501
    if not isinstance(text, str):
        raise InvalidInput(f"a label selector text must be a string, got {text!r}")
    match_labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for term in _selector_terms(text):
        if found := _TERM_SET.match(term):
            values = [value.strip() for value in found["values"].split(",") if value.strip()]
            operator = "In" if found["op"] == "in" else "NotIn"
            expressions.append({"key": found["key"], "operator": operator, "values": values})
        elif found := _TERM_EQUALS.match(term):
            key, value = found["key"], found["value"]
            if found["op"] == "!=":
                expressions.append({"key": key, "operator": "NotIn", "values": [value]})
            elif key in match_labels and match_labels[key] != value:
                raise InvalidInput(f"{key!r} is given two values, {match_labels[key]!r} and {value!r}")
            else:
                match_labels[key] = value
        elif found := _TERM_EXISTS.match(term):
            expressions.append({"key": found["key"], "operator": "DoesNotExist" if found["not"] else "Exists"})
        else:
            raise InvalidInput(f"cannot read {term!r}: write key=value, key!=value, key in (a, b), "
                               f"key notin (a, b), key or !key")
    if not match_labels and not expressions:
        return None
    selector: dict[str, Any] = {}
    if match_labels:
        selector["matchLabels"] = match_labels
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


def format_selector_text(selector: dict[str, Any] | None) -> str:
    """The inverse of :func:`parse_selector_text`, one requirement per line; None is empty text.

    >>> print(format_selector_text({"matchLabels": {"app": "web"}, "matchExpressions": [
    ...     {"key": "tier", "operator": "NotIn", "values": ["db"]}, {"key": "gpu", "operator": "Exists"}]}))
    app=web
    tier notin (db)
    gpu
    """
    if not selector:
        return ""
    lines = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator in ("In", "NotIn"):
            lines.append(f"{key} {'in' if operator == 'In' else 'notin'} ({', '.join(values)})")
        else:
            lines.append(f"{'!' if operator == 'DoesNotExist' else ''}{key}")
    return "\n".join(lines)
