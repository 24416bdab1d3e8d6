"""Fixtures for the netlink layer: a throw-away lab of network namespaces per test (see ``netlink_lab``)."""

from __future__ import annotations

import os
import shutil

import pytest
from netlink_lab import Lab, Underlay, build_underlay


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``netns`` need root (network namespaces, raw sockets); skip them, loudly, otherwise."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root to create network namespaces")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def lab():
    """A :class:`Lab` whose namespaces are removed after the test, even when it fails."""
    built = Lab()
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def underlay(lab: Lab) -> Underlay:
    """The standard underlay: switch (br0, br1), host (ens1, ens2) and gateway namespaces."""
    return build_underlay(lab)


@pytest.fixture
def iptables() -> None:
    """The underlay coordinator installs mangle rules with iptables through nsenter."""
    missing = [tool for tool in ("iptables", "ip6tables", "nsenter") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install iptables util-linux)")
