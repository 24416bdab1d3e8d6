"""The NetworkAttachmentDefinition each SpiderMultusConfig stands for (spec §10.3, Appendix A8/C12), byte for byte:
the same key set in the same order as the spec's worked example and mapping table, for every cniType."""

import doctest
import json

import pytest

from spiderweb.k8s import nad


def smc(spec: dict, *, name="net", namespace="kube-system", annotations=None, uid="u-1") -> dict:
    return {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderMultusConfig",
            "metadata": {"name": name, "namespace": namespace, "uid": uid, "annotations": annotations or {}},
            "spec": spec}


DEFAULT_COORDINATOR = '{"type":"coordinator","mode":"auto","tunePodRoutes":true,"podRPFilter":0}'
CASES = {
    "spec-example": (
        smc({"cniType": "macvlan", "macvlan": {"master": ["ens192"], "vlanID": 100, "ippools": {"ipv4": ["v4-pool"]}}},
            name="macvlan-ens192"),
        '{"cniVersion":"0.3.1","name":"macvlan-ens192","plugins":[{"type":"ifacer","interfaces":["ens192"],'
        '"vlanID":100},{"type":"macvlan","master":"ens192.100","mode":"bridge","mtu":0,"ipam":{"type":"spiderpool",'
        '"default_ipv4_ippool":["v4-pool"]}},' + DEFAULT_COORDINATOR + ']}'),
    "macvlan-dual-stack": (
        smc({"cniType": "macvlan", "macvlan": {"master": ["eth1"], "ippools": {"ipv4": ["p4"], "ipv6": ["p6*"]}}}),
        '{"cniVersion":"0.3.1","name":"net","plugins":[{"type":"macvlan","master":"eth1","mode":"bridge","mtu":0,'
        '"ipam":{"type":"spiderpool","default_ipv4_ippool":["p4"],"default_ipv6_ippool":["p6*"]}},'
        + DEFAULT_COORDINATOR + ']}'),
    "macvlan-bond-vlan-chain-coordinator": (
        smc({"cniType": "macvlan",
             "macvlan": {"master": ["eth1", "eth2"], "vlanID": 200, "mtu": 9000,
                         "bond": {"name": "bond0", "mode": 1, "options": "miimon=100;primary=eth1"}},
             "chainCNIJsonData": ['{"type":"tuning","sysctl":{"net.core.somaxconn":"500"}}'],
             "coordinator": {"podDefaultRouteNIC": "net1", "podRPFilter": -1, "hostRuleTable": 600,
                             "hijackCIDR": ["10.233.0.0/18"], "vethMTU": 9000}},
            annotations={"multus.spidernet.io/cni-version": "1.0.0", "cni.spidernet.io/cniconfig-name": "bonded"}),
        '{"cniVersion":"1.0.0","name":"bonded","plugins":[{"type":"ifacer","interfaces":["eth1","eth2"],'
        '"vlanID":200,"bond":{"name":"bond0","mode":1,"options":"miimon=100;primary=eth1"}},{"type":"macvlan",'
        '"master":"bond0.200","mode":"bridge","mtu":9000,"ipam":{"type":"spiderpool"}},{"type":"tuning","sysctl":'
        '{"net.core.somaxconn":"500"}},{"type":"coordinator","mode":"auto","hijackCIDR":["10.233.0.0/18"],'
        '"podDefaultRouteNic":"net1","vethMTU":9000,"tunePodRoutes":false,"txQueueLen":0,"podRPFilter":-1,'
        '"hostRuleTable":600}]}'),
    "ipvlan-vlan": (
        smc({"cniType": "ipvlan", "ipvlan": {"master": ["eth1"], "vlanID": 10}}),
        '{"cniVersion":"0.3.1","name":"net","plugins":[{"type":"ifacer","interfaces":["eth1"],"vlanID":10},'
        '{"type":"ipvlan","master":"eth1.10","mtu":0,"ipam":{"type":"spiderpool"}},' + DEFAULT_COORDINATOR + ']}'),
    "vlan-manual": (
        smc({"cniType": "vlan", "vlan": {"master": ["eth1"], "vlanID": 30}}),
        '{"cniVersion":"0.3.1","name":"net","plugins":[{"type":"vlan","master":"eth1","vlanMode":"manual",'
        '"vlanId":30,"mtu":0,"ipam":{"type":"spiderpool"}},' + DEFAULT_COORDINATOR + ']}'),
    "vlan-auto-bond": (
        smc({"cniType": "vlan", "vlan": {"master": ["eth1", "eth2"], "vlanMode": "auto",
                                         "bond": {"name": "bond1", "mode": 4}}}),
        '{"cniVersion":"0.3.1","name":"net","plugins":[{"type":"ifacer","interfaces":["eth1","eth2"],'
        '"bond":{"name":"bond1","mode":4}},{"type":"vlan","master":"bond1","vlanMode":"auto","mtu":0,'
        '"ipam":{"type":"spiderpool"}},' + DEFAULT_COORDINATOR + ']}'),
    "sriov-rdma-tuning": (
        smc({"cniType": "sriov", "sriov": {"resourceName": "spidernet.io/mlnx", "vlanID": 5, "maxTxRateMbps": 100,
                                           "mtu": 1500, "rdmaIsolation": True,
                                           "ippools": {"ipv4": ["vf"], "matchMasterSubnet": True}}}),
        '{"cniVersion":"0.3.1","name":"net","plugins":[{"type":"sriov","vlan":5,"min_tx_rate":0,"max_tx_rate":100,'
        '"ipam":{"type":"spiderpool","default_ipv4_ippool":["vf"],"match_master_subnet":true}},{"type":"rdma"},'
        + DEFAULT_COORDINATOR + ',{"type":"tuning","mtu":1500}]}'),
    "ib-sriov": (
        smc({"cniType": "ib-sriov", "ibsriov": {"resourceName": "spidernet.io/ib"}}),
        '{"cniVersion":"0.3.1","name":"net","plugins":[{"type":"ib-sriov","link_state":"enable",'
        '"rdmaIsolation":true,"ibKubernetesEnabled":false,"ipam":{"type":"spiderpool"}},' + DEFAULT_COORDINATOR
        + ']}'),
    "ipoib": (
        smc({"cniType": "ipoib", "ipoib": {"master": "ib0"}, "disableIPAM": True, "enableCoordinator": False}),
        '{"cniVersion":"0.3.1","name":"net","plugins":[{"type":"ipoib","master":"ib0"}]}'),
    "ovs": (
        smc({"cniType": "ovs", "ovs": {"bridge": "br1", "trunk": [{"minID": 10, "maxID": 20}, {"id": 42}],
                                       "deviceID": "0000:81:00.1", "ippools": {"ipv4": ["o4"]}}}),
        '{"cniVersion":"0.3.1","name":"net","plugins":[{"type":"ovs","bridge":"br1","vlan":0,"trunk":[{"minID":10,'
        '"maxID":20},{"id":42}],"deviceID":"0000:81:00.1","ipam":{"type":"spiderpool","default_ipv4_ippool":["o4"]}},'
        + DEFAULT_COORDINATOR + ']}'),
    "custom": (
        smc({"cniType": "custom", "customCNI": '{"cniVersion": "1.0.0", "name": "calico", "plugins": []}'}),
        '{"cniVersion": "1.0.0", "name": "calico", "plugins": []}'),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_nad_config_is_the_spec_byte_for_byte(case):
    obj, expected = CASES[case]
    assert nad.nad_config_text(obj) == expected


def test_a_custom_smc_without_config_makes_a_nad_without_config():
    body = nad.nad_desired(smc({"cniType": "custom"}, name="calico"))
    assert body["spec"] == {} and body["metadata"]["name"] == "calico"


def test_name_annotations_resource_name_and_owner():
    obj = smc({"cniType": "sriov", "sriov": {"resourceName": "spidernet.io/mlnx"}}, name="vf",
              annotations={"multus.spidernet.io/cr-name": "vf-nad", "team": "net"})
    body = nad.nad_desired(obj)
    assert body["apiVersion"] == "k8s.cni.cncf.io/v1" and body["kind"] == "NetworkAttachmentDefinition"
    assert (body["metadata"]["name"], body["metadata"]["namespace"]) == ("vf-nad", "kube-system")
    assert body["metadata"]["annotations"] == {"multus.spidernet.io/cr-name": "vf-nad", "team": "net",
                                              "k8s.v1.cni.cncf.io/resourceName": "spidernet.io/mlnx"}
    assert body["metadata"]["ownerReferences"] == [{
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderMultusConfig", "name": "vf", "uid": "u-1",
        "controller": True, "blockOwnerDeletion": True}]
    assert json.loads(body["spec"]["config"])["name"] == "vf-nad"


def test_a_replacement_keeps_what_others_put_on_the_nad_and_differs_only_when_it_must():
    obj = smc({"cniType": "macvlan", "macvlan": {"master": ["eth1"]}})
    existing = {**nad.nad_desired(obj)}
    existing["metadata"] = {**existing["metadata"], "resourceVersion": "7", "labels": {"a": "b"},
                            "ownerReferences": [*existing["metadata"]["ownerReferences"],
                                                {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "c"}]}
    desired = nad.nad_desired(obj, existing)
    assert desired["metadata"]["resourceVersion"] == "7" and desired["metadata"]["labels"] == {"a": "b"}
    assert [r["kind"] for r in desired["metadata"]["ownerReferences"]] == ["SpiderMultusConfig", "ConfigMap"]
    assert not nad.nad_differs(existing, desired)
    edited = {**existing, "spec": {"config": '{"cniVersion":"0.3.1"}'}}
    assert nad.nad_differs(edited, desired)
    other = {**existing, "metadata": {**existing["metadata"], "annotations": {"x": "y"}}}
    assert nad.nad_differs(other, desired)


def test_docstring_examples_hold():
    result = doctest.testmod(nad, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
