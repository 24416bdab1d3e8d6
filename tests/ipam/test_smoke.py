import json

import pytest

from tests.ipam import factories as f

pytestmark = pytest.mark.django_db


def test_allocate_from_annotated_pool_returns_lowest_address():
    # Given a pool with ten addresses
    f.pool("p1", "10.0.0.0/24", ["10.0.0.10-10.0.0.19"], gateway="10.0.0.1")
    pod = f.facts(annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p1"]})})
    # When a pod asks for it
    result = f.allocate(pod)
    # Then it gets the lowest address with the pool's prefix and a default route through the gateway
    assert [ip["address"] for ip in result["ips"]] == ["10.0.0.10/24"]
    assert result["routes"] == [{"ifName": "eth0", "dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
