"""The three-way merge (pure): one side's edits always survive; a field both changed goes to Kubernetes, reported."""

from spiderweb.controllers.mirror.merge import three_way_merge

BASE = {"spec": {"subnet": "10.0.0.0/24", "ips": ["10.0.0.1-10.0.0.9"]}, "labels": {"team": "a"}}


def _with(doc, **spec):
    return {"spec": {**doc["spec"], **spec}, "labels": dict(doc["labels"])}


def test_no_change_anywhere_is_the_base():
    result = three_way_merge(BASE, BASE, BASE)
    assert result.merged == BASE and result.conflicts == ()
    assert not result.differs_from(BASE)


def test_different_fields_changed_on_each_side_are_both_kept():
    portal = _with(BASE, nodeName=["n1"])
    k8s = _with(BASE, default=True)
    result = three_way_merge(BASE, portal, k8s)
    assert result.merged["spec"] == {**BASE["spec"], "nodeName": ["n1"], "default": True}
    assert result.conflicts == ()
    assert result.differs_from(portal) and result.differs_from(k8s)


def test_same_field_changed_differently_kubernetes_wins_and_the_portal_value_is_reported():
    portal = _with(BASE, ips=["10.0.0.1-10.0.0.5"])
    k8s = _with(BASE, ips=["10.0.0.1-10.0.0.20"])
    result = three_way_merge(BASE, portal, k8s)
    assert result.merged["spec"]["ips"] == ["10.0.0.1-10.0.0.20"]
    [conflict] = result.conflicts
    assert (conflict.path, conflict.portal, conflict.kubernetes, conflict.base) == (
        "spec.ips", ["10.0.0.1-10.0.0.5"], ["10.0.0.1-10.0.0.20"], ["10.0.0.1-10.0.0.9"])


def test_same_change_on_both_sides_is_no_conflict():
    both = _with(BASE, gateway="10.0.0.254")
    result = three_way_merge(BASE, both, both)
    assert result.merged == both and result.conflicts == ()


def test_a_removal_on_one_side_is_an_edit_too():
    portal = {"spec": dict(BASE["spec"]), "labels": {}}  # label removed in the portal
    result = three_way_merge(BASE, portal, BASE)
    assert result.merged["labels"] == {} and result.conflicts == ()


def test_removal_against_a_change_is_a_conflict_kubernetes_wins():
    portal = {"spec": dict(BASE["spec"]), "labels": {}}
    k8s = {"spec": dict(BASE["spec"]), "labels": {"team": "b"}}
    result = three_way_merge(BASE, portal, k8s)
    assert result.merged["labels"] == {"team": "b"}
    assert [c.path for c in result.conflicts] == ["labels.team"]
    assert result.conflicts[0].portal is None


def test_without_a_base_every_difference_is_a_conflict_won_by_kubernetes():
    portal = _with(BASE, gateway="10.0.0.1")
    k8s = _with(BASE, gateway="10.0.0.2", default=True)
    result = three_way_merge(None, portal, k8s)
    assert result.merged["spec"]["gateway"] == "10.0.0.2" and result.merged["spec"]["default"] is True
    assert sorted(c.path for c in result.conflicts) == ["spec.default", "spec.gateway"]
