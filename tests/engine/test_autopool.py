"""The pure auto-pool rules: annotations, desired counts, names, resize (spec §2.1, §4.3, §4.5, C7)."""

import doctest

import pytest

from spiderweb.engine import autopool
from spiderweb.engine.autopool import SubnetRequest, ip_number_parse, resize, subnet_requests
from spiderweb.engine.errors import InvalidInput
from spiderweb.engine.ranges import RangeSet


def test_docstring_examples_hold():
    assert doctest.testmod(autopool).failed == 0


@pytest.mark.parametrize("value, cluster_default, replicas, desired", [
    ("+1", 5, 2, 3), ("4", 5, 2, 4), (None, 2, 3, 5), (None, 0, 3, 3), ("+0", 1, 0, 0), (" 7 ", 0, 9, 7),
])
def test_desired_count(value, cluster_default, replicas, desired):
    assert ip_number_parse(value, cluster_default=cluster_default).desired(replicas) == desired


@pytest.mark.parametrize("bad", ["", "+", "-1", "1.5", "+x", "++2", "2+"])
def test_bad_ip_numbers_are_refused(bad):
    with pytest.raises(InvalidInput, match="ippool-ip-number"):
        ip_number_parse(bad, cluster_default=1)


def test_subnets_annotation_wins_and_names_each_nic():
    annotations = {"ipam.spidernet.io/subnet": '{"ipv4": ["ignored"]}',
                   "ipam.spidernet.io/subnets": '[{"interface": "eth0", "ipv4": ["a", "b"], "ipv6": ["a6"]},'
                                                '{"interface": "net1", "ipv6": ["c6"]}]'}
    assert subnet_requests(annotations) == [SubnetRequest("eth0", "a", "a6"), SubnetRequest("net1", "", "c6")]


@pytest.mark.parametrize("annotations, message", [
    ({"ipam.spidernet.io/subnet": "{"}, "invalid"),
    ({"ipam.spidernet.io/subnet": "{}"}, "name an ipv4 or ipv6"),
    ({"ipam.spidernet.io/subnet": '{"ipv4": ["s*"]}'}, "wildcards"),
    ({"ipam.spidernet.io/subnets": '[{"ipv4": ["a"]}, {"ipv4": ["b"]}]'}, "needs an interface"),
    ({"ipam.spidernet.io/subnets": '[{"interface": "eth0", "ipv4": ["a"]}, {"interface": "eth0", "ipv4": ["b"]}]'},
     "unique"),
    ({"ipam.spidernet.io/subnets": '[{"interface": "eth0", "ipv4": ["a"]}, {"interface": "net1", "ipv4": ["a"]}]'},
     "only one interface"),
    ({"ipam.spidernet.io/subnets": '{"interface": "eth0"}'}, "list of objects"),
])
def test_bad_subnet_annotations_say_what_is_wrong(annotations, message):
    with pytest.raises(InvalidInput, match=message):
        subnet_requests(annotations)


def test_shrink_never_drops_an_address_in_use_even_when_short():
    pool = RangeSet.parse(["10.0.0.1-10.0.0.6"])
    r = resize(pool, desired=0, subnet_free=RangeSet.empty(4), in_use=RangeSet.parse(["10.0.0.2-10.0.0.5"]))
    assert r.ips.to_strings() == ["10.0.0.2-10.0.0.5"] and "4 more addresses are in use" in r.shortfall


def test_names_fit_253_and_the_owner_label_63():
    name = autopool.auto_pool_name(4, "a" * 300, "eth0", "x-abcdef")
    assert len(name) == 253 and name.endswith("-eth0-abcde")
    app = autopool.App("apps/v1", "Deployment", "ns", "n" * 64, "u")
    assert not autopool.app_name_fits(app)
