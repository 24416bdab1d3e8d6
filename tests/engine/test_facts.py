"""Unit tests for spiderweb.engine.facts: construction, validation and the JSON round trip."""

import json

import pytest

from spiderweb.engine.errors import InvalidInput
from spiderweb.engine.facts import PodFacts, TopController


def facts_dict(**overrides):
    data = {
        "namespace": "default",
        "name": "web-0",
        "uid": "6b9a",
        "node": "node-1",
        "labels": {"app": "web"},
        "annotations": {"ipam.spidernet.io/ippool": '{"ipv4": ["p1"]}'},
        "owner": {"kind": "StatefulSet", "name": "web", "uid": "s1", "api_version": "apps/v1"},
        "namespace_labels": {"team": "a"},
        "namespace_annotations": {},
        "node_labels": {"zone": "z1"},
    }
    data.update(overrides)
    return data


def test_top_controller_splits_group_and_version():
    assert (
        TopController("Deployment", "web", "u", "apps/v1").group,
        TopController("Deployment", "web", "u", "apps/v1").version,
    ) == ("apps", "v1")
    core = TopController("Pod", "web", "u", "v1")
    assert (core.group, core.version) == ("", "v1")
    vmi = TopController("VirtualMachineInstance", "vm", "u", "kubevirt.io/v1")
    assert (vmi.group, vmi.version) == ("kubevirt.io", "v1")


def test_from_dict_builds_facts_and_defaults_alive_to_true():
    facts = PodFacts.from_dict(facts_dict())
    assert facts.owner == TopController("StatefulSet", "web", "s1", "apps/v1")
    assert facts.labels == {"app": "web"}
    assert facts.alive is True


def test_json_round_trip_is_lossless():
    original = PodFacts.from_dict(facts_dict(alive=False))
    restored = PodFacts.from_dict(json.loads(json.dumps(original.to_dict())))
    assert restored == original
    assert restored.alive is False
    assert original.to_dict()["owner"] == {"kind": "StatefulSet", "name": "web", "uid": "s1", "api_version": "apps/v1"}


def test_facts_copy_their_dicts_so_later_changes_do_not_leak_in():
    labels = {"app": "web"}
    facts = PodFacts.from_dict(facts_dict(labels=labels))
    labels["app"] = "db"
    assert facts.labels == {"app": "web"}
    exported = facts.to_dict()
    exported["labels"]["app"] = "db"
    assert facts.labels == {"app": "web"}


def test_unknown_keys_are_ignored_for_version_skew():
    facts = PodFacts.from_dict(facts_dict(added_in_a_later_release=True))
    assert facts.name == "web-0"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"namespace": 5}, "namespace must be a string, got int 5"),
        ({"node": None}, "node must be a string, got NoneType None"),
        ({"labels": ["app=web"]}, "labels must be an object mapping strings to strings, got list"),
        ({"labels": {"app": 1}}, r"labels\['app'\] must be a string, got int 1"),
        ({"annotations": {"a": None}}, r"annotations\['a'\] must be a string"),
        ({"namespace_labels": {1: "x"}}, "namespace_labels must map strings to strings; key 1 is a int"),
        ({"namespace_annotations": "x"}, "namespace_annotations must be an object"),
        ({"node_labels": {"zone": ["z1"]}}, r"node_labels\['zone'\] must be a string"),
        ({"owner": "Deployment/web"}, "owner must be a JSON object, got str"),
        ({"owner": {"kind": "Pod", "name": "p", "uid": "u"}}, "owner is missing required field.*api_version"),
        ({"owner": {"kind": "Pod", "name": "p", "uid": 1, "api_version": "v1"}}, "owner.uid must be a string"),
        ({"alive": "yes"}, "alive must be true or false, got 'yes'"),
    ],
)
def test_from_dict_names_the_bad_field(overrides, message):
    with pytest.raises(InvalidInput, match=message):
        PodFacts.from_dict(facts_dict(**overrides))


def test_from_dict_lists_missing_fields():
    data = facts_dict()
    del data["uid"]
    del data["node_labels"]
    with pytest.raises(InvalidInput, match="pod facts is missing required field\\(s\\): uid, node_labels"):
        PodFacts.from_dict(data)


def test_from_dict_needs_an_object():
    with pytest.raises(InvalidInput, match="pod facts must be a JSON object, got list"):
        PodFacts.from_dict([])


def test_direct_construction_is_validated_too():
    with pytest.raises(InvalidInput, match="owner must be a TopController"):
        PodFacts("ns", "p", "u", "n", {}, {}, {"kind": "Pod"}, {}, {}, {})
    with pytest.raises(InvalidInput, match="owner.kind must be a string"):
        TopController(None, "p", "u", "v1")


def test_facts_are_frozen():
    facts = PodFacts.from_dict(facts_dict())
    with pytest.raises(AttributeError):
        facts.node = "other"
