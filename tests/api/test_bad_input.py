"""Every bad input gets a 400 (or 409 for a conflict) naming the field and saying what is wrong; never a 500."""

import json

import pytest
from django.urls import reverse

from spiderweb.ipam import services
from spiderweb.ipam.models import IPPool, ReservedIP, Subnet
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db

POOLS = reverse("ippool-list")
SUBNETS = reverse("subnet-list")
RESERVED = reverse("reservedip-list")


@pytest.fixture
def client(api, staff):
    return api(staff)


def post_pool(client, tenant, **spec):
    return client.post(POOLS, {"name": "p-new", "tenant": tenant.name, **spec}, format="json")


def assert_refused(response, status: int, field: str, text: str) -> None:
    """The response has `status`, and `field` (as the caller spelled it) carries a message containing `text`."""
    assert response.status_code == status, response.content
    body = response.json()
    assert any(text in message for message in body[field]), body


# ------------------------------------------------------------------------------------------------------ pools


@pytest.mark.parametrize(
    ("spec", "field", "text"),
    [
        ({"subnet": "not-a-cidr"}, "subnet", "'not-a-cidr' is not a CIDR"),
        ({"subnet": "10.6.0.0/33"}, "subnet", "'10.6.0.0/33' is not a valid IP CIDR"),
        ({"subnet": "10.6.1.0/16"}, "subnet", '"10.6.1.0/16" is not canonical, use "10.6.0.0/16"'),
        ({"subnet": "10.6.0.0/16", "ipVersion": 6}, "subnet", "'10.6.0.0/16' is an IPv4 CIDR, expected IPv6"),
        ({"subnet": "10.6.0.0/16", "ips": ["10.7.0.1"]}, "ips", "10.7.0.1 is outside subnet 10.6.0.0/16."),
        ({"subnet": "10.6.0.0/16", "excludeIPs": ["10.7.0.1-10.7.0.3"]}, "excludeIPs",
         "10.7.0.1-10.7.0.3 is outside subnet 10.6.0.0/16."),
        ({"subnet": "10.6.0.0/16", "ips": ["10.6.0.20-10.6.0.10"]}, "ips", "starts after it ends"),
        ({"subnet": "10.6.0.0/16", "ips": ["10.6.0.x"]}, "ips", "'10.6.0.x' is not a valid IP address"),
        ({"subnet": "10.6.0.0/16", "ips": ["10.6.0.10-10.6.0.20"], "gateway": "10.6.0.10"}, "gateway",
         "gateway 10.6.0.10 is one of the pool's IPs"),
        ({"subnet": "10.6.0.0/16", "routes": [{"dst": "0.0.0.0/0", "gw": "10.6.0.1"}]}, "routes",
         "routes[0].dst 0.0.0.0/0 is the default route; set the pool gateway instead"),
        ({"subnet": "10.6.0.0/16", "routes": [{"dst": "10.9.0.0/16", "gw": "10.8.0.1"}]}, "routes",
         "routes[0].gw 10.8.0.1 is outside subnet 10.6.0.0/16"),
        ({"subnet": "10.6.0.0/16", "podAffinity": {"matchLabels": {"app": 1}}}, "podAffinity",
         "label value must be a string"),
        ({"ips": ["10.6.0.1"]}, "subnet", "This field is required."),
        ({"subnet": "10.6.0.0/16", "ips": "10.6.0.1"}, "ips", 'Expected a list of items but got type "str".'),
    ],
    ids=[
        "malformed-cidr", "prefix-too-long", "non-canonical-cidr", "family-mismatch", "ips-outside-subnet",
        "exclude-outside-subnet", "reversed-range", "bad-address", "gateway-inside-ips", "route-default-dst",
        "route-gw-outside", "bad-pod-affinity", "missing-subnet", "ips-not-a-list",
    ],
)
def test_pool_spec_errors_are_400_with_the_field_message(client, tenant_a, spec, field, text):
    response = post_pool(client, tenant_a, **spec)
    assert_refused(response, 400, field, text)
    assert not IPPool.objects.filter(name="p-new").exists()


def test_route_without_gw_is_a_400_on_the_route(client, tenant_a):
    response = post_pool(client, tenant_a, subnet="10.6.0.0/16", routes=[{"dst": "10.9.0.0/16"}])
    assert response.status_code == 400
    assert response.json()["routes"] == {"0": {"gw": ["This field is required."]}}, response.json()


def test_spec_error_body_has_code_message_and_camel_case_field_details(client, tenant_a):
    response = post_pool(client, tenant_a, subnet="10.6.0.0/16", excludeIPs=["10.7.0.1"])
    body = response.json()
    assert body["code"] == "invalid_input"
    assert body["message"] == "excludeIPs: 10.7.0.1 is outside subnet 10.6.0.0/16."
    assert body["details"] == {"fields": {"excludeIPs": ["10.7.0.1 is outside subnet 10.6.0.0/16."]}}


def test_pool_overlapping_another_pools_cidr_is_refused(client, tenant_a):
    f.pool("wide", "10.6.0.0/16", ["10.6.0.10"], owner=tenant_a)
    response = post_pool(client, tenant_a, subnet="10.6.1.0/24", ips=["10.6.1.10"])
    assert_refused(response, 400, "subnet", "10.6.1.0/24 overlaps the subnet 10.6.0.0/16 of IPPool wide.")


def test_an_overlap_with_another_tenants_pool_is_reported_without_its_name(api, member, tenant_a, tenant_b):
    # Given tenant-b's pool
    f.pool("secret-pool", "10.6.0.0/16", ["10.6.0.10"], owner=tenant_b)
    # When a member of tenant-a creates an overlapping pool
    response = post_pool(api(member), tenant_a, subnet="10.6.1.0/24")
    # Then the overlap is refused, without naming the other tenant's pool
    assert_refused(response, 400, "subnet", "10.6.1.0/24 overlaps the subnet 10.6.0.0/16 of IPPool (another tenant's")
    assert "secret-pool" not in response.content.decode()


def test_pool_ranges_overlapping_a_pool_of_the_same_cidr_are_refused(client, tenant_a):
    f.pool("first", "10.6.0.0/16", ["10.6.0.10-10.6.0.20"], owner=tenant_a)
    response = post_pool(client, tenant_a, subnet="10.6.0.0/16", ips=["10.6.0.15-10.6.0.30"])
    assert_refused(response, 400, "ips", "10.6.0.15-10.6.0.20 already belong to IPPool first.")


def test_same_cidr_with_disjoint_ranges_is_accepted(client, tenant_a):
    f.pool("first", "10.6.0.0/16", ["10.6.0.10-10.6.0.20"], owner=tenant_a)
    response = post_pool(client, tenant_a, subnet="10.6.0.0/16", ips=["10.6.0.21-10.6.0.30"])
    assert response.status_code == 201, response.json()


def test_pool_of_a_family_the_cluster_disabled_is_refused(client, tenant_a):
    # Given the cluster switched IPv6 off through the settings endpoint
    response = client.patch(reverse("cluster-settings"), {"enableIPv6": False}, format="json")
    assert response.status_code == 200
    assert response.json()["enableIPv6"] is False
    # When an IPv6 pool is created
    response = post_pool(client, tenant_a, subnet="fd00::/120", ips=["fd00::10"])
    # Then it is refused on ipVersion
    assert_refused(response, 400, "ipVersion", "IPv6 is disabled in the cluster settings (enableIPv6: false).")


def test_duplicate_pool_name_is_a_400(client, tenant_a):
    f.pool("p-new", "10.6.0.0/16", ["10.6.0.10"], owner=tenant_a)
    response = post_pool(client, tenant_a, subnet="10.7.0.0/16")
    assert_refused(response, 400, "name", "already exists")


def test_invalid_kubernetes_name_is_a_400(client, tenant_a):
    response = client.post(POOLS, {"name": "Bad_Name", "tenant": tenant_a.name, "subnet": "10.6.0.0/16"},
                           format="json")
    assert_refused(response, 400, "name", "Use a Kubernetes object name")


def test_subnet_of_a_pool_is_immutable(client, tenant_a):
    pool = f.pool("p1", "10.6.0.0/16", ["10.6.0.10"], owner=tenant_a)
    response = client.patch(reverse("ippool-detail", args=[pool.pk]), {"subnet": "10.7.0.0/16"}, format="json")
    assert_refused(response, 400, "subnet", "subnet is immutable.")


def test_removing_an_allocated_address_from_a_pool_is_refused(client, tenant_a):
    pool = f.pool("p1", "10.6.0.0/16", ["10.6.0.10-10.6.0.11"], owner=tenant_a)
    f.allocate(f.facts(annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p1"]})}))
    response = client.patch(reverse("ippool-detail", args=[pool.pk]), {"ips": ["10.6.0.11"]}, format="json")
    assert_refused(response, 400, "ips", "cannot remove allocated addresses 10.6.0.10 from the pool.")


def test_deleting_a_pool_that_holds_allocations_is_a_409_naming_the_holders(client, tenant_a):
    pool = f.pool("p1", "10.6.0.0/16", ["10.6.0.10-10.6.0.11"], owner=tenant_a)
    f.allocate(f.facts("web-0", annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p1"]})}))
    response = client.delete(reverse("ippool-detail", args=[pool.pk]))
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "pool_in_use"
    assert body["message"] == "IPPool p1 still holds 1 allocations: 10.6.0.10 (default/web-0, eth0)"
    assert body["details"]["holders"] == ["10.6.0.10 (default/web-0, eth0)"]
    assert IPPool.objects.filter(pk=pool.pk).exists()


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '"a string"'])
def test_a_body_that_is_not_a_json_object_is_a_400(client, body):
    response = client.generic("POST", POOLS, body, content_type="application/json")
    assert response.status_code == 400


def test_cluster_settings_cannot_disable_both_families(client):
    response = client.patch(reverse("cluster-settings"), {"enableIPv4": False, "enableIPv6": False}, format="json")
    assert_refused(response, 400, "enableIPv4", "At least one of enableIPv4 and enableIPv6 must be on.")


def test_only_staff_change_cluster_settings(api, member):
    response = api(member).patch(reverse("cluster-settings"), {"enableIPv6": False}, format="json")
    assert response.status_code == 403
    assert api(member).get(reverse("cluster-settings")).json()["enableIPv6"] is True


# ---------------------------------------------------------------------------------------------------- subnets


def test_subnet_overlapping_another_subnet_is_refused(client, tenant_a):
    services.subnet_create(tenant=tenant_a, name="s1", spec={"subnet": "10.6.0.0/16"})
    response = client.post(SUBNETS, {"name": "s2", "tenant": tenant_a.name, "subnet": "10.6.0.0/24"}, format="json")
    assert_refused(response, 400, "subnet", "10.6.0.0/24 overlaps SpiderSubnet s1 (10.6.0.0/16).")


def test_subnet_that_cannot_control_an_existing_pool_is_refused(client, tenant_a):
    f.pool("p1", "10.6.0.0/16", ["10.6.0.10-10.6.0.20"], owner=tenant_a)
    response = client.post(
        SUBNETS, {"name": "s1", "tenant": tenant_a.name, "subnet": "10.6.0.0/16", "ips": ["10.6.0.15-10.6.0.99"]},
        format="json",
    )
    assert_refused(response, 400, "ips", "SpiderIPPool p1 owns some IP addresses that this subnet can't control.")


def test_deleting_a_subnet_that_controls_pools_is_a_409(client, tenant_a):
    subnet = services.subnet_create(
        tenant=tenant_a, name="s1", spec={"subnet": "10.6.0.0/16", "ips": ["10.6.0.1-10.6.0.99"]}
    )
    f.pool("p1", "10.6.0.0/16", ["10.6.0.10"], owner=tenant_a)
    response = client.delete(reverse("subnet-detail", args=[subnet.pk]))
    assert response.status_code == 409
    assert response.json()["message"] == "SpiderSubnet s1 still controls IPPools p1"
    assert Subnet.objects.filter(pk=subnet.pk).exists()


# ------------------------------------------------------------------------------------------------ reserved IPs


@pytest.mark.parametrize(
    ("ips", "text"),
    [
        ([], "Must be a non-empty list of IP range strings."),
        (["10.6.0.300"], "'10.6.0.300' is not a valid IP address"),
        (["10.6.0.1", "fd00::1"], "a range list holds one family"),
    ],
    ids=["empty", "bad-address", "mixed-families"],
)
def test_reserved_ip_errors_are_400_on_ips(client, tenant_a, ips, text):
    response = client.post(RESERVED, {"name": "r1", "tenant": tenant_a.name, "ips": ips}, format="json")
    assert_refused(response, 400, "ips", text)
    assert not ReservedIP.objects.exists()


def test_reserved_ip_of_a_disabled_family_is_refused(client, tenant_a):
    client.patch(reverse("cluster-settings"), {"enableIPv6": False}, format="json")
    response = client.post(RESERVED, {"name": "r1", "tenant": tenant_a.name, "ips": ["fd00::1"]}, format="json")
    assert_refused(response, 400, "ipVersion", "IPv6 is disabled in the cluster settings (enableIPv6: false).")


@pytest.mark.parametrize("affinity", [{}, {"matchLabels": {}, "matchExpressions": []}, {"matchLabels": {}}])
def test_an_empty_pod_affinity_is_refused(client, tenant_a, affinity):
    # An empty podAffinity matches every pod yet sorts as the most specific pool (issue 10; spec §1.2)
    response = post_pool(client, tenant_a, subnet="10.6.0.0/16", podAffinity=affinity)
    assert_refused(response, 400, "podAffinity", "podAffinity must have matchLabels or matchExpressions")
    assert not IPPool.objects.filter(name="p-new").exists()


@pytest.mark.parametrize(
    ("extra", "field", "text"),
    [
        ({"labels": {"bad key": "x"}}, "labels", "label key 'bad key' is invalid"),
        ({"labels": {"team": "x" * 64}}, "labels", "label value"),
        ({"labels": {"Example.COM/app": "x"}}, "labels", "invalid prefix"),
        ({"namespaceName": ["Kube_System"]}, "namespaceName", "'Kube_System' is not a valid DNS-1123 label"),
        ({"namespaceName": ["a" * 64]}, "namespaceName", "is not a valid DNS-1123 label"),
        ({"nodeName": ["Node 1"]}, "nodeName", "'Node 1' is not a valid DNS-1123 subdomain"),
        ({"multusName": ["kube-system/Mac_Vlan"]}, "multusName", "'Mac_Vlan' is not a valid DNS-1123 subdomain"),
        ({"multusName": ["Kube_System/macvlan"]}, "multusName", "namespace 'Kube_System' is not a valid"),
        ({"multusName": ["a/b/c"]}, "multusName", "is not a valid DNS-1123 label"),
    ],
)
def test_what_kubernetes_refuses_is_refused(client, tenant_a, extra, field, text):
    # Labels, namespace names, node names and multusName the CRD would refuse (issue 10, Low 10)
    response = post_pool(client, tenant_a, subnet="10.6.0.0/16", **extra)
    assert_refused(response, 400, field, text)
    assert not IPPool.objects.filter(name="p-new").exists()


def test_valid_kubernetes_names_and_labels_pass(client, tenant_a):
    response = post_pool(client, tenant_a, subnet="10.6.0.0/16", labels={"app.kubernetes.io/name": "web", "x": ""},
                         namespaceName=["kube-system"], nodeName=["worker-1.example"],
                         multusName=["kube-system/macvlan-conf", "macvlan.v2"])
    assert response.status_code == 201, response.content


def test_reservation_and_subnet_labels_are_checked_too(client, tenant_a):
    for url, body in ((RESERVED, {"ips": ["10.9.0.1"]}), (SUBNETS, {"subnet": "10.9.0.0/24"})):
        response = client.post(url, {"name": "x", "tenant": tenant_a.name, "labels": {"a b": "c"}, **body},
                               format="json")
        assert_refused(response, 400, "labels", "label key 'a b' is invalid")
