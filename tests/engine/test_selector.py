"""Unit tests for spiderweb.engine.selector: Kubernetes LabelSelector semantics and validation."""

import pytest

from spiderweb.engine.errors import InvalidInput
from spiderweb.engine.selector import label_selector_matches, validate_label_selector

LABELS = {"app": "web", "tier": "front", "example.com/zone": "z1"}


def expression(key, operator, values=None):
    item = {"key": key, "operator": operator}
    if values is not None:
        item["values"] = values
    return {"matchExpressions": [item]}


def test_none_and_empty_selectors_match_everything():
    assert label_selector_matches(None, {})
    assert label_selector_matches({}, LABELS)
    assert label_selector_matches({"matchLabels": {}, "matchExpressions": []}, {})
    assert label_selector_matches({"matchLabels": None, "matchExpressions": None}, {})


def test_match_labels_need_every_pair():
    assert label_selector_matches({"matchLabels": {"app": "web", "tier": "front"}}, LABELS)
    assert not label_selector_matches({"matchLabels": {"app": "web", "tier": "back"}}, LABELS)
    assert not label_selector_matches({"matchLabels": {"missing": ""}}, LABELS)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (expression("tier", "In", ["front", "back"]), True),
        (expression("tier", "In", ["back"]), False),
        (expression("missing", "In", ["x"]), False),
        (expression("tier", "NotIn", ["back"]), True),
        (expression("tier", "NotIn", ["front"]), False),
        (expression("missing", "NotIn", ["x"]), True),
        (expression("example.com/zone", "Exists"), True),
        (expression("missing", "Exists"), False),
        (expression("missing", "DoesNotExist"), True),
        (expression("app", "DoesNotExist", []), False),
    ],
)
def test_match_expressions_follow_kubernetes_semantics(selector, expected):
    assert label_selector_matches(selector, LABELS) is expected


def test_match_labels_and_expressions_must_all_hold():
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}],
    }
    assert not label_selector_matches(selector, LABELS)
    assert label_selector_matches(selector, {"app": "web"})


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("app=web", "a label selector must be an object"),
        ({"matchLabel": {"app": "web"}}, r"unknown field\(s\) \['matchLabel'\]"),
        ({"matchLabels": ["app"]}, "matchLabels must map label keys to values"),
        ({"matchLabels": {"app": 1}}, "label value must be a string"),
        ({"matchLabels": {"app": "-web"}}, "label value '-web' is invalid"),
        ({"matchLabels": {"app": "x" * 64}}, "is invalid"),
        ({"matchLabels": {"-app": "web"}}, "label key '-app' is invalid"),
        ({"matchLabels": {"Bad_Prefix/app": "web"}}, "has an invalid prefix"),
        ({"matchLabels": {"/app": "web"}}, "has an invalid prefix"),
        ({"matchExpressions": {"key": "a"}}, "matchExpressions must be a list"),
        ({"matchExpressions": ["a"]}, r"matchExpressions\[0\] must be an object"),
        ({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}, "operator 'in' is not one of"),
        ({"matchExpressions": [{"key": "a", "operator": "In"}]}, "operator In needs at least one value"),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}, "NotIn needs at least one value"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "Exists takes no values"),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}, "values must be a list"),
        ({"matchExpressions": [{"operator": "Exists"}]}, "label key must be a string"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "value": []}]}, r"unknown field\(s\) \['value'\]"),
    ],
)
def test_malformed_selectors_are_rejected_with_the_reason(selector, message):
    with pytest.raises(InvalidInput, match=message):
        validate_label_selector(selector)
    with pytest.raises(InvalidInput, match=message):
        label_selector_matches(selector, LABELS)


def test_valid_selectors_pass_validation():
    validate_label_selector(None)
    validate_label_selector({})
    validate_label_selector({"matchLabels": {"example.com/zone": "", "a.b_c-d": "v.1"}})
    validate_label_selector(expression("k8s.io/role", "DoesNotExist"))


def test_labels_must_be_a_dict():
    with pytest.raises(InvalidInput, match="labels must be a dict"):
        label_selector_matches({}, ["app"])
