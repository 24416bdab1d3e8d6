"""The Helm chart in helm/spiderweb: Spiderpool-compatible CRDs, example manifests, values and rendered objects.

Given the static files, these tests check what a kube-apiserver and a Spiderpool user would notice: every CRD is a
valid apiextensions.k8s.io/v1 object with a structural schema; group, version, scope, names, short names,
categories, status subresources and printer columns match Spiderpool (spec §1.0); field names, enums, ranges
and defaults match Spiderpool's v2beta1 types; Spiderpool's documented example manifests validate unchanged;
the agent's RBAC is read-only and never touches Secrets.

When a `helm` binary exists ($SPIDERWEB_HELM, /var/cache/spiderweb-lab/bin/helm from tests/helm/build_helm.sh,
or PATH) the chart is also linted and rendered, and the rendered objects are checked; otherwise only those tests
are skipped.
"""

from __future__ import annotations

import base64
import copy
import doctest
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helm import crd_schema
from tests.helm.crd_schema import (
    MISSING,
    jsonpath_lookup,
    jsonpath_parse,
    jsonpath_schema,
    structural_errors,
    validation_errors,
    with_defaults,
)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "spiderweb"
CRD_DIR = CHART / "crds"
EXAMPLES = Path(__file__).resolve().parent / "examples"
GROUP = "spiderpool.spidernet.io"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate", "*"}

WIDE = "wide"
# Spec §1.0: kind -> plural, scope, short name, status subresource, printer columns (name, jsonPath, wide?).
INVENTORY = {
    "SpiderIPPool": {
        "plural": "spiderippools", "scope": "Cluster", "short": ["sp"], "status": True,
        "columns": [
            ("VERSION", ".spec.ipVersion", ""),
            ("SUBNET", ".spec.subnet", ""),
            ("ALLOCATED-IP-COUNT", ".status.allocatedIPCount", ""),
            ("TOTAL-IP-COUNT", ".status.totalIPCount", ""),
            ("DEFAULT", ".spec.default", ""),
            ("DISABLE", ".spec.disable", WIDE),
            ("NodeName", ".spec.nodeName", WIDE),
            ("MultusName", ".spec.multusName", WIDE),
            ("APP-NAMESPACE", r".spec.podAffinity.matchLabels['ipam\.spidernet\.io/app\-namespace']", WIDE),
        ],
    },
    "SpiderSubnet": {
        "plural": "spidersubnets", "scope": "Cluster", "short": ["ss"], "status": True,
        "columns": [
            ("VERSION", ".spec.ipVersion", ""),
            ("SUBNET", ".spec.subnet", ""),
            ("ALLOCATED-IP-COUNT", ".status.allocatedIPCount", ""),
            ("TOTAL-IP-COUNT", ".status.totalIPCount", ""),
        ],
    },
    "SpiderReservedIP": {
        "plural": "spiderreservedips", "scope": "Cluster", "short": ["sr"], "status": False,
        "columns": [("VERSION", ".spec.ipVersion", "")],
    },
    "SpiderEndpoint": {
        "plural": "spiderendpoints", "scope": "Namespaced", "short": ["se"], "status": False,
        "columns": [
            ("INTERFACE", ".status.current.ips[0].interface", ""),
            ("IPV4POOL", ".status.current.ips[0].ipv4Pool", ""),
            ("IPV4", ".status.current.ips[0].ipv4", ""),
            ("IPV6POOL", ".status.current.ips[0].ipv6Pool", ""),
            ("IPV6", ".status.current.ips[0].ipv6", ""),
            ("NODE", ".status.current.node", ""),
        ],
    },
    "SpiderMultusConfig": {
        "plural": "spidermultusconfigs", "scope": "Namespaced", "short": ["smc"], "status": False, "columns": [],
    },
    "SpiderCoordinator": {
        "plural": "spidercoordinators", "scope": "Cluster", "short": ["scc"], "status": True, "columns": [],
    },
}

ROUTE_FIELDS = {"dst", "gw"}
POOLS_FIELDS = {"ipv4", "ipv6", "matchMasterSubnet"}
COORDINATOR_FIELDS = {
    "mode", "podCIDRType", "hijackCIDR", "policyRoutes", "podMACPrefix", "tunePodRoutes", "podDefaultRouteNIC",
    "hostRuleTable", "podRPFilter", "txQueueLen", "vethLinkAddress", "vethMTU",
}
# Field names of Spiderpool v2beta1 (spec §1.2-§1.7), by kind and dotted path inside the object.
FIELDS = {
    ("SpiderIPPool", "spec"): {
        "ipVersion", "subnet", "ips", "excludeIPs", "gateway", "routes", "podAffinity", "namespaceAffinity",
        "namespaceName", "nodeAffinity", "nodeName", "multusName", "default", "disable",
    },
    ("SpiderIPPool", "spec.routes[]"): ROUTE_FIELDS,
    ("SpiderIPPool", "spec.podAffinity"): {"matchLabels", "matchExpressions"},
    ("SpiderIPPool", "spec.podAffinity.matchExpressions[]"): {"key", "operator", "values"},
    ("SpiderIPPool", "status"): {"allocatedIPs", "allocatedIPCount", "totalIPCount"},
    ("SpiderSubnet", "spec"): {"ipVersion", "subnet", "ips", "excludeIPs", "gateway", "routes"},
    ("SpiderSubnet", "status"): {"controlledIPPools", "totalIPCount", "allocatedIPCount"},
    ("SpiderReservedIP", ""): {"apiVersion", "kind", "metadata", "spec"},
    ("SpiderReservedIP", "spec"): {"ipVersion", "ips"},
    ("SpiderEndpoint", ""): {"apiVersion", "kind", "metadata", "status"},
    ("SpiderEndpoint", "status"): {"current", "ownerControllerType", "ownerControllerName"},
    ("SpiderEndpoint", "status.current"): {"uid", "node", "ips"},
    ("SpiderEndpoint", "status.current.ips[]"): {
        "interface", "ipv4", "ipv6", "ipv4Pool", "ipv6Pool", "vlan", "ipv4Gateway", "ipv6Gateway",
        "cleanGateway", "routes", "mac",
    },
    ("SpiderMultusConfig", ""): {"apiVersion", "kind", "metadata", "spec"},
    ("SpiderMultusConfig", "spec"): {
        "cniType", "macvlan", "ipvlan", "vlan", "sriov", "ovs", "ibsriov", "ipoib", "enableCoordinator",
        "disableIPAM", "coordinator", "chainCNIJsonData", "customCNI",
    },
    ("SpiderMultusConfig", "spec.macvlan"): {"master", "mtu", "vlanID", "bond", "rdmaResourceName", "ippools"},
    ("SpiderMultusConfig", "spec.ipvlan"): {"master", "mtu", "vlanID", "bond", "rdmaResourceName", "ippools"},
    ("SpiderMultusConfig", "spec.vlan"): {
        "master", "mtu", "vlanMode", "vlanID", "bond", "rdmaResourceName", "ippools",
    },
    ("SpiderMultusConfig", "spec.sriov"): {
        "resourceName", "vlanID", "mtu", "minTxRateMbps", "maxTxRateMbps", "rdmaIsolation", "ippools",
    },
    ("SpiderMultusConfig", "spec.ibsriov"): {
        "resourceName", "pkey", "linkState", "rdmaIsolation", "enableIbKubernetes", "ippools",
    },
    ("SpiderMultusConfig", "spec.ipoib"): {"master", "ippools"},
    ("SpiderMultusConfig", "spec.ovs"): {"bridge", "vlan", "trunk", "deviceID", "ippools"},
    ("SpiderMultusConfig", "spec.ovs.trunk[]"): {"minID", "maxID", "id"},
    ("SpiderMultusConfig", "spec.macvlan.bond"): {"name", "mode", "options"},
    ("SpiderMultusConfig", "spec.macvlan.ippools"): POOLS_FIELDS,
    ("SpiderMultusConfig", "spec.sriov.ippools"): POOLS_FIELDS,
    ("SpiderMultusConfig", "spec.coordinator"): COORDINATOR_FIELDS,
    ("SpiderMultusConfig", "spec.coordinator.policyRoutes[]"): ROUTE_FIELDS,
    ("SpiderCoordinator", "spec"): COORDINATOR_FIELDS,
    ("SpiderCoordinator", "spec.policyRoutes[]"): ROUTE_FIELDS,
    ("SpiderCoordinator", "status"): {"phase", "reason", "overlayPodCIDR", "serviceCIDR"},
}
# (kind, path, value) defaults as Spiderpool's CRDs declare them (spec §1.2, §1.5, §1.6, §1.7).
DEFAULTS = [
    ("SpiderIPPool", "spec.default", False),
    ("SpiderIPPool", "spec.disable", False),
    ("SpiderEndpoint", "status.current.ips[].vlan", 0),
    ("SpiderCoordinator", "spec.mode", "auto"),
    ("SpiderCoordinator", "spec.tunePodRoutes", True),
    ("SpiderCoordinator", "spec.hostRuleTable", 500),
    ("SpiderCoordinator", "spec.podRPFilter", 0),
    ("SpiderCoordinator", "spec.txQueueLen", 0),
    ("SpiderMultusConfig", "spec.cniType", "custom"),
    ("SpiderMultusConfig", "spec.enableCoordinator", True),
    ("SpiderMultusConfig", "spec.disableIPAM", False),
    ("SpiderMultusConfig", "spec.macvlan.mtu", 0),
    ("SpiderMultusConfig", "spec.ipvlan.mtu", 0),
    ("SpiderMultusConfig", "spec.sriov.mtu", 0),
    ("SpiderMultusConfig", "spec.sriov.rdmaIsolation", False),
    ("SpiderMultusConfig", "spec.ibsriov.linkState", "enable"),
    ("SpiderMultusConfig", "spec.ibsriov.rdmaIsolation", True),
    ("SpiderMultusConfig", "spec.ibsriov.enableIbKubernetes", False),
    ("SpiderMultusConfig", "spec.macvlan.ippools.matchMasterSubnet", False),
    ("SpiderMultusConfig", "spec.coordinator.mode", "auto"),
    ("SpiderMultusConfig", "spec.coordinator.tunePodRoutes", True),
    ("SpiderMultusConfig", "spec.coordinator.hostRuleTable", 500),
]
# Spiderpool chart values the Spiderweb chart keeps, with Spiderpool's defaults (spec §12.5, §15.1).
SPIDERPOOL_VALUES = {
    "global.cniBinHostPath": "/opt/cni/bin",
    "global.cniConfHostPath": "/etc/cni/net.d",
    "global.ipamUNIXSocketHostPath": "/var/run/spidernet/spiderpool.sock",
    "global.configName": "spiderpool-conf",
    "ipam.enableIPv4": True,
    "ipam.enableIPv6": True,
    "ipam.enableStatefulSet": True,
    "ipam.enableKubevirtStaticIP": True,
    "ipam.enableCleanOutdatedEndpoint": False,
    "ipam.enableIPConflictDetection": False,
    "ipam.enableGatewayDetection": False,
    "ipam.spiderSubnet.enable": True,
    "ipam.spiderSubnet.autoPool.enable": True,
    "ipam.spiderSubnet.autoPool.defaultRedundantIPNumber": 1,
    "ipam.gc.enabled": True,
    "ipam.gc.gcAll.intervalInSecond": 600,
    "coordinator.enabled": True,
    "coordinator.name": "default",
    "coordinator.mode": "auto",
    "coordinator.podCIDRType": "auto",
    "coordinator.tunePodRoutes": True,
    "coordinator.hijackCIDR": ["169.254.0.0/16"],
    "coordinator.policyRoutes": [],
    "coordinator.vethLinkAddress": "",
    "coordinator.vethMTU": 1500,
    "multus.enableMultusConfig": True,
    "multus.multusCNI.defaultCniCRName": "",
    "clusterDefaultPool.installIPv4IPPool": False,
    "clusterDefaultPool.installIPv6IPPool": False,
    "clusterDefaultPool.ipv4IPPoolName": "default-v4-ippool",
    "clusterDefaultPool.ipv6IPPoolName": "default-v6-ippool",
    "clusterDefaultPool.ipv4SubnetName": "default-v4-subnet",
    "clusterDefaultPool.ipv6SubnetName": "default-v6-subnet",
    "spiderpoolAgent.tuneSysctlConfig": True,
    "spiderpoolController.enableValidatingResourcesDeletedWebhook": False,
    "spiderpoolController.podResourceInject.enabled": False,
    "iaasNetworkProvider.serverUrl": "",
}
# conf.yml with the chart's default values (spec §12.5); one key for the default flexible IP number (A3).
DEFAULT_CONF = {
    "ipamUnixSocketPath": "/var/run/spidernet/spiderpool.sock",
    "enableIPv4": True,
    "enableIPv6": True,
    "enableStatefulSet": True,
    "enableKubevirtStaticIP": True,
    "enableCleanOutdatedEndpoint": False,
    "enableSpiderSubnet": True,
    "enableAutoPoolForApplication": True,
    "enableIPConflictDetection": False,
    "enableGatewayDetection": False,
    "enableValidatingResourcesDeletedWebhook": False,
    "clusterSubnetDefaultFlexibleIPNumber": 1,
    "tuneSysctlConfig": True,
    "podResourceInject": {
        "enabled": False,
        "namespacesExclude": ["kube-system", "spiderpool", "metallb-system", "istio-system"],
        "namespacesInclude": [],
    },
    "iaasNetworkProvider": {"serverUrl": "", "httpRequestTimeout": "50s"},
}
WEBHOOK_KINDS = ["spiderippool", "spidersubnet", "spiderreservedip", "spidercoordinator", "spidermultusconfig"]
AGENT_READS = {
    ("", "pods"), ("", "namespaces"), ("", "nodes"),
    ("apps", "statefulsets"), ("apps", "replicasets"), ("apps", "deployments"), ("apps", "daemonsets"),
    ("batch", "jobs"), ("batch", "cronjobs"),
    (GROUP, "spidercoordinators"), (GROUP, "spiderendpoints"),
}


# --------------------------------------------------------------------------------------------- loading


def _load_crds() -> dict[str, dict]:
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1, f"{path.name}: one CRD per file, found {len(docs)} documents"
        crds[docs[0]["spec"]["names"]["kind"]] = docs[0] | {"__file__": path.name}
    return crds


CRDS = _load_crds()


def _schema(kind: str) -> dict:
    return CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _node(kind: str, dotted: str) -> dict:
    """Sub-schema at a dotted path such as 'spec.routes[]' ('[]' steps into array items)."""
    node = _schema(kind)
    for part in filter(None, dotted.split(".")):
        name, items = (part[:-2], True) if part.endswith("[]") else (part, False)
        node = node["properties"][name]
        if items:
            node = node["items"]
    return node


def _example_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                docs.append((f"{path.stem}#{i}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


EXAMPLE_DOCS = _example_docs()
CRD_KINDS_BY_GV = {
    (crd["spec"]["group"], v["name"], crd["spec"]["names"]["kind"]): kind
    for kind, crd in CRDS.items()
    for v in crd["spec"]["versions"]
}


def _crd_kind_of(doc: dict) -> str | None:
    group, _, version = doc["apiVersion"].rpartition("/")
    return CRD_KINDS_BY_GV.get((group, version, doc["kind"]))


def _admit(doc: dict) -> tuple[dict, list[str]]:
    """Default then validate ``doc`` against its CRD, as the apiserver does on create."""
    kind = _crd_kind_of(doc)
    assert kind, f"no CRD in the chart serves {doc['apiVersion']} {doc['kind']}"
    defaulted = with_defaults(doc, _schema(kind))
    return defaulted, validation_errors(defaulted, _schema(kind))


# --------------------------------------------------------------------------------------------- CRD inventory


def test_crd_directory_holds_the_six_spiderpool_crds_and_the_multus_nad():
    assert set(CRDS) == set(INVENTORY) | {"NetworkAttachmentDefinition"}
    for kind, crd in CRDS.items():
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1", kind
        assert crd["kind"] == "CustomResourceDefinition", kind
        assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}", kind


@pytest.mark.parametrize("kind", sorted(INVENTORY))
def test_crd_names_scope_version_and_status_match_spiderpool(kind):
    want = INVENTORY[kind]
    spec = CRDS[kind]["spec"]
    names = spec["names"]
    assert spec["group"] == GROUP
    assert spec["scope"] == want["scope"]
    assert names["plural"] == want["plural"]
    assert names["singular"] == kind.lower()
    assert names["listKind"] == f"{kind}List"
    assert names["shortNames"] == want["short"]
    assert names["categories"] == ["spiderpool"]
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [("v2beta1", True, True)]
    version = spec["versions"][0]
    assert ("status" in version.get("subresources", {})) is want["status"]
    if want["status"]:
        assert version["subresources"]["status"] == {}


def test_multus_nad_crd_has_the_network_plumbing_names_and_a_string_config():
    crd = CRDS["NetworkAttachmentDefinition"]["spec"]
    assert crd["group"] == "k8s.cni.cncf.io"
    assert crd["scope"] == "Namespaced"
    assert crd["names"]["plural"] == "network-attachment-definitions"
    assert crd["names"]["shortNames"] == ["net-attach-def"]
    assert [(v["name"], v["served"], v["storage"]) for v in crd["versions"]] == [("v1", True, True)]
    assert _node("NetworkAttachmentDefinition", "spec.config") == {
        "description": _node("NetworkAttachmentDefinition", "spec.config")["description"], "type": "string"}


@pytest.mark.parametrize("kind", sorted(INVENTORY))
def test_printer_columns_match_spiderpool_and_resolve_in_the_schema(kind):
    columns = CRDS[kind]["spec"]["versions"][0].get("additionalPrinterColumns", [])
    got = [(c["name"], c["jsonPath"], WIDE if c.get("priority", 0) > 0 else "") for c in columns]
    assert got == INVENTORY[kind]["columns"]
    for column in columns:
        assert column["type"] in crd_schema.PRINTER_COLUMN_TYPES, column
        assert isinstance(column.get("priority", 0), int) and column.get("priority", 0) >= 0
        assert jsonpath_parse(column["jsonPath"]), f"{column['name']}: JSONPath {column['jsonPath']!r} not parsed"
        target = jsonpath_schema(_schema(kind), column["jsonPath"])
        assert target is not None, f"{column['name']}: {column['jsonPath']} is not a field of the schema"
        if column["type"] in ("integer", "boolean"):
            assert target["type"] == column["type"], column["name"]


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural_and_accepted_by_apiextensions_v1(kind):
    assert structural_errors(_schema(kind)) == []


def test_structural_check_reports_what_the_apiserver_refuses():
    bad = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            "spec": {
                "type": "object",
                "properties": {
                    "a": {"description": "no type"},
                    "b": {"type": "object"},
                    "c": {"type": "array"},
                    "d": {"type": "integer", "default": "five"},
                    "e": {"type": "string", "enum": ["x", 1]},
                    "f": {"$ref": "#/definitions/x", "type": "string"},
                    "g": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                },
            },
        },
    }
    errors = "\n".join(structural_errors(bad))
    for fragment in ("metadata: only type object", "spec.a: missing type", "spec.b: object without properties",
                     "spec.c: array without items", "spec.d: default does not validate",
                     "spec.e: enum value 1", "spec.f: keyword '$ref'", "spec.g: uniqueItems"):
        assert fragment in errors


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_no_preserve_unknown_fields_where_spiderpool_has_none(kind):
    assert "x-kubernetes-preserve-unknown-fields" not in json.dumps(_schema(kind))


# --------------------------------------------------------------------------------------------- fields


@pytest.mark.parametrize(("kind", "path"), sorted(FIELDS), ids=lambda v: v or "<root>")
def test_field_names_match_spiderpool_v2beta1(kind, path):
    assert set(_node(kind, path)["properties"]) == FIELDS[(kind, path)]


@pytest.mark.parametrize(("kind", "path", "value"), DEFAULTS, ids=[f"{k}.{p}" for k, p, _ in DEFAULTS])
def test_crd_defaults_match_spiderpool(kind, path, value):
    assert _node(kind, path)["default"] == value


def test_only_the_listed_fields_have_crd_defaults():
    """A default Spiderpool's CRD does not have would silently change stored objects."""
    listed = {(k, p) for k, p, _ in DEFAULTS}
    # The same sub-config shapes repeat; their defaults are covered by one representative each above.
    repeated = {("SpiderMultusConfig", f"spec.{t}.ippools.matchMasterSubnet") for t in
                ("ipvlan", "vlan", "sriov", "ibsriov", "ipoib", "ovs")} | {
        ("SpiderMultusConfig", "spec.vlan.mtu"), ("SpiderMultusConfig", "spec.coordinator.podRPFilter"),
        ("SpiderMultusConfig", "spec.coordinator.txQueueLen")}

    def walk(kind, node, path):
        if "default" in node:
            yield kind, path
        for name, child in node.get("properties", {}).items():
            yield from walk(kind, child, f"{path}.{name}" if path else name)
        if "items" in node:
            yield from walk(kind, node["items"], f"{path}[]")

    found = {hit for kind in CRDS for hit in walk(kind, _schema(kind), "")}
    assert found - listed - repeated == set()
    assert listed - found == set()


def test_enums_and_ranges_match_spiderpool():
    for kind in ("SpiderIPPool", "SpiderSubnet", "SpiderReservedIP"):
        assert _node(kind, "spec.ipVersion")["enum"] == [4, 6]
        assert _node(kind, "spec.ipVersion")["type"] == "integer"
    assert _node("SpiderIPPool", "spec")["required"] == ["subnet"]
    assert _node("SpiderSubnet", "spec")["required"] == ["subnet"]
    for kind, path in (("SpiderCoordinator", "spec"), ("SpiderMultusConfig", "spec.coordinator")):
        # "disabled" is Spiderpool's CRD spelling; "disable" is the plugin's, accepted too (spec A6).
        assert _node(kind, f"{path}.mode")["enum"] == ["auto", "underlay", "overlay", "disabled", "disable"]
        assert _node(kind, f"{path}.podCIDRType")["enum"] == ["auto", "cluster", "calico", "cilium", "none"]
    assert _node("SpiderCoordinator", "spec")["required"] == ["podCIDRType"]
    assert "required" not in _node("SpiderMultusConfig", "spec.coordinator")
    assert _node("SpiderMultusConfig", "spec.cniType")["enum"] == [
        "macvlan", "ipvlan", "vlan", "sriov", "ovs", "ib-sriov", "ipoib", "custom"]
    for path in ("spec.macvlan.vlanID", "spec.ipvlan.vlanID", "spec.vlan.vlanID", "spec.sriov.vlanID",
                 "spec.ovs.trunk[].minID", "spec.ovs.trunk[].maxID", "spec.ovs.trunk[].id"):
        node = _node("SpiderMultusConfig", path)
        assert (node["minimum"], node["maximum"]) == (0, 4094), path
    vlan = _node("SpiderEndpoint", "status.current.ips[].vlan")
    assert (vlan["minimum"], vlan["maximum"]) == (0, 4094)
    bond = _node("SpiderMultusConfig", "spec.macvlan.bond")
    assert (bond["properties"]["mode"]["minimum"], bond["properties"]["mode"]["maximum"]) == (0, 6)
    assert bond["required"] == ["name", "mode"]
    assert _node("SpiderMultusConfig", "spec.macvlan")["required"] == ["master"]
    assert _node("SpiderMultusConfig", "spec.ovs")["required"] == ["bridge"]
    assert _node("SpiderMultusConfig", "spec.vlan.vlanMode")["enum"] == ["manual", "auto"]
    assert _node("SpiderMultusConfig", "spec.ibsriov.linkState")["enum"] == ["auto", "enable", "disable"]
    for path in ("spec.sriov.minTxRateMbps", "spec.sriov.maxTxRateMbps", "spec.macvlan.mtu"):
        assert _node("SpiderMultusConfig", path)["minimum"] == 0
    status = _node("SpiderIPPool", "status")["properties"]
    assert status["allocatedIPs"]["type"] == "string"
    assert status["allocatedIPCount"]["minimum"] == 0 and status["totalIPCount"]["minimum"] == 0
    assert _node("SpiderSubnet", "status.controlledIPPools")["type"] == "string"
    assert _node("SpiderEndpoint", "status")["required"] == ["current", "ownerControllerType", "ownerControllerName"]
    assert _node("SpiderEndpoint", "status.current.ips[]")["required"] == ["interface"]
    assert _node("SpiderCoordinator", "status")["required"] == ["phase"]
    for selector in ("podAffinity", "namespaceAffinity", "nodeAffinity"):
        node = _node("SpiderIPPool", f"spec.{selector}")
        assert node["properties"]["matchLabels"]["additionalProperties"] == {"type": "string"}
        assert node["properties"]["matchExpressions"]["items"]["required"] == ["key", "operator"]


# --------------------------------------------------------------------------------------------- examples


def test_examples_cover_every_spiderpool_kind():
    kinds = {_crd_kind_of(doc) for _, doc in EXAMPLE_DOCS} - {None}
    assert kinds == set(CRDS)


@pytest.mark.parametrize(("name", "doc"), EXAMPLE_DOCS, ids=[n for n, _ in EXAMPLE_DOCS])
def test_spiderpool_example_validates_unchanged(name, doc):
    if _crd_kind_of(doc) is None:
        assert doc["apiVersion"] in ("v1", "apps/v1"), f"{name}: unexpected apiVersion"
    else:
        _, errors = _admit(doc)
        assert errors == []
    # Spiderpool annotations carry JSON; a typo there is a CNI ADD failure, so keep the examples honest.
    metadata = doc.get("spec", {}).get("template", {}).get("metadata", doc["metadata"])
    for key, value in (metadata.get("annotations") or {}).items():
        if key in ("ipam.spidernet.io/ippool", "ipam.spidernet.io/ippools", "ipam.spidernet.io/subnet",
                   "ipam.spidernet.io/subnets", "ipam.spidernet.io/routes",
                   "ipam.spidernet.io/default-ipv4-ippool", "ipam.spidernet.io/default-ipv6-ippool"):
            json.loads(value)
    if doc["kind"] == "SpiderMultusConfig":
        for entry in doc["spec"].get("chainCNIJsonData", []) + [doc["spec"].get("customCNI") or "{}"]:
            json.loads(entry)
    if doc["kind"] == "NetworkAttachmentDefinition":
        assert json.loads(doc["spec"]["config"])["plugins"]


def _example(kind: str, name: str) -> dict:
    return next(copy.deepcopy(d) for _, d in EXAMPLE_DOCS if d["kind"] == kind and d["metadata"]["name"] == name)


INVALID = [
    ("pool without subnet", "SpiderIPPool", "custom-ipv4-ippool", ["spec", "subnet"], MISSING,
     "spec.subnet: required field is missing"),
    ("pool ipVersion 5", "SpiderIPPool", "custom-ipv4-ippool", ["spec", "ipVersion"], 5, "not one of [4, 6]"),
    ("pool ipVersion as string", "SpiderIPPool", "custom-ipv4-ippool", ["spec", "ipVersion"], "4",
     "is not of type integer"),
    ("pool misspelt field", "SpiderIPPool", "custom-ipv4-ippool", ["spec", "excludeIps"], ["172.18.41.41"],
     "spec.excludeIps: unknown field"),
    ("pool vlan (not in v2beta1)", "SpiderIPPool", "custom-ipv4-ippool", ["spec", "vlan"], 100,
     "spec.vlan: unknown field"),
    ("route without gw", "SpiderIPPool", "ipv4-ippool-route", ["spec", "routes"], [{"dst": "10.0.0.0/8"}],
     "spec.routes[0].gw: required field is missing"),
    ("selector operator missing", "SpiderIPPool", "static-ipv4-ippool", ["spec", "podAffinity"],
     {"matchExpressions": [{"key": "app"}]}, "operator: required field is missing"),
    ("disable as string", "SpiderIPPool", "custom-ipv4-ippool", ["spec", "disable"], "yes", "not of type boolean"),
    ("smc vlanID 4095", "SpiderMultusConfig", "macvlan-ens192", ["spec", "macvlan", "vlanID"], 4095,
     "greater than the maximum 4094"),
    ("smc unknown cniType", "SpiderMultusConfig", "macvlan-ens192", ["spec", "cniType"], "bridge", "not one of"),
    ("smc macvlan without master", "SpiderMultusConfig", "macvlan-ens192", ["spec", "macvlan", "master"],
     MISSING, "spec.macvlan.master: required field is missing"),
    ("smc bond mode 7", "SpiderMultusConfig", "ipvlan-bond", ["spec", "ipvlan", "bond", "mode"], 7,
     "greater than the maximum 6"),
    ("smc negative mtu", "SpiderMultusConfig", "ipvlan-bond", ["spec", "ipvlan", "mtu"], -1, "less than the minimum"),
    ("smc coordinator mode", "SpiderMultusConfig", "ipvlan-bond", ["spec", "coordinator", "mode"], "l2",
     "not one of"),
    ("coordinator without podCIDRType", "SpiderCoordinator", "default", ["spec", "podCIDRType"], MISSING,
     "spec.podCIDRType: required field is missing"),
    ("coordinator detectGateway (not in v2beta1)", "SpiderCoordinator", "default", ["spec", "detectGateway"], True,
     "spec.detectGateway: unknown field"),
    ("endpoint vlan 5000", "SpiderEndpoint", "web-0", ["status", "current", "ips", 0, "vlan"], 5000,
     "greater than the maximum 4094"),
    ("endpoint without owner", "SpiderEndpoint", "web-0", ["status", "ownerControllerType"], MISSING,
     "status.ownerControllerType: required field is missing"),
]


@pytest.mark.parametrize(("case", "kind", "name", "path", "value", "error"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_manifest_is_rejected(case, kind, name, path, value, error):
    doc = _example(kind, name)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    _, errors = _admit(doc)
    assert any(error in e for e in errors), errors


def test_apiserver_defaults_fill_the_spiderpool_defaults():
    pool, _ = _admit(_example("SpiderIPPool", "custom-ipv4-ippool"))
    assert (pool["spec"]["default"], pool["spec"]["disable"]) == (False, False)
    smc, _ = _admit(_example("SpiderMultusConfig", "ipvlan-bond"))
    assert smc["spec"]["disableIPAM"] is False
    assert smc["spec"]["ipvlan"]["mtu"] == 1500  # set by the user, not overwritten
    assert smc["spec"]["ipvlan"]["ippools"]["matchMasterSubnet"] is False
    assert {k: smc["spec"]["coordinator"][k] for k in ("mode", "tunePodRoutes", "hostRuleTable", "podRPFilter")} == {
        "mode": "underlay", "tunePodRoutes": True, "hostRuleTable": 500, "podRPFilter": 0}
    custom, _ = _admit(_example("SpiderMultusConfig", "calico"))
    assert custom["spec"]["enableCoordinator"] is True  # the webhook forces false for custom (spec §10.1)
    assert "coordinator" not in custom["spec"]  # defaults never create a missing parent
    untyped, _ = _admit({"apiVersion": f"{GROUP}/v2beta1", "kind": "SpiderMultusConfig",
                         "metadata": {"name": "x", "namespace": "default"}, "spec": {}})
    assert untyped["spec"]["cniType"] == "custom"
    endpoint, _ = _admit(_example("SpiderEndpoint", "web-0"))
    assert [ip["vlan"] for ip in endpoint["status"]["current"]["ips"]] == [0, 0]


def test_printer_columns_show_what_kubectl_get_shows():
    endpoint, _ = _admit(_example("SpiderEndpoint", "web-0"))
    columns = CRDS["SpiderEndpoint"]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [jsonpath_lookup(endpoint, c["jsonPath"]) for c in columns] == [
        "eth0", "ippool-test-ens192", "10.6.168.177/16", "ippool-test-ens192-v6", "fd00:10:6::177/64", "node1"]
    pool = _example("SpiderIPPool", "static-ipv4-ippool")
    pool["spec"]["podAffinity"] = {"matchLabels": {"ipam.spidernet.io/app-namespace": "default"}}
    pool["status"] = {"allocatedIPCount": 1, "totalIPCount": 4}
    pool, errors = _admit(pool)
    assert errors == []
    columns = CRDS["SpiderIPPool"]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [jsonpath_lookup(pool, c["jsonPath"]) for c in columns] == [
        4, "172.18.41.0/24", 1, 4, False, False, MISSING, MISSING, "default"]


def test_crd_schema_module_examples():
    result = doctest.testmod(crd_schema)
    assert result.attempted >= 5 and result.failed == 0


# --------------------------------------------------------------------------------------------- values and templates


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def test_values_keep_spiderpool_keys_and_defaults():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert {key: _get(values, key) for key in SPIDERPOOL_VALUES} == SPIDERPOOL_VALUES


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["name"], chart["version"]) == ("v2", "spiderweb", "0.1.0")


def test_configmap_template_uses_one_key_for_the_default_flexible_ip_number():
    text = (CHART / "templates" / "configmap.yaml").read_text()
    assert text.count("clusterSubnetDefaultFlexibleIPNumber:") == 1
    assert "clusterSubnetAutoPoolDefaultRedundantIPNumber" not in text
    for key in DEFAULT_CONF:
        assert re.search(rf"^    {key}:", text, re.M), key


def _render_static(template: str) -> list[dict]:
    """Parse a template with no helm: drop control lines, turn each {{ expr }} into the string "{{expr}}".

    Good enough for templates whose structure does not depend on values (RBAC); the real rendering is tested
    with helm below when it is available.
    """
    text = re.sub(r"\{\{-? */\*.*?\*/ *-?\}\}", "", template, flags=re.S)
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if re.fullmatch(r"\{\{-?.*?-?\}\}", stripped) and not stripped.startswith(("{{- include", "{{ include")):
            continue
        if re.fullmatch(r"\{\{-? include .*\}\}", stripped):
            continue  # label blocks
        lines.append(re.sub(r"\{\{-? *(.*?) *-?\}\}", lambda m: "TPL[" + m.group(1).replace('"', "'") + "]", line))
    return [d for d in yaml.safe_load_all("\n".join(lines)) if d]


def _check_rbac(docs: list[dict], agent_role: str, controller_role: str) -> None:
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] in ("ClusterRole", "Role")}
    agent = roles[agent_role]
    assert agent["kind"] == "ClusterRole"
    granted = set()
    for rule in agent["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
        assert not set(rule["verbs"]) & WRITE_VERBS
        assert "secrets" not in rule["resources"] and "*" not in rule["resources"], rule
        assert "*" not in rule["apiGroups"] and not rule.get("nonResourceURLs"), rule
        granted |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == AGENT_READS
    for name, role in roles.items():
        for rule in role["rules"]:
            assert "secrets" not in rule.get("resources", []), f"{name} must not read Secrets"
            assert "*" not in rule.get("resources", []) + rule.get("verbs", []) + rule.get("apiGroups", []), name
    controller = roles[controller_role]
    spiderpool_rules = [r for r in controller["rules"] if r["apiGroups"] == [GROUP]]
    managed = {res for r in spiderpool_rules for res in r["resources"] if "delete" in r["verbs"]}
    assert managed == {crd["spec"]["names"]["plural"] for kind, crd in CRDS.items() if kind in INVENTORY}
    subresources = {res for r in spiderpool_rules for res in r["resources"] if "/" in res}
    assert {"spiderippools/status", "spidersubnets/status", "spidercoordinators/status"} <= subresources
    assert any(r["resources"] == ["network-attachment-definitions"] and "create" in r["verbs"]
               for r in controller["rules"])
    assert any("events" in r["resources"] and "create" in r["verbs"] for r in controller["rules"])
    namespaced = [role for role in roles.values() if role["kind"] == "Role"]
    leases = [r for role in namespaced for r in role["rules"] if "leases" in r["resources"]]
    assert leases and "update" in leases[0]["verbs"]


def test_rbac_template_agent_is_read_only_without_secrets():
    docs = _render_static((CHART / "templates" / "rbac.yaml").read_text())
    _check_rbac(docs, "TPL[$agent]", "TPL[$controller]")


def _load_init_script():
    spec = importlib.util.spec_from_file_location("spiderweb_init", CHART / "files" / "spiderweb_init.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _ApiError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


class _FakeCustomObjects:
    """Stands in for kubernetes.client.CustomObjectsApi: existing names, and statuses to fail creates with."""

    def __init__(self, existing=(), create_failures=()):
        self.existing = set(existing)
        self.create_failures = list(create_failures)
        self.created = []

    def get_cluster_custom_object(self, group, version, plural, name):
        if (plural, name) not in self.existing:
            raise _ApiError(404)
        return {}

    def create_cluster_custom_object(self, group, version, plural, body):
        if self.create_failures:
            raise _ApiError(self.create_failures.pop(0))
        self.created.append((plural, body["metadata"]["name"]))
        self.existing.add((plural, body["metadata"]["name"]))


def test_init_job_creates_missing_objects_and_leaves_existing_ones():
    init = _load_init_script()
    api = _FakeCustomObjects(existing={("spiderippools", "default-v4-ippool")}, create_failures=[500, 503])
    objects = [{"plural": "spidercoordinators", "body": {"metadata": {"name": "default"}}},
               {"plural": "spiderippools", "body": {"metadata": {"name": "default-v4-ippool"}}}]
    slept = []
    report = init.ensure_objects(api, objects, deadline=100.0, sleep=slept.append, clock=lambda: 0.0)
    assert report == ["created spidercoordinators/default", "exists spiderippools/default-v4-ippool"]
    assert api.created == [("spidercoordinators", "default")]
    assert slept == [1.0, 2.0]  # two webhook-not-ready answers, backing off


def test_init_job_names_the_custom_smc_after_the_nodes_cni_and_creates_it_in_its_namespace(tmp_path):
    init = _load_init_script()
    (tmp_path / "00-multus.conf").write_text('{"name": "multus-cni-network"}')
    (tmp_path / "10-calico.conflist").write_text('{"name": "k8s-pod-network", "plugins": []}')
    created = []

    class Api(_FakeCustomObjects):
        def get_namespaced_custom_object(self, group, version, namespace, plural, name):
            raise _ApiError(404)

        def create_namespaced_custom_object(self, group, version, namespace, plural, body):
            created.append((namespace, plural, body["metadata"]["name"]))

    smc = {"plural": "spidermultusconfigs", "namespace": "sw", "detectNameFrom": str(tmp_path),
           "body": {"metadata": {"name": "detected", "namespace": "sw"}, "spec": {"cniType": "custom"}}}
    report = init.ensure_objects(Api(), [smc], deadline=1.0, sleep=lambda s: None, clock=lambda: 0.0)
    assert report == ["created spidermultusconfigs/sw/k8s-pod-network"]
    assert created == [("sw", "spidermultusconfigs", "k8s-pod-network")]
    empty = {**smc, "detectNameFrom": str(tmp_path / "none")}
    assert init.ensure_objects(Api(), [empty], deadline=1.0) == [
        f"skipped spidermultusconfigs: no CNI configuration in {tmp_path / 'none'}"]


def test_init_job_gives_up_at_the_deadline_and_on_permanent_errors():
    init = _load_init_script()
    objects = [{"plural": "spidercoordinators", "body": {"metadata": {"name": "default"}}}]
    with pytest.raises(_ApiError) as exc:
        init.ensure_objects(_FakeCustomObjects(create_failures=[500] * 10), objects, deadline=5.0,
                            sleep=lambda s: None, clock=lambda: 4.5)
    assert exc.value.status == 500
    with pytest.raises(_ApiError) as exc:  # the webhook said no: retrying would not help
        init.ensure_objects(_FakeCustomObjects(create_failures=[403]), objects, deadline=1e9,
                            sleep=lambda s: None, clock=lambda: 0.0)
    assert exc.value.status == 403


# --------------------------------------------------------------------------------------------- rendered by helm


def _helm() -> str | None:
    for candidate in (os.environ.get("SPIDERWEB_HELM"), "/var/cache/spiderweb-lab/bin/helm", shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


HELM = _helm()
needs_helm = pytest.mark.skipif(HELM is None, reason="no helm binary (build one with tests/helm/build_helm.sh)")
REQUIRED_SETS = ["spiderweb.database.url=postgresql://u:p@db:5432/spiderweb", "spiderweb.broker.url=redis://r:6379/0",
                 "spiderweb.portal.webhook.networkPolicy.apiServerPeers[0].ipBlock.cidr=192.0.2.1/32"]


def _helm_run(*args: str, sets: list[str] = (), check: bool = True) -> subprocess.CompletedProcess:
    cmd = [HELM, *args, str(CHART)]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120,
                          env=os.environ | {"HELM_CACHE_HOME": "/tmp/spiderweb-helm/cache",
                                            "HELM_CONFIG_HOME": "/tmp/spiderweb-helm/config",
                                            "HELM_DATA_HOME": "/tmp/spiderweb-helm/data"})


def _render(*extra_sets: str) -> list[dict]:
    out = _helm_run("template", "spiderweb", "--namespace", "spiderweb-system", "--include-crds",
                    sets=REQUIRED_SETS + list(extra_sets)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


@needs_helm
def test_helm_lint_passes():
    result = _helm_run("lint", "--strict", sets=REQUIRED_SETS, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_helm
def test_helm_refuses_to_render_without_database_and_broker():
    result = _helm_run("template", "spiderweb", sets=REQUIRED_SETS[2:], check=False)
    assert result.returncode != 0 and "spiderweb.database.url is required" in result.stderr


@needs_helm
def test_rendered_chart_objects():
    docs = _render()
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == sorted({
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition", "DaemonSet", "Deployment",
        "Job", "MutatingWebhookConfiguration", "NetworkPolicy", "Role", "RoleBinding", "Secret", "Service",
        "ServiceAccount", "ValidatingWebhookConfiguration"})
    assert sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Deployment") == [
        "spiderweb-beat", "spiderweb-portal", "spiderweb-watcher", "spiderweb-worker"]
    for doc in docs:
        if doc["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                               "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            assert doc["metadata"]["namespace"] in ("spiderweb-system", "kube-system"), doc["metadata"]
    _check_rbac(docs, "spiderweb-agent", "spiderweb-controller")


@needs_helm
def test_rendered_configmap_is_spiderpool_conf():
    conf = _one(_render(), "ConfigMap", "spiderpool-conf")
    assert yaml.safe_load(conf["data"]["conf.yml"]) == DEFAULT_CONF
    # and the one typed loader every component uses reads it as Spiderpool's defaults
    from spiderweb.k8s.spiderpool_conf import SpiderpoolConf, parse

    assert parse(conf["data"]["conf.yml"]) == SpiderpoolConf(path="conf.yml", iaas_http_request_timeout=50.0)
    assert conf["data"]["clusterNetwork"] == ""
    off = _one(_render("ipam.spiderSubnet.autoPool.enable=false"), "ConfigMap", "spiderpool-conf")
    assert yaml.safe_load(off["data"]["conf.yml"])["clusterSubnetDefaultFlexibleIPNumber"] == 0


@needs_helm
def test_rendered_webhooks_use_spiderpool_paths_and_the_generated_ca():
    docs = _render()
    secret = _one(docs, "Secret", "spiderweb-webhook-tls")
    ca = secret["data"]["ca.crt"]
    assert base64.b64decode(ca).startswith(b"-----BEGIN CERTIFICATE-----")
    for kind, prefix, ops in (("MutatingWebhookConfiguration", "mutate", None),
                              ("ValidatingWebhookConfiguration", "validate", True)):
        config = _one(docs, kind)
        hooks = {h["clientConfig"]["service"]["path"]: h for h in config["webhooks"]}
        assert set(hooks) == {f"/{prefix}-spiderpool-spidernet-io-v2beta1-{k}" for k in WEBHOOK_KINDS}
        for path, hook in hooks.items():
            # The validating webhooks write the database, except for dry runs (issue 10 High 1).
            assert hook["failurePolicy"] == "Fail"
            assert hook["sideEffects"] == ("NoneOnDryRun" if prefix == "validate" else "None")
            assert hook["admissionReviewVersions"] == ["v1"]
            assert hook["clientConfig"]["caBundle"] == ca
            assert hook["clientConfig"]["service"] == {
                "name": "spiderweb-webhook", "namespace": "spiderweb-system", "path": path, "port": 5722}
            assert hook["rules"][0]["apiGroups"] == [GROUP] and hook["rules"][0]["apiVersions"] == ["v2beta1"]
            if ops and path.endswith(("spiderippool", "spidersubnet")):
                assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE", "DELETE"]
            else:
                assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    service = _one(docs, "Service", "spiderweb-webhook")
    assert service["spec"]["ports"] == [{"name": "webhook", "port": 5722, "targetPort": "webhook", "protocol": "TCP"}]


@needs_helm
def test_rendered_webhooks_with_provided_ca_and_cert_manager():
    failed = _helm_run("template", "spiderweb", sets=REQUIRED_SETS + ["tls.method=provided"], check=False)
    assert failed.returncode != 0 and "tls.caBundle" in failed.stderr
    docs = _render("tls.method=provided", "tls.caBundle=Q0EK", "tls.secretName=my-tls")
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "my-tls"]
    assert {h["clientConfig"]["caBundle"] for h in _one(docs, "MutatingWebhookConfiguration")["webhooks"]} == {"Q0EK"}
    portal = _one(docs, "Deployment", "spiderweb-portal")
    assert {"name": "webhook-tls", "secret": {"secretName": "my-tls"}} in portal["spec"]["template"]["spec"]["volumes"]
    docs = _render("tls.method=certmanager")
    assert _one(docs, "Certificate")["spec"]["secretName"] == "spiderweb-webhook-tls"
    config = _one(docs, "ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "spiderweb-system/spiderweb-webhook"
    assert all("caBundle" not in h["clientConfig"] for h in config["webhooks"])


def _webhook_container_and_volumes(docs) -> tuple[dict, dict]:
    spec = _one(docs, "Deployment", "spiderweb-portal")["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "webhook"), {v["name"]: v for v in spec["volumes"]}


@needs_helm
def test_rendered_webhook_listener_requires_the_api_servers_client_certificate():
    from cryptography import x509

    # Given the default values, when the chart renders
    docs = _render()
    # then the webhook gunicorn requires a client certificate signed by the client CA, mounted without its key
    container, volumes = _webhook_container_and_volumes(docs)
    assert "--ca-certs=/etc/spiderweb/webhook-client-ca/ca.crt" in container["command"]
    assert "--cert-reqs=2" in container["command"]
    assert {"name": "webhook-client-ca", "mountPath": "/etc/spiderweb/webhook-client-ca",
            "readOnly": True} in container["volumeMounts"]
    assert volumes["webhook-client-ca"]["secret"] == {
        "secretName": "spiderweb-webhook-client", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    # and the chart made the client CA and the API server's client certificate, signed by it, for client auth
    secret = _one(docs, "Secret", "spiderweb-webhook-client")["data"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["ca.crt"]))
    client = x509.load_pem_x509_certificate(base64.b64decode(secret["tls.crt"]))
    client.verify_directly_issued_by(ca)
    usages = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usages
    assert base64.b64decode(secret["tls.key"]).startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert ca.subject != x509.load_pem_x509_certificate(
        base64.b64decode(_one(docs, "Secret", "spiderweb-webhook-tls")["data"]["ca.crt"])).subject

    # With a provided client CA: no Secret from the chart, the listener still requires the certificate
    docs = _render("spiderweb.portal.webhook.clientCA.method=provided",
                   "spiderweb.portal.webhook.clientCA.secretName=apiserver-client-ca")
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "apiserver-client-ca"]
    container, volumes = _webhook_container_and_volumes(docs)
    assert "--cert-reqs=2" in container["command"]
    assert volumes["webhook-client-ca"]["secret"]["secretName"] == "apiserver-client-ca"
    # Turned off: any caller (no client CA at all)
    docs = _render("spiderweb.portal.webhook.clientCA.required=false")
    container, volumes = _webhook_container_and_volumes(docs)
    assert not [a for a in container["command"] if a.startswith(("--ca-certs", "--cert-reqs"))]
    assert "webhook-client-ca" not in volumes
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "spiderweb-webhook-client"]
    failed = _helm_run("template", "spiderweb", sets=REQUIRED_SETS + ["spiderweb.portal.webhook.clientCA.method=x"],
                       check=False)
    assert failed.returncode != 0 and "clientCA.method must be auto or provided" in failed.stderr


@needs_helm
def test_rendered_network_policy_keeps_the_webhook_port_for_the_api_server(tmp_path):
    # Given the required values, when the chart renders, then the portal pods' webhook port admits only the
    # API server's peers and every other port stays open
    policy = _one(_render(), "NetworkPolicy", "spiderweb-webhook")["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "portal"
    assert policy["policyTypes"] == ["Ingress"]
    webhook, others = policy["ingress"]
    assert webhook["ports"] == [{"protocol": "TCP", "port": 5722}]
    assert webhook["from"] == [{"ipBlock": {"cidr": "192.0.2.1/32"}}]
    assert "from" not in others
    assert others["ports"] == [{"protocol": "TCP", "port": 1, "endPort": 5721},
                               {"protocol": "TCP", "port": 5723, "endPort": 65535},
                               {"protocol": "UDP", "port": 1, "endPort": 65535}]
    # With the control plane's addresses, only they reach the webhook port (also on another port)
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"spiderweb": {"portal": {"webhook": {"port": 9443, "networkPolicy": {
        "apiServerPeers": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]}}}}}))
    out = _helm_run("template", "spiderweb", "-f", str(values), sets=REQUIRED_SETS[:2]).stdout
    policy = _one([d for d in yaml.safe_load_all(out) if d], "NetworkPolicy")["spec"]
    assert policy["ingress"][0] == {"from": [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
                                    "ports": [{"protocol": "TCP", "port": 9443}]}
    assert policy["ingress"][1]["ports"][0]["endPort"] == 9442
    # Without the API server's addresses the chart refuses to render rather than admit every address
    without = _helm_run("template", "spiderweb", sets=REQUIRED_SETS[:2], check=False)
    assert without.returncode != 0
    assert "apiServerPeers must name the kube-apiserver's addresses" in without.stderr
    assert "Error: execution error" in without.stderr and "Traceback" not in without.stderr
    # Turned off: no policy, and the addresses are not needed
    off = _helm_run("template", "spiderweb", sets=REQUIRED_SETS[:2] + [
        "spiderweb.portal.webhook.networkPolicy.enabled=false"]).stdout
    assert not [d for d in yaml.safe_load_all(off) if d and d["kind"] == "NetworkPolicy"]


@needs_helm
def test_rendered_pod_webhook_only_with_resource_injection():
    hooks = _one(_render("spiderpoolController.podResourceInject.enabled=true"), "MutatingWebhookConfiguration")
    pod = [h for h in hooks["webhooks"] if h["clientConfig"]["service"]["path"] == "/mutate--v1-pod"]
    assert len(pod) == 1 and pod[0]["rules"][0]["resources"] == ["pods"]
    assert pod[0]["namespaceSelector"]["matchExpressions"][0]["operator"] == "NotIn"
    off = _one(_render("multus.enableMultusConfig=false", "coordinator.enabled=false"), "MutatingWebhookConfiguration")
    paths = {h["clientConfig"]["service"]["path"].rsplit("-", 1)[1] for h in off["webhooks"]}
    assert paths == {"spiderippool", "spidersubnet", "spiderreservedip"}


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@needs_helm
def test_rendered_agent_daemonset():
    docs = _render()
    agent = _one(docs, "DaemonSet", "spiderweb-agent")["spec"]["template"]["spec"]
    assert agent["hostNetwork"] is True and agent["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert agent["serviceAccountName"] == "spiderweb-agent"
    container = agent["containers"][0]
    assert container["securityContext"]["privileged"] is True
    env = _env(container)
    assert env["SPIDERWEB_NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["SPIDERWEB_PORTAL_URL"] == "http://spiderweb-portal.spiderweb-system.svc:8000"
    assert env["SPIDERWEB_NODE_TOKEN_FILE"] == "/var/run/secrets/spiderweb/node-tokens/$(SPIDERWEB_NODE_NAME)"
    assert "SPIDERWEB_NODE_TOKEN" not in env
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    host = {v["name"]: v.get("hostPath", {}).get("path") for v in agent["volumes"]}
    assert (host["cni-bin"], mounts["cni-bin"]) == ("/opt/cni/bin", "/host/opt/cni/bin")
    assert "cni-conf" not in host  # the agent never reads CNI configurations; the coordinator controller does
    assert env["SPIDERWEB_CONFIG_PATH"] == f"{mounts['config']}/conf.yml" == "/tmp/spiderpool/config-map/conf.yml"
    assert host["ipam-socket-dir"] == mounts["ipam-socket-dir"] == "/var/run/spidernet"
    assert host["netns"] == mounts["netns"] == "/run/netns"
    assert next(m for m in container["volumeMounts"] if m["name"] == "netns")["mountPropagation"] == "HostToContainer"
    tokens = next(v for v in agent["volumes"] if v["name"] == "node-tokens")
    assert tokens["projected"]["sources"] == [{"secret": {"name": "spiderweb-node-tokens", "optional": True}}]
    assert agent["initContainers"][0]["command"] == ["python", "-m", "cni.package", "/host/opt/cni/bin"]


@needs_helm
def test_rendered_control_plane_deployments():
    docs = _render()
    portal = _one(docs, "Deployment", "spiderweb-portal")["spec"]["template"]["spec"]
    by_name = {c["name"]: c for c in portal["containers"]}
    assert by_name["portal"]["command"][:2] == ["gunicorn", "spiderweb.wsgi:application"]
    assert by_name["portal"]["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert "--certfile=/etc/spiderweb/webhook-tls/tls.crt" in by_name["webhook"]["command"]
    for container in (*portal["containers"], *portal["initContainers"]):
        env = _env(container)
        for key in ("SPIDERWEB_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"):
            assert env[key] == {"secretKeyRef": {"name": "spiderweb-env", "key": key}}
        assert "spiderweb-webhook.spiderweb-system.svc" in env["SPIDERWEB_ALLOWED_HOSTS"].split(",")
    assert portal["initContainers"][0]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    beat = _one(docs, "Deployment", "spiderweb-beat")["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    assert beat["template"]["spec"]["automountServiceAccountToken"] is False
    watcher = _one(docs, "Deployment", "spiderweb-watcher")["spec"]["template"]["spec"]
    assert watcher["containers"][0]["command"] == ["python", "manage.py", "k8s_watch"]
    worker = _one(docs, "Deployment", "spiderweb-worker")["spec"]["template"]["spec"]
    assert worker["containers"][0]["command"][:4] == ["celery", "-A", "workers.celery", "worker"]
    for spec in (beat["template"]["spec"], watcher, worker):  # beat schedules the GC, the others run it
        assert _env(spec["containers"][0])["SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION"] == "600"
    for spec in (portal, beat["template"]["spec"], watcher, worker):  # every environment variable is read
        env = _env(spec["containers"][0])
        assert env["SPIDERWEB_CONFIG_PATH"] == "/tmp/spiderpool/config-map/conf.yml"
        assert (env["SPIDERPOOL_COORDINATOR_ENABLED"], env["SPIDERPOOL_MULTUS_CONFIG_ENABLED"]) == ("true", "true")
    # the coordinator controller (in the worker) reads the node's CNI configuration for podCIDRType auto
    mounts = {m["name"]: m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    host = {v["name"]: v.get("hostPath", {}).get("path") for v in worker["volumes"]}
    assert (host["cni-conf"], mounts["cni-conf"]) == ("/etc/cni/net.d", "/host/etc/cni/net.d")
    assert _env(worker["containers"][0])["SPIDERPOOL_CNI_CONFIG_DIR"] == "/host/etc/cni/net.d"
    gc_env = _env(_one(_render("ipam.gc.enabled=false", "ipam.gc.gcAll.intervalInSecond=42"), "Deployment",
                       "spiderweb-beat")["spec"]["template"]["spec"]["containers"][0])
    assert (gc_env["SPIDERPOOL_GC_IP_ENABLED"], gc_env["SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION"]) == ("false", "42")
    env_secret = _one(docs, "Secret", "spiderweb-env")
    assert len(env_secret["stringData"]["SPIDERWEB_SECRET_KEY"]) == 64
    assert env_secret["stringData"]["DATABASE_URL"] == "postgresql://u:p@db:5432/spiderweb"
    docs = _render("spiderweb.existingSecret=mine")
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "spiderweb-env"]
    portal = _one(docs, "Deployment", "spiderweb-portal")["spec"]["template"]["spec"]
    assert _env(portal["containers"][0])["DATABASE_URL"] == {"secretKeyRef": {"name": "mine", "key": "DATABASE_URL"}}


@needs_helm
def test_rendered_init_objects_validate_against_the_crds():
    docs = _render("clusterDefaultPool.installIPv4IPPool=true", "clusterDefaultPool.ipv4Subnet=10.6.0.0/16",
                   "clusterDefaultPool.ipv4IPRanges={10.6.168.100-10.6.168.200}",
                   "clusterDefaultPool.ipv4Gateway=10.6.0.1")
    objects = json.loads(_one(docs, "ConfigMap", "spiderweb-init")["data"]["objects.json"])
    assert [(o["plural"], o["body"]["metadata"]["name"]) for o in objects] == [
        ("spidercoordinators", "default"), ("spidersubnets", "default-v4-subnet"),
        ("spiderippools", "default-v4-ippool"), ("spidermultusconfigs", "detected")]
    for obj in objects:
        _, errors = _admit(obj["body"])
        assert errors == [], obj
    smc = objects[3]  # the cluster's own CNI, named after the node's first CNI configuration
    assert (smc["namespace"], smc["detectNameFrom"], smc["body"]["spec"]) == (
        "spiderweb-system", "/host/etc/cni/net.d", {"cniType": "custom"})
    job_spec = _one(docs, "Job")["spec"]["template"]["spec"]
    assert {v["name"]: v.get("hostPath", {}).get("path") for v in job_spec["volumes"]}["cni-conf"] == "/etc/cni/net.d"
    named = json.loads(_one(_render("multus.multusCNI.defaultCniCRName=calico"), "ConfigMap",
                            "spiderweb-init")["data"]["objects.json"])[-1]
    assert named["body"]["metadata"]["name"] == "calico" and "detectNameFrom" not in named
    none = json.loads(_one(_render("multus.enableMultusConfig=false"), "ConfigMap", "spiderweb-init")["data"][
        "objects.json"])
    assert [o["plural"] for o in none] == ["spidercoordinators"]
    coordinator = objects[0]["body"]["spec"]
    assert coordinator == {"mode": "auto", "podCIDRType": "auto", "tunePodRoutes": True,
                           "hijackCIDR": ["169.254.0.0/16"], "policyRoutes": [], "hostRuleTable": 500,
                           "podRPFilter": 0, "txQueueLen": 0, "vethMTU": 1500}
    assert objects[2]["body"]["spec"]["default"] is True and "default" not in objects[1]["body"]["spec"]
    job = _one(docs, "Job")
    assert job["metadata"]["name"] == "spiderweb-init-1"


@needs_helm
def test_helm_binary_built_by_the_recipe_is_current():
    """build_helm.sh is idempotent: with a binary in place it prints the path and builds nothing."""
    if HELM != "/var/cache/spiderweb-lab/bin/helm":
        pytest.skip("helm does not come from tests/helm/build_helm.sh")
    script = Path(__file__).with_name("build_helm.sh")
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == HELM
    assert "go install" not in result.stderr


@needs_helm
def test_the_portal_shares_its_rate_counters_and_reads_the_metrics_token_from_the_env_secret():
    # Given a metrics token
    docs = _render("metrics.token=t0k")
    portal = _one(docs, "Deployment", "spiderweb-portal")["spec"]["template"]["spec"]["containers"][0]
    env = _env(portal)
    # Then the portal processes count request rates in the broker's Redis
    assert env["SPIDERWEB_CACHE_URL"] == {"secretKeyRef": {"name": "spiderweb-env", "key": "CELERY_BROKER_URL"}}
    # And the token reaches the portal through the env Secret, never as plain text in the pod spec
    assert env["SPIDERWEB_METRICS_TOKEN"] == {"secretKeyRef": {"name": "spiderweb-env",
                                                               "key": "SPIDERWEB_METRICS_TOKEN"}}
    assert _one(docs, "Secret", "spiderweb-env")["stringData"]["SPIDERWEB_METRICS_TOKEN"] == "t0k"
    assert "t0k" not in json.dumps(_one(docs, "Deployment", "spiderweb-portal"))
    # And without a token there is neither the variable nor the key
    plain = _render()
    plain_portal = _one(plain, "Deployment", "spiderweb-portal")["spec"]["template"]["spec"]["containers"][0]
    assert "SPIDERWEB_METRICS_TOKEN" not in _env(plain_portal)
    assert "SPIDERWEB_METRICS_TOKEN" not in _one(plain, "Secret", "spiderweb-env")["stringData"]
