"""Kernel parameters: the agent's host sysctls (spec §12.3) and the small reads/writes the coordinator needs.

Values live under ``/proc/sys/net``, which the kernel resolves against the network namespace of the task that
opens the file, so a write for a pod (or for a test's fake host) goes through :func:`run_in_netns`.
"""

from __future__ import annotations

import logging

from agent.netlink.netns_thread import run_in_netns

log = logging.getLogger(__name__)

# Spec §12.3: set by the agent at start-up, each only when its family is enabled. ``gc_thresh3`` is raised so a
# node with many pods (one permanent neighbour entry per pod address) does not start dropping entries; forwarding
# is what lets the host route between a pod's veth and the rest of the world; ``arp_notify`` makes the kernel
# announce address changes; ``rp_filter=0`` because coordinator replies leave through a different device than
# requests came in on.
HOST_SYSCTLS_IPV4: tuple[tuple[str, str], ...] = (
    ("net.ipv4.neigh.default.gc_thresh3", "28160"),
    ("net.ipv4.conf.all.arp_notify", "1"),
    ("net.ipv4.conf.all.forwarding", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
)
HOST_SYSCTLS_IPV6: tuple[tuple[str, str], ...] = (
    ("net.ipv6.neigh.default.gc_thresh3", "28160"),
    ("net.ipv6.conf.all.forwarding", "1"),
)


def host_sysctls(*, ipv4: bool, ipv6: bool) -> list[tuple[str, str]]:
    """Return the ``(key, value)`` pairs the agent sets on its host for the enabled families, in order.

    >>> host_sysctls(ipv4=False, ipv6=True)
    [('net.ipv6.neigh.default.gc_thresh3', '28160'), ('net.ipv6.conf.all.forwarding', '1')]
    """
    pairs: list[tuple[str, str]] = []
    if ipv4:
        pairs.extend(HOST_SYSCTLS_IPV4)
    if ipv6:
        pairs.extend(HOST_SYSCTLS_IPV6)
    return pairs


def sysctl_path(key: str) -> str:
    """Map a dotted key to its ``/proc/sys`` file; a key already written with ``/`` is taken as is.

    Use the ``/`` form when a component contains a dot (an interface such as ``eth0.100``).

    >>> sysctl_path("net.ipv4.conf.all.rp_filter")
    '/proc/sys/net/ipv4/conf/all/rp_filter'
    >>> sysctl_path("net/ipv4/conf/eth0.100/rp_filter")
    '/proc/sys/net/ipv4/conf/eth0.100/rp_filter'
    """
    relative = key if "/" in key else key.replace(".", "/")
    return "/proc/sys/" + relative.lstrip("/")


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def sysctl_read(key: str, *, netns_path: str | None = None) -> str:
    """Read one sysctl in ``netns_path`` (``None`` = the agent's own namespace)."""
    return run_in_netns(netns_path, _read, sysctl_path(key))


def sysctl_write(key: str, value: str | int, *, netns_path: str | None = None) -> None:
    """Write one sysctl in ``netns_path`` (``None`` = the agent's own namespace)."""
    run_in_netns(netns_path, _write, sysctl_path(key), str(value))


def apply_host_sysctls(*, ipv4: bool, ipv6: bool, netns_path: str | None = None) -> dict[str, str]:
    """Set the host sysctls of spec §12.3 and return the ones actually written.

    A key the kernel does not have (``FileNotFoundError``: module not loaded, or a per-host key such as
    ``neigh.default.gc_thresh3`` seen from a non-initial namespace) is skipped, as upstream ignores "does not
    exist". Any other error (read-only ``/proc/sys``, bad value) propagates: the agent should not start half-tuned.
    """
    written: dict[str, str] = {}
    for key, value in host_sysctls(ipv4=ipv4, ipv6=ipv6):
        try:
            sysctl_write(key, value, netns_path=netns_path)
        except FileNotFoundError:
            log.info("sysctl %s does not exist here, skipped", key)
            continue
        written[key] = value
    return written
