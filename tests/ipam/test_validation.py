"""Pool validation rules that read other pools, on both databases (`make test` runs this file on SQLite too)."""

import pytest

from spiderweb.ipam import services
from spiderweb.ipam.validation import SpecInvalid
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def neighbours():
    f.pool("wide", "10.60.0.0/16", ["10.60.0.10-10.60.0.20"])
    f.pool("narrow", "10.61.1.0/24", ["10.61.1.10-10.61.1.20"])
    f.pool("apart", "10.62.0.0/24", ["10.62.0.10-10.62.0.20"])
    f.pool("same", "10.63.0.0/24", ["10.63.0.10-10.63.0.20"])
    f.pool("six", "fd00:60::/64", ["fd00:60::10-fd00:60::20"])


@pytest.mark.parametrize(("subnet", "ips", "refusal"), [
    ("10.60.5.0/24", "10.60.5.10", "10.60.5.0/24 overlaps the subnet 10.60.0.0/16 of IPPool wide."),
    ("10.61.0.0/16", "10.61.0.10", "10.61.0.0/16 overlaps the subnet 10.61.1.0/24 of IPPool narrow."),
    ("fd00:60::/48", "fd00:60:0:1::10", "fd00:60::/48 overlaps the subnet fd00:60::/64 of IPPool six."),
])
def test_a_new_pool_whose_subnet_overlaps_another_pools_is_refused(neighbours, subnet, ips, refusal):
    with pytest.raises(SpecInvalid) as refused:
        f.pool("new", subnet, [ips])
    assert refused.value.fields["subnet"] == [refusal]


@pytest.mark.parametrize(("subnet", "ips"), [
    ("10.62.1.0/24", "10.62.1.10"),  # next to "apart", not inside it
    ("10.63.0.0/24", "10.63.0.50"),  # the same subnet as "same": pools share a subnet, not addresses
])
def test_a_new_pool_next_to_or_sharing_another_pools_subnet_is_accepted(neighbours, subnet, ips):
    assert services.ippool_create(tenant=f.tenant(), name="new", spec={"subnet": subnet, "ips": [ips]}).pk


@pytest.mark.parametrize(("subnet", "field", "refusal"), [
    ("10.60.0.0/12", "subnet", "10.48.0.0/12"),  # not canonical: the rule that names the canonical form
    ("10.48.0.0/12", "subnet", "10.48.0.0/12 overlaps the subnet 10.60.0.0/16 of IPPool wide."),
    ("10.70.0.0/16", "subnet", "10.70.0.0/16 overlaps SpiderSubnet taken (10.70.4.0/24)."),
    ("10.63.0.0/24", "ips", "SpiderIPPool same owns some IP addresses that this subnet can't control."),
])
def test_a_new_subnet_overlapping_a_subnet_or_a_pools_subnet_is_refused(neighbours, subnet, field, refusal):
    services.subnet_create(tenant=f.tenant(), name="taken", spec={"subnet": "10.70.4.0/24", "ips": ["10.70.4.10"]})
    with pytest.raises(SpecInvalid) as refused:
        services.subnet_create(tenant=f.tenant(), name="new", spec={"subnet": subnet, "ips": [subnet.split("/")[0]]})
    assert any(refusal in message for message in refused.value.fields[field])


def test_a_new_subnet_around_pools_of_its_own_subnet_is_accepted(neighbours):
    spec = {"subnet": "10.63.0.0/24", "ips": ["10.63.0.1-10.63.0.254"]}
    assert services.subnet_create(tenant=f.tenant(), name="new", spec=spec).pk
