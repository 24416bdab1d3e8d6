"""Mutating defaults and JSONPatch (pure): Spiderpool's defaults for each kind, and patches that reproduce them."""

import pytest

from spiderweb.engine.errors import InvalidInput
from spiderweb.k8s import admission, netconf
from spiderweb.k8s.crd import FINALIZER

from .jsonpatch import json_patch_apply


def _pool(**spec):
    return {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
            "metadata": {"name": "p1", "labels": {"team": "a"}}, "spec": spec}


def test_pool_defaults_finalizer_version_label_and_merged_ranges():
    obj = _pool(subnet="10.6.0.0/16", ips=["10.6.0.9", "10.6.0.1-10.6.0.8", "10.6.0.20"], excludeIPs=["10.6.0.3"])
    out = admission.ippool_mutate(obj)
    assert out["spec"]["ipVersion"] == 4
    assert out["spec"]["ips"] == ["10.6.0.1-10.6.0.9", "10.6.0.20"]
    assert out["metadata"]["finalizers"] == [FINALIZER]
    assert out["metadata"]["labels"] == {"team": "a", "ipam.spidernet.io/ippool-cidr": "10-6-0-0-16"}
    assert obj["spec"]["ips"][0] == "10.6.0.9", "the input is not modified"


def test_patch_reproduces_the_mutation_and_escapes_label_keys():
    obj = _pool(subnet="fd00:6::/64", ips=["fd00:6::2", "fd00:6::1"])
    out = admission.ippool_mutate(obj)
    patch = admission.json_patch(obj, out)
    assert json_patch_apply(obj, patch) == out
    assert {"op": "add", "path": "/metadata/labels/ipam.spidernet.io~1ippool-cidr", "value": "fd00-6---64"} in patch


def test_pool_inherits_from_its_subnet_gateway_routes_owner():
    owner = admission.OwnerSubnet("s1", "uid-s1", "10.6.0.1", [{"dst": "10.7.0.0/16", "gw": "10.6.0.1"}])
    out = admission.ippool_mutate(_pool(subnet="10.6.0.0/16", ips=["10.6.0.10"]), owner=owner)
    assert out["spec"]["gateway"] == "10.6.0.1"
    assert out["spec"]["routes"] == [{"dst": "10.7.0.0/16", "gw": "10.6.0.1"}]
    assert out["metadata"]["labels"]["ipam.spidernet.io/owner-spider-subnet"] == "s1"
    [ref] = out["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("SpiderSubnet", "s1", "uid-s1", True)


def test_explicit_gateway_and_empty_routes_are_not_inherited():
    owner = admission.OwnerSubnet("s1", "uid-s1", "10.6.0.1", [{"dst": "10.7.0.0/16", "gw": "10.6.0.1"}])
    out = admission.ippool_mutate(_pool(subnet="10.6.0.0/16", gateway="10.6.0.2", routes=[]), owner=owner)
    assert out["spec"]["gateway"] == "10.6.0.2" and out["spec"]["routes"] == []


def test_subnet_without_uid_gives_label_but_no_owner_reference():
    out = admission.ippool_mutate(_pool(subnet="10.6.0.0/16"), owner=admission.OwnerSubnet("s1", "", "", []))
    assert "ownerReferences" not in out["metadata"]
    assert out["metadata"]["labels"]["ipam.spidernet.io/owner-spider-subnet"] == "s1"


def test_terminating_objects_are_left_alone():
    obj = _pool(subnet="10.6.0.0/16")
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert admission.json_patch(obj, admission.ippool_mutate(obj)) == []


def test_unparsable_ranges_are_left_for_the_validator():
    out = admission.ippool_mutate(_pool(subnet="10.6.0.0/16", ips=["10.6.0.0/24"]))
    assert out["spec"]["ips"] == ["10.6.0.0/24"]


def test_subnet_defaults():
    out = admission.subnet_mutate({"metadata": {"name": "s"}, "spec": {"subnet": "10.8.0.0/16",
                                                                        "ips": ["10.8.0.2", "10.8.0.1"]}})
    assert out["spec"] == {"subnet": "10.8.0.0/16", "ips": ["10.8.0.1-10.8.0.2"], "ipVersion": 4}
    assert out["metadata"]["labels"] == {"ipam.spidernet.io/subnet-cidr": "10-8-0-0-16"}
    assert out["metadata"]["finalizers"] == [FINALIZER]


def test_reservedip_defaults_and_refuses_empty_ips():
    out = admission.reservedip_mutate({"metadata": {}, "spec": {"ips": ["fd00::3", "fd00::1-fd00::2"]}})
    assert out["spec"] == {"ips": ["fd00::1-fd00::3"], "ipVersion": 6}
    with pytest.raises(InvalidInput, match="at least one IP range"):
        admission.reservedip_mutate({"metadata": {}, "spec": {"ips": []}})


def test_coordinator_defaults_normalise_and_require_pod_cidr_type():
    out = netconf.coordinator_mutate({"metadata": {"name": "default"}, "spec": {
        "podCIDRType": "calico", "tunePodRoutes": False,
        "policyRoutes": [{"dst": "10.9.0.1", "gw": "10.9.0.254"}]}})
    spec = out["spec"]
    assert (spec["mode"], spec["tunePodRoutes"], spec["hostRuleTable"], spec["vethMTU"]) == ("auto", False, 500, 1500)
    assert spec["policyRoutes"] == [{"dst": "10.9.0.1/32", "gw": "10.9.0.254"}]
    assert out["metadata"]["finalizers"] == [FINALIZER]
    with pytest.raises(InvalidInput, match="podCIDRType is required"):
        netconf.coordinator_mutate({"metadata": {}, "spec": {}})


@pytest.mark.parametrize(("spec", "message"), [
    ({"podCIDRType": "weave"}, "podCIDRType: must be one of"),
    ({"podCIDRType": "auto", "mode": "bridge"}, "mode: must be one of"),
    ({"podCIDRType": "auto", "hijackCIDR": ["10.0.0.0/33"]}, "hijackCIDR[0]"),
    ({"podCIDRType": "auto", "policyRoutes": [{"dst": "10.0.0.0/8", "gw": "fd00::1"}]}, "different IP families"),
    ({"podCIDRType": "auto", "podMACPrefix": "zz:00"}, "two hex bytes"),
    ({"podCIDRType": "auto", "podRPFilter": 3}, "podRPFilter"),
    ({"podCIDRType": "auto", "vethLinkAddress": "nope"}, "vethLinkAddress"),
])
def test_coordinator_rules_name_the_field(spec, message):
    problems = netconf.coordinator_problems(spec)
    assert len(problems) == 1 and message in problems[0]


def test_coordinator_disable_alias_is_accepted():
    assert netconf.coordinator_problems({"podCIDRType": "auto", "mode": "disable"}) == []


def test_multusconfig_defaults_per_type():
    out = netconf.multusconfig_mutate({"metadata": {"annotations": {"cni.spidernet.io/rdma-resource-inject": "g1"}},
                                       "spec": {"cniType": "sriov", "sriov": {"resourceName": "r"}}})
    spec = out["spec"]
    assert spec["sriov"]["ippools"] == {"ipv4": [], "ipv6": [], "matchMasterSubnet": False}
    assert spec["enableCoordinator"] is True and spec["coordinator"]["tunePodRoutes"] is True
    assert out["metadata"]["labels"] == {"cni.spidernet.io/rdma-resource-inject": "g1"}


@pytest.mark.parametrize(("obj", "message"), [
    ({"spec": {"cniType": "vlan", "vlan": {"master": ["eth0"], "vlanMode": "auto", "vlanID": 5}}},
     "must not be set with vlanMode auto"),
    ({"spec": {"cniType": "macvlan", "macvlan": {"master": ["eth0", "eth1"]}}}, "bond.name"),
    ({"spec": {"cniType": "sriov", "sriov": {"resourceName": "r", "minTxRateMbps": 9, "maxTxRateMbps": 5}}},
     "must not exceed"),
    ({"spec": {"cniType": "custom", "customCNI": "{nope"}}, "customCNI: must be valid JSON"),
    ({"spec": {"cniType": "ovs", "ovs": {"bridge": "br0", "trunk": [{"minID": 10, "maxID": 5}]}}},
     "maxID must not be below minID"),
    ({"metadata": {"annotations": {"multus.spidernet.io/cni-version": "9.9.9"}}, "spec": {"cniType": "custom"}},
     "cni-version"),
    ({"spec": {"cniType": "macvlan", "macvlan": {"master": ["eth0"]}, "chainCNIJsonData": ["[]"]}},
     "chainCNIJsonData[0]"),
])
def test_multusconfig_rules(obj, message):
    problems = netconf.multusconfig_problems(obj)
    assert any(message in p for p in problems), problems


def test_multusconfig_cr_name_cannot_change():
    old = {"metadata": {"annotations": {"multus.spidernet.io/cr-name": "a"}}, "spec": {"cniType": "custom"}}
    new = {"metadata": {"annotations": {"multus.spidernet.io/cr-name": "b"}}, "spec": {"cniType": "custom"}}
    assert any("cannot be added or changed" in p for p in netconf.multusconfig_problems(new, old))


def test_admission_review_parse_refuses_what_is_not_a_review():
    with pytest.raises(InvalidInput, match="not JSON"):
        admission.AdmissionRequest.parse(b"{")
    with pytest.raises(InvalidInput, match="only admission.k8s.io/v1"):
        admission.AdmissionRequest.parse({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1"})
