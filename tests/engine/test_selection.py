"""Unit tests for spiderweb.engine.selection: candidate precedence, Multus lookup, filtering and sorting."""

import json

import pytest

from spiderweb.engine.errors import InvalidInput, NoPoolAvailable, NotFound
from spiderweb.engine.facts import PodFacts, TopController
from spiderweb.engine.selection import (
    APP_API_GROUP,
    APP_API_VERSION,
    APP_KIND,
    APP_NAME,
    APP_NAMESPACE,
    NO_SELECTION_RULES,
    CniDefaults,
    MultusNetwork,
    NicRequest,
    PoolView,
    Rejection,
    auto_pool_matches_owner,
    filter_pools,
    is_auto_pool,
    multus_network_for_nic,
    parse_multus_networks,
    plan_nics,
    sort_by_specificity,
)

IPPOOLS = "ipam.spidernet.io/ippools"
IPPOOL = "ipam.spidernet.io/ippool"
NS_V4 = "ipam.spidernet.io/default-ipv4-ippool"
NS_V6 = "ipam.spidernet.io/default-ipv6-ippool"
NETWORKS = "k8s.v1.cni.cncf.io/networks"
DEFAULT_NETWORK = "v1.multus-cni.io/default-network"

POOL_NAMES = {
    4: ["v4-b", "v4-a", "v4-c", "default-v4", "ns-v4-1", "ns-v4-2", "net1-v4", "x1"],
    6: ["v6-a", "v6-b", "default-v6", "ns-v6"],
}
CLUSTER_DEFAULT = {4: ["default-v4"], 6: ["default-v6"]}
DUAL = frozenset({4, 6})
OWNER = TopController("Deployment", "web", "d-uid", "apps/v1")
NO_CNI_DEFAULTS = CniDefaults()


def make_facts(annotations=None, namespace_annotations=None, **overrides):
    values = {
        "namespace": "default",
        "name": "web-1",
        "uid": "pod-uid",
        "node": "node-1",
        "labels": {"app": "web"},
        "annotations": annotations or {},
        "owner": OWNER,
        "namespace_labels": {"team": "a"},
        "namespace_annotations": namespace_annotations or {},
        "node_labels": {"zone": "z1"},
    }
    values.update(overrides)
    return PodFacts(**values)


def plan(facts, *, if_name="eth0", cni=NO_CNI_DEFAULTS, families=DUAL, cluster_default=None):
    return plan_nics(
        facts,
        if_name=if_name,
        cni=cni,
        pool_names=POOL_NAMES,
        cluster_default=CLUSTER_DEFAULT if cluster_default is None else cluster_default,
        families=families,
    )


# -- plan_nics: rule 2, ipam.spidernet.io/ippools ---------------------------------------------------------------------


def test_ippools_named_mode_returns_every_listed_nic_with_its_own_clean_gateway():
    # Given an ippools annotation naming two NICs and a CNI config asking for clean gateway
    annotation = [
        {"interface": "eth0", "ipv4": ["v4-a"], "ipv6": ["v6-a"]},
        {"interface": "net1", "ipv4": ["net1-v4"], "cleangateway": True},
    ]
    facts = make_facts({IPPOOLS: json.dumps(annotation)})
    # When planning for eth0
    requests = plan(facts, cni=CniDefaults(v4=("x1",), clean_gateway=True))
    # Then both NICs are planned, cleangateway comes from the items, not the CNI config
    assert requests == [
        NicRequest("eth0", False, ("v4-a",), ("v6-a",), "ippools"),
        NicRequest("net1", True, ("net1-v4",), (), "ippools"),
    ]


def test_ippools_wins_over_every_lower_rule():
    facts = make_facts(
        {IPPOOLS: '[{"interface": "eth0", "ipv4": ["v4-a"]}]', IPPOOL: '{"ipv4": ["v4-b"]}'},
        {NS_V4: '["ns-v4-1"]'},
    )
    assert plan(facts, cni=CniDefaults(v4=("x1",))) == [NicRequest("eth0", False, ("v4-a",), (), "ippools")]


def test_ippools_named_mode_must_list_the_nic_being_configured():
    facts = make_facts({IPPOOLS: '[{"interface": "net1", "ipv4": ["v4-a"]}]'})
    with pytest.raises(InvalidInput, match=r"lists interfaces \['net1'\] but not eth0, the NIC being configured"):
        plan(facts)


def test_ippools_rejects_duplicate_interfaces():
    facts = make_facts({IPPOOLS: '[{"interface": "eth0", "ipv4": ["v4-a"]}, {"interface": "eth0", "ipv4": ["x1"]}]'})
    with pytest.raises(InvalidInput, match=r"configures interface\(s\) \['eth0'\] more than once"):
        plan(facts)


def test_ippools_rejects_a_mix_of_named_and_unnamed_items():
    facts = make_facts({IPPOOLS: '[{"interface": "eth0", "ipv4": ["v4-a"]}, {"ipv4": ["x1"]}]'})
    with pytest.raises(InvalidInput, match=r"set interface on every item or on none; items \[1\] have none"):
        plan(facts)


def test_ippools_unnamed_mode_maps_items_to_if_name_then_multus_networks_by_position():
    # Given unnamed items and a Multus networks annotation whose second entry names its NIC
    facts = make_facts(
        {
            IPPOOLS: '[{"ipv4": ["v4-a"]}, {"ipv4": ["v4-b"]}, {"ipv4": ["v4-c"], "cleangateway": true}]',
            NETWORKS: "kube-system/macvlan, sriov@sriov1",
        }
    )
    # When planning, then item 0 is if_name, item 1 the unnamed first network (net1), item 2 the named one
    requests = plan(facts)
    assert [(r.interface, r.v4, r.clean_gateway) for r in requests] == [
        ("eth0", ("v4-a",), False),
        ("net1", ("v4-b",), False),
        ("sriov1", ("v4-c",), True),
    ]


def test_ippools_unnamed_mode_reads_the_json_form_of_multus_networks():
    networks = [{"name": "macvlan", "namespace": "kube-system", "interface": "data0"}, {"name": "ipvlan"}]
    facts = make_facts(
        {IPPOOLS: '[{"ipv4": ["v4-a"]}, {"ipv4": ["v4-b"]}, {"ipv4": ["v4-c"]}]', NETWORKS: json.dumps(networks)}
    )
    assert [r.interface for r in plan(facts)] == ["eth0", "data0", "net2"]


def test_ippools_unnamed_mode_needs_enough_multus_networks():
    facts = make_facts({IPPOOLS: '[{"ipv4": ["v4-a"]}, {"ipv4": ["v4-b"]}]'})
    with pytest.raises(InvalidInput, match="has 2 items without interface names.*which has only 0"):
        plan(facts)


def test_ippools_unnamed_mode_rejects_a_network_that_reuses_if_name():
    facts = make_facts({IPPOOLS: '[{"ipv4": ["v4-a"]}, {"ipv4": ["v4-b"]}]', NETWORKS: "macvlan@eth0"})
    with pytest.raises(InvalidInput, match=r"configures interface\(s\) \['eth0'\] more than once"):
        plan(facts)


def test_ippools_single_unnamed_item_needs_no_multus_annotation():
    facts = make_facts({IPPOOLS: '[{"ipv4": ["v4-a"]}]'})
    assert plan(facts, if_name="net3") == [NicRequest("net3", False, ("v4-a",), (), "ippools")]


def test_ippools_keys_match_case_insensitively_like_go_and_unknown_keys_are_ignored():
    facts = make_facts({IPPOOLS: '[{"Interface": "eth0", "IPv4": ["v4-a"], "cleanGateway": true, "note": "x"}]'})
    assert plan(facts) == [NicRequest("eth0", True, ("v4-a",), (), "ippools")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[{", "ipam.spidernet.io/ippools is not valid JSON"),
        ("[]", "must list at least one NIC"),
        ('{"interface": "eth0"}', "must be a JSON list of per-NIC objects, got dict"),
        ('["eth0"]', r"ippools\[0\] must be an object"),
        ('[{"interface": 0, "ipv4": ["v4-a"]}]', r"ippools\[0\].interface must be a string"),
        ('[{"interface": "eth0", "ipv4": "v4-a"}]', r"ippools\[0\].ipv4 must be a list of pool names"),
        ('[{"interface": "eth0", "ipv6": [""]}]', r"ippools\[0\].ipv6 must be a list of pool names"),
        ('[{"interface": "eth0", "ipv4": ["v4-a"], "cleangateway": "true"}]', "cleangateway must be true or false"),
    ],
)
def test_malformed_ippools_annotation_fails_without_falling_back(value, message):
    facts = make_facts({IPPOOLS: value}, {NS_V4: '["ns-v4-1"]'})
    with pytest.raises(InvalidInput, match=message):
        plan(facts)


# -- plan_nics: rule 3, ipam.spidernet.io/ippool ----------------------------------------------------------------------


def test_ippool_annotation_serves_only_the_current_nic_with_the_cni_clean_gateway():
    facts = make_facts({IPPOOL: '{"ipv4": ["v4-a", "v4-b"], "ipv6": ["v6-b"]}'}, {NS_V4: '["ns-v4-1"]'})
    requests = plan(facts, if_name="net2", cni=CniDefaults(clean_gateway=True))
    assert requests == [NicRequest("net2", True, ("v4-a", "v4-b"), ("v6-b",), "ippool")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "ipam.spidernet.io/ippool is not valid JSON"),
        ('["v4-a"]', "must be a JSON object like"),
        ('{"ipv4": [1]}', r"ippool.ipv4 must be a list of pool names"),
    ],
)
def test_malformed_ippool_annotation_fails(value, message):
    with pytest.raises(InvalidInput, match=message):
        plan(make_facts({IPPOOL: value}))


# -- plan_nics: rules 4-6 ---------------------------------------------------------------------------------------------


def test_namespace_default_pools_come_next():
    facts = make_facts(namespace_annotations={NS_V4: '["ns-v4-2", "ns-v4-1"]', NS_V6: '["ns-v6"]'})
    assert plan(facts, cni=CniDefaults(v4=("x1",), clean_gateway=True)) == [
        NicRequest("eth0", True, ("ns-v4-2", "ns-v4-1"), ("ns-v6",), "namespace")
    ]


def test_one_namespace_family_is_enough_for_the_namespace_rule():
    facts = make_facts(namespace_annotations={NS_V6: '["ns-v6"]'})
    assert plan(facts, cni=CniDefaults(v4=("x1",))) == [NicRequest("eth0", False, (), ("ns-v6",), "namespace")]


def test_empty_namespace_lists_fall_through_to_the_cni_defaults():
    facts = make_facts(namespace_annotations={NS_V4: "[]", NS_V6: "null"})
    assert plan(facts, cni=CniDefaults(v4=("x1",), v6=("v6-a",)))[0].rule == "cni"
    facts = make_facts(namespace_annotations={NS_V4: "", NS_V6: " "})
    assert plan(facts, cni=CniDefaults(v4=("x1",), v6=("v6-a",))) == [
        NicRequest("eth0", False, ("x1",), ("v6-a",), "cni")
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ns-v4-1", "namespace annotation ipam.spidernet.io/default-ipv4-ippool is not valid JSON"),
        ('{"ipv4": ["ns-v4-1"]}', "default-ipv4-ippool must be a list of pool names"),
    ],
)
def test_malformed_namespace_annotation_fails(value, message):
    with pytest.raises(InvalidInput, match=message):
        plan(make_facts(namespace_annotations={NS_V4: value}))


def test_cluster_default_pools_are_the_last_resort():
    assert plan(make_facts(), cni=CniDefaults(clean_gateway=True)) == [
        NicRequest("eth0", True, ("default-v4",), ("default-v6",), "cluster")
    ]


def test_cluster_default_pools_are_taken_in_name_order():
    facts = make_facts()
    requests = plan(facts, cluster_default={4: ["zz", "default-v4", "aa"], 6: []})
    assert requests == [NicRequest("eth0", False, ("aa", "default-v4", "zz"), (), "cluster")]


def test_no_rule_at_all_raises_no_pool_available_with_spiderpools_message():
    with pytest.raises(NoPoolAvailable) as excinfo:
        plan(make_facts(), cluster_default={4: [], 6: []})
    assert excinfo.value.message == NO_SELECTION_RULES
    assert excinfo.value.code == "no_pool_available"


def test_cluster_defaults_only_of_a_disabled_family_count_as_none():
    with pytest.raises(NoPoolAvailable, match=NO_SELECTION_RULES):
        plan(make_facts(), cluster_default={6: ["default-v6"]}, families=frozenset({4}))


# -- plan_nics: wildcards and families --------------------------------------------------------------------------------


def test_wildcards_expand_in_place_to_sorted_names_of_that_family():
    facts = make_facts({IPPOOL: '{"ipv4": ["x1", "v4-*"], "ipv6": ["v6-?"]}'})
    assert plan(facts)[0].v4 == ("x1", "v4-a", "v4-b", "v4-c")
    assert plan(facts)[0].v6 == ("v6-a", "v6-b")


def test_wildcards_leave_out_names_also_listed_literally_or_already_expanded():
    facts = make_facts({IPPOOL: '{"ipv4": ["v4-*", "v4-b", "v4-[ab]"]}'})
    assert plan(facts)[0].v4 == ("v4-a", "v4-c", "v4-b")


def test_literal_duplicates_are_kept_for_filter_pools_to_reject():
    facts = make_facts({IPPOOL: '{"ipv4": ["v4-a", "v4-a"]}'})
    assert plan(facts)[0].v4 == ("v4-a", "v4-a")


def test_bracket_wildcards_and_patterns_in_namespace_and_cni_rules():
    facts = make_facts(namespace_annotations={NS_V4: '["ns-v4-[2]"]'})
    assert plan(facts)[0].v4 == ("ns-v4-2",)
    assert plan(make_facts(), cni=CniDefaults(v4=("v4-?",)))[0].v4 == ("v4-a", "v4-b", "v4-c")


def test_a_pattern_matching_nothing_leaves_that_family_empty():
    facts = make_facts({IPPOOL: '{"ipv4": ["nothing-*"], "ipv6": ["v6-a"]}'})
    assert plan(facts) == [NicRequest("eth0", False, (), ("v6-a",), "ippool")]


def test_disabled_families_are_dropped_silently():
    facts = make_facts({IPPOOL: '{"ipv4": ["v4-a"], "ipv6": ["v6-a"]}'})
    assert plan(facts, families=frozenset({6})) == [NicRequest("eth0", False, (), ("v6-a",), "ippool")]


def test_current_nic_without_any_candidate_raises_no_pool_available_naming_the_rule():
    facts = make_facts({IPPOOL: '{"ipv6": ["v6-a"]}'})
    with pytest.raises(
        NoPoolAvailable,
        match="no IPPool available for eth0: pod annotation ipam.spidernet.io/ippool yields no IPv4 pool",
    ) as excinfo:
        plan(facts, families=frozenset({4}))
    assert excinfo.value.details["requested"] == {"ipv4": [], "ipv6": ["v6-a"]}
    assert excinfo.value.details["rule"] == "ippool"


def test_other_nics_without_candidates_are_kept_empty_as_in_spiderpool():
    facts = make_facts({IPPOOLS: '[{"interface": "eth0", "ipv4": ["v4-a"]}, {"interface": "net1", "ipv6": ["v6-a"]}]'})
    assert plan(facts, families=frozenset({4}))[1] == NicRequest("net1", False, (), (), "ippools")


@pytest.mark.parametrize(
    ("if_name", "families", "message"),
    [
        ("", DUAL, "if_name must be a non-empty interface name"),
        ("eth0", frozenset(), "families must be a non-empty subset"),
        ("eth0", frozenset({4, 5}), "families must be a non-empty subset"),
    ],
)
def test_plan_nics_rejects_bad_arguments(if_name, families, message):
    with pytest.raises(InvalidInput, match=message):
        plan(make_facts(), if_name=if_name, families=families)


def test_nic_request_pools_by_family():
    request = NicRequest("eth0", False, ("a",), ("b",), "cni")
    assert (request.pools(4), request.pools(6)) == (("a",), ("b",))


# -- Multus networks --------------------------------------------------------------------------------------------------


def test_parse_multus_networks_comma_form():
    networks = parse_multus_networks(" kube-system/macvlan , ipvlan@data1,ns2/sriov ", default_namespace="apps")
    assert networks == [
        MultusNetwork("kube-system", "macvlan", "net1"),
        MultusNetwork("apps", "ipvlan", "data1"),
        MultusNetwork("ns2", "sriov", "net3"),
    ]
    assert networks[0].nad == "kube-system/macvlan"


def test_parse_multus_networks_json_form():
    text = '[{"name": "macvlan", "namespace": "kube-system"}, {"name": "ipvlan", "interface": "data1", "ips": []}]'
    assert parse_multus_networks(text, default_namespace="apps") == [
        MultusNetwork("kube-system", "macvlan", "net1"),
        MultusNetwork("apps", "ipvlan", "data1"),
    ]


def test_parse_multus_networks_empty():
    assert parse_multus_networks("", default_namespace="apps") == []
    assert parse_multus_networks("  ", default_namespace="apps") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,,b", "has an empty entry at position 1"),
        ("a/b/c", "is not of the form"),
        ("a@b@c", "is not of the form"),
        ("macvlan@", "is not of the form"),
        ("/macvlan", "is not of the form"),
        ("ns/", "is not of the form"),
        ("[{", "Multus network annotation is not valid JSON"),
        ('[{"namespace": "a"}]', "entry 0 needs a non-empty name"),
        ('["macvlan"]', "entry 0 must be an object"),
        ('[{"name": "m", "interface": 1}]', "entry 0.interface must be a string"),
        (None, "must be a string"),
        ('{"name": "macvlan"}', "must be a JSON list of network objects"),
        ("Macvlan", "name 'Macvlan' is not a valid Kubernetes name"),
        ("kube_system/macvlan", "namespace 'kube_system' is not a valid Kubernetes name"),
        ("macvlan@a-very-long-interface-name", "is not a valid Linux interface name"),
        ('[{"name": "macvlan", "interface": "eth 1"}]', "is not a valid Linux interface name"),
    ],
)
def test_parse_multus_networks_rejects_malformed_annotations(text, message):
    with pytest.raises(InvalidInput, match=message):
        parse_multus_networks(text, default_namespace="apps")


def test_first_nic_network_comes_from_the_default_network_annotation_in_the_spiderpool_namespace():
    facts = make_facts({DEFAULT_NETWORK: "calico", NETWORKS: "macvlan"})
    assert multus_network_for_nic(facts, "eth0", spiderpool_namespace="spiderpool") == "spiderpool/calico"
    facts = make_facts({DEFAULT_NETWORK: "kube-system/cilium"})
    assert (
        multus_network_for_nic(facts, "eth0", spiderpool_namespace="spiderpool", cluster_network="kube-system/calico")
        == "kube-system/cilium"
    )


def test_first_nic_falls_back_to_the_cluster_network_then_none():
    facts = make_facts()
    assert (
        multus_network_for_nic(facts, "eth0", spiderpool_namespace="sp", cluster_network="kube-system/calico")
        == "kube-system/calico"
    )
    assert multus_network_for_nic(facts, "eth0", spiderpool_namespace="sp", cluster_network="calico") == "sp/calico"
    assert multus_network_for_nic(facts, "eth0", spiderpool_namespace="sp") is None


def test_first_nic_name_is_configurable():
    facts = make_facts({DEFAULT_NETWORK: "calico"})
    assert multus_network_for_nic(facts, "ens0", first_nic="ens0", spiderpool_namespace="sp") == "sp/calico"
    assert multus_network_for_nic(facts, "eth0", first_nic="ens0", spiderpool_namespace="sp") is None


def test_other_nics_come_from_the_networks_annotation_in_the_pod_namespace():
    facts = make_facts({NETWORKS: "macvlan, kube-system/sriov@data1"}, namespace="apps")
    assert multus_network_for_nic(facts, "net1", spiderpool_namespace="sp") == "apps/macvlan"
    assert multus_network_for_nic(facts, "data1", spiderpool_namespace="sp") == "kube-system/sriov"
    assert multus_network_for_nic(facts, "net2", spiderpool_namespace="sp") is None


def test_default_network_annotation_must_name_one_network():
    facts = make_facts({DEFAULT_NETWORK: "calico,cilium"})
    with pytest.raises(InvalidInput, match="must name exactly one network"):
        multus_network_for_nic(facts, "eth0", spiderpool_namespace="sp")


# -- filter_pools -----------------------------------------------------------------------------------------------------


def pool(name="p", version=4, **fields):
    return PoolView(name, version, "10.0.0.0/24" if version == 4 else "fd00::/64", **fields)


def only(candidate, *, facts=None, version=4, interface="eth0", nad=None):
    """Filter a single pool and return its rejection reason, or None when accepted."""
    accepted, rejections = filter_pools(
        [candidate.name],
        {candidate.name: candidate},
        version=version,
        facts=facts or make_facts(),
        interface=interface,
        nad=nad,
        spiderpool_namespace="spiderpool",
    )
    if accepted:
        assert accepted == [candidate.name]
        assert rejections == []
        return None
    assert len(rejections) == 1
    assert rejections[0].pool == candidate.name
    return rejections[0].reason


def auto_labels(**overrides):
    labels = {
        APP_API_GROUP: "apps",
        APP_API_VERSION: "v1",
        APP_KIND: "Deployment",
        APP_NAMESPACE: "default",
        APP_NAME: "web",
    }
    labels.update(overrides)
    return labels


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (pool(terminating=True, disable=True), "pool is terminating"),
        (pool(disable=True), "pool is disabled"),
        (pool(version=6), "IPv6 pool cannot serve IPv4"),
        (pool(node_name=("n2", "n3")), "node 'node-1' not in nodeName ['n2', 'n3']"),
        (pool(node_affinity={"matchLabels": {"zone": "z2"}}), "node labels do not match nodeAffinity"),
        (pool(namespace_name=("kube-system",)), "namespace 'default' not in namespaceName ['kube-system']"),
        (pool(namespace_affinity={"matchLabels": {"team": "b"}}), "namespace labels do not match namespaceAffinity"),
        (pool(pod_affinity={"matchLabels": {"app": "db"}}), "pod labels do not match podAffinity"),
        (
            pool(multus_name=("kube-system/macvlan-a",)),
            "NIC eth0 has no known Multus network, but the pool requires one of multusName ['kube-system/macvlan-a']",
        ),
    ],
)
def test_each_filter_gives_a_reason_a_person_understands(candidate, reason):
    assert only(candidate) == reason


def test_pool_passing_every_check_is_accepted():
    candidate = pool(
        node_name=("node-1",),
        namespace_name=("default",),
        pod_affinity={"matchLabels": {"app": "web"}},
        node_affinity={"matchLabels": {"zone": "z1"}},
        namespace_affinity={"matchLabels": {"team": "a"}},
        multus_name=("kube-system/macvlan",),
    )
    assert only(candidate, nad="kube-system/macvlan") is None


def test_ipv4_pool_cannot_serve_ipv6():
    assert only(pool(version=4), version=6) == "IPv4 pool cannot serve IPv6"


def test_node_name_replaces_node_affinity():
    # Given a pool whose nodeName lists the node but whose nodeAffinity would not match
    candidate = pool(node_name=("node-1",), node_affinity={"matchLabels": {"zone": "elsewhere"}})
    # Then nodeName decides and the pool is accepted
    assert only(candidate) is None


def test_namespace_name_replaces_namespace_affinity():
    candidate = pool(namespace_name=("default",), namespace_affinity={"matchLabels": {"team": "nobody"}})
    assert only(candidate) is None


def test_empty_selectors_are_set_and_match_everything():
    assert only(pool(node_affinity={}, namespace_affinity={}, pod_affinity={})) is None


def test_a_malformed_selector_rejects_the_pool_instead_of_failing_the_request():
    reason = only(pool(node_affinity={"matchLabels": {"zone": ["z1"]}}))
    assert reason.startswith("pool's nodeAffinity is invalid: ")


def test_multus_name_compares_the_nics_network_and_qualifies_bare_names():
    candidate = pool(multus_name=("macvlan", "kube-system/ipvlan"))
    assert only(candidate, nad="spiderpool/macvlan") is None
    assert only(candidate, nad="kube-system/ipvlan") is None
    assert only(candidate, interface="net1", nad="kube-system/macvlan") == (
        "NIC net1 uses network 'kube-system/macvlan' not in multusName ['spiderpool/macvlan', 'kube-system/ipvlan']"
    )


def test_pools_without_multus_name_ignore_the_nad():
    assert only(pool(), nad=None) is None
    assert only(pool(), nad="kube-system/anything") is None


def test_auto_pool_matches_the_top_controller_not_pod_labels():
    candidate = pool("auto4-web-eth0-abcde", pod_affinity={"matchLabels": auto_labels()})
    assert is_auto_pool(candidate)
    # Pod labels are irrelevant: they do not carry the app-* labels, yet the owner matches
    assert only(candidate) is None
    # Pod labels that copy the app-* labels do not help when the owner differs
    other_owner = make_facts(owner=TopController("Deployment", "api", "u2", "apps/v1"), labels=auto_labels())
    assert only(candidate, facts=other_owner) == (
        "pod's top controller apps/v1 Deployment default/api is not this auto pool's application "
        "apps/v1 Deployment default/web"
    )


def test_auto_pool_core_group_is_empty():
    candidate = pool(pod_affinity={"matchLabels": auto_labels(**{APP_API_GROUP: "", APP_KIND: "Pod", APP_NAME: "p"})})
    facts = make_facts(owner=TopController("Pod", "p", "u", "v1"))
    assert auto_pool_matches_owner(candidate, facts)
    assert only(candidate, facts=facts) is None


@pytest.mark.parametrize("field", [APP_API_GROUP, APP_API_VERSION, APP_KIND, APP_NAMESPACE, APP_NAME])
def test_auto_pool_needs_every_identity_field_to_match(field):
    candidate = pool(pod_affinity={"matchLabels": auto_labels(**{field: "other"})})
    assert not auto_pool_matches_owner(candidate, make_facts())
    assert "is not this auto pool's application" in only(candidate)


def test_auto_pool_success_skips_the_multus_check():
    candidate = pool(pod_affinity={"matchLabels": auto_labels()}, multus_name=("kube-system/macvlan",))
    assert only(candidate, nad=None) is None


def test_not_an_auto_pool_without_all_five_labels():
    labels = auto_labels()
    del labels[APP_NAME]
    candidate = pool(pod_affinity={"matchLabels": labels})
    assert not is_auto_pool(candidate)
    assert not is_auto_pool(pool())
    assert not auto_pool_matches_owner(candidate, make_facts())
    assert only(candidate) == "pod labels do not match podAffinity"


def test_unknown_pools_fail_the_whole_request():
    with pytest.raises(NotFound, match=r"IPPool\(s\) \['missing'\] named for IPv4 of eth0 do not exist") as excinfo:
        filter_pools(
            ["p", "missing"],
            {"p": pool()},
            version=4,
            facts=make_facts(),
            interface="eth0",
            nad=None,
            spiderpool_namespace="sp",
        )
    assert excinfo.value.details == {"pools": ["missing"]}


def test_repeated_pools_fail_the_whole_request():
    with pytest.raises(InvalidInput, match="pool 'p' is listed twice for IPv4 of eth0"):
        filter_pools(
            ["p", "p"],
            {"p": pool()},
            version=4,
            facts=make_facts(),
            interface="eth0",
            nad=None,
            spiderpool_namespace="sp",
        )


def test_filter_pools_returns_accepted_pools_most_specific_first_and_every_rejection():
    pools = {
        "plain": pool("plain"),
        "off": pool("off", disable=True),
        "by-node": pool("by-node", node_name=("node-1",)),
        "plain2": pool("plain2"),
        "by-pod": pool("by-pod", pod_affinity={"matchLabels": {"app": "web"}}),
        "v6": pool("v6", version=6),
    }
    accepted, rejections = filter_pools(
        list(pools), pools, version=4, facts=make_facts(), interface="eth0", nad=None, spiderpool_namespace="sp"
    )
    assert accepted == ["by-pod", "by-node", "plain", "plain2"]
    assert rejections == [Rejection("off", "pool is disabled"), Rejection("v6", "IPv6 pool cannot serve IPv4")]
    assert [r.to_dict() for r in rejections][0] == {"pool": "off", "reason": "pool is disabled"}


def test_filter_pools_of_an_empty_list():
    assert filter_pools(
        [], {}, version=4, facts=make_facts(), interface="eth0", nad=None, spiderpool_namespace="sp"
    ) == ([], [])


# -- sort_by_specificity ----------------------------------------------------------------------------------------------


def test_specificity_order_is_lexicographic_over_the_six_fields():
    pools = [
        pool("multus", multus_name=("m",)),
        pool("ns-affinity", namespace_affinity={}),
        pool("ns-name", namespace_name=("default",)),
        pool("node-affinity", node_affinity={}),
        pool("node-name", node_name=("node-1",)),
        pool("pod", pod_affinity={}),
        pool("none"),
        pool("node-name+multus", node_name=("node-1",), multus_name=("m",)),
    ]
    assert [p.name for p in sort_by_specificity(pools)] == [
        "pod",
        "node-name+multus",
        "node-name",
        "node-affinity",
        "ns-name",
        "ns-affinity",
        "multus",
        "none",
    ]


def test_specificity_sort_is_stable_among_equals():
    # Given pools of equal specificity in the user's order (A4: upstream shuffles them)
    names = ["z", "a", "m", "b", "y"]
    pools = [pool(name, node_name=("node-1",)) for name in names]
    # Then the user's order is kept
    assert [p.name for p in sort_by_specificity(pools)] == names
    assert sort_by_specificity([]) == []


def test_pool_view_turns_name_lists_into_tuples():
    view = PoolView("p", 4, "10.0.0.0/24", node_name=["n1"], namespace_name=["ns"], multus_name=None)
    assert view.node_name == ("n1",)
    assert view.namespace_name == ("ns",)
    assert view.multus_name == ()
