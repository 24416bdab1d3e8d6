"""A Spiderpool manifest's `spec`, plus name and tenant, can be POSTed as is and reads back under the same names."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

# The spec fields of the CRDs (spec §1.2–§1.4), exactly as Spiderpool spells them.
IPPOOL_SPEC = {
    "ipVersion": 4,
    "subnet": "172.18.40.0/24",
    "ips": ["172.18.40.40-172.18.40.50"],
    "excludeIPs": ["172.18.40.45"],
    "gateway": "172.18.40.1",
    "routes": [{"dst": "172.19.0.0/16", "gw": "172.18.40.1"}],
    "podAffinity": {"matchLabels": {"app": "web"}},
    "namespaceAffinity": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
    "namespaceName": ["default"],
    "nodeAffinity": {"matchLabels": {"kubernetes.io/os": "linux"}},
    "nodeName": ["node-1"],
    "multusName": ["kube-system/macvlan-eth0"],
    "default": True,
    "disable": False,
}
SUBNET_SPEC = {
    "ipVersion": 6,
    "subnet": "fd00:172:18::/64",
    "ips": ["fd00:172:18::100-fd00:172:18::1ff"],
    "excludeIPs": ["fd00:172:18::150"],
    "gateway": "fd00:172:18::1",
    "routes": [{"dst": "fd00:172:19::/64", "gw": "fd00:172:18::1"}],
}
RESERVED_SPEC = {"ipVersion": 4, "ips": ["172.18.40.41", "172.18.40.60-172.18.40.61"]}


@pytest.mark.parametrize(
    ("basename", "spec"),
    [("ippool", IPPOOL_SPEC), ("subnet", SUBNET_SPEC), ("reservedip", RESERVED_SPEC)],
    ids=["SpiderIPPool", "SpiderSubnet", "SpiderReservedIP"],
)
def test_crd_spec_posts_as_is_and_reads_back_under_the_crd_names(api, staff, tenant_a, basename, spec):
    # Given a CRD spec plus name and tenant
    body = {"name": "from-manifest", "tenant": tenant_a.name, **spec}
    # When it is POSTed
    response = api(staff).post(reverse(f"{basename}-list"), body, format="json")
    # Then it is created and every spec field reads back under its CRD name with the same value
    assert response.status_code == 201, response.json()
    shown = response.json()
    assert {key: shown[key] for key in spec} == spec


def test_ip_version_is_derived_and_ranges_merged_like_the_mutating_webhook(api, staff, tenant_a):
    body = {"name": "p1", "tenant": tenant_a.name, "subnet": "10.6.0.0/16",
            "ips": ["10.6.0.12", "10.6.0.10-10.6.0.11", "10.6.0.13"]}
    shown = api(staff).post(reverse("ippool-list"), body, format="json").json()
    assert shown["ipVersion"] == 4
    assert shown["ips"] == ["10.6.0.10-10.6.0.13"]
    assert shown["totalIPCount"] == 4
    assert shown["labels"]["ipam.spidernet.io/ippool-cidr"] == "10-6-0-0-16"


def test_pool_inherits_gateway_and_routes_from_its_subnet(api, staff, tenant_a):
    client = api(staff)
    client.post(reverse("subnet-list"), {"name": "s1", "tenant": tenant_a.name, **SUBNET_SPEC}, format="json")
    body = {"name": "p1", "tenant": tenant_a.name, "subnet": "fd00:172:18::/64", "ips": ["fd00:172:18::100"]}
    shown = client.post(reverse("ippool-list"), body, format="json").json()
    assert shown["ownerSubnet"] == "s1"
    assert shown["gateway"] == "fd00:172:18::1"
    assert shown["routes"] == SUBNET_SPEC["routes"]


def test_every_api_field_is_camel_case(api, staff, tenant_a):
    client = api(staff)
    client.post(reverse("ippool-list"), {"name": "p1", "tenant": tenant_a.name, **IPPOOL_SPEC}, format="json")
    for basename in ("tenant", "ippool"):
        for item in client.get(reverse(f"{basename}-list")).json()["results"]:
            assert [key for key in item if "_" in key] == []
    settings = client.get(reverse("cluster-settings")).json()
    assert [key for key in settings if "_" in key] == []
    assert {"enableIPv4", "enableIPv6", "enableSpiderSubnet", "enableStatefulSet"} <= set(settings)
