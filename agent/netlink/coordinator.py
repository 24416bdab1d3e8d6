"""The coordinator meta-plugin's kernel work (spec §8.2-§8.4), done by the agent on behalf of the CNI shim.

The coordinator runs after the main CNI (macvlan, ipvlan, sriov, ...) has given the pod a NIC. Underlay NICs
cannot talk to their own node (a macvlan child never reaches its parent's host stack), so the coordinator adds
a ``veth0`` pair to the host and routes node addresses and cluster CIDRs (service, overlay pod CIDRs, extra
``hijackCIDR``) through it; on multi-NIC pods it moves each extra NIC's routes into a policy table so replies
leave through the NIC the request came in on.

Shape (containernetworking/plugins style): every ADD step checks what is already there, changes only what is
missing and registers the undo of each change on an ``ExitStack``; if any step fails, the stack unwinds and the
pod and host are left as they were, so a retried ADD starts clean. Repeating a successful ADD changes nothing.
DEL succeeds when the netns, the link, the route or the rule is already gone.

The "reply through veth" mangle rules are installed with the ``iptables``/``ip6tables`` binaries, started from a
thread inside the pod netns (a child process inherits the namespace of the thread that spawns it): there is no
netlink API for xtables rules, and the binaries pick the right backend (nft or legacy) for the node. Those are the
only subprocesses here; everything else is rtnetlink (:mod:`agent.netlink.rtnl`).

Deliberate choices where the spec leaves room or upstream is wrong:

* ``txQueueLen`` is set inside the pod netns (upstream sets it in the host netns, spec A7).
* The node-wide host rule ``from all lookup <hostRuleTable>`` (priority 1000) is shared by every pod; it is
  never removed by an undo or by DEL, exactly as upstream. Per-pod state (host veth, table routes, neighbour
  entries, legacy ``to <addr>`` rules) is.
* IPv6 link-local and loopback addresses are never treated as pod or host addresses (every IPv6 link has a
  link-local address; routing them through ``veth0`` would break NDP).
* The CNI result is returned unchanged (``veth0`` is not appended): Multus would otherwise report ``veth0`` in
  the pod's network-status annotation.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import os
import re
import shlex
import subprocess
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace

from agent.netlink import detection
from agent.netlink.coordinator_config import (
    MODE_AUTO,
    MODE_DISABLE,
    MODE_OVERLAY,
    MODE_UNDERLAY,
    CoordinatorConfig,
)
from agent.netlink.errors import CoordinatorError, DetectionError
from agent.netlink.netns_thread import run_in_netns
from agent.netlink.rtnl import (
    FAMILY,
    IFF_BROADCAST,
    IFF_UP,
    MAIN_TABLE,
    SCOPE_LINK,
    IPAddress,
    Link,
    NetlinkError,
    Route,
    Rtnl,
    Rule,
    add_address,
    add_route,
    add_veth,
    delete_address,
    delete_link,
    delete_neighbour,
    delete_route,
    delete_rule,
    ensure_permanent_neighbour,
    ensure_route,
    ensure_rule,
    get_link,
    ignore_missing,
    iproute,
    is_usable,
    list_addresses,
    list_links,
    list_neighbours,
    list_routes,
    list_rules,
    max_prefix,
    replace_permanent_neighbour,
    replace_route,
    route_source,
    set_link,
)
from agent.netlink.sysctl import sysctl_read, sysctl_write

log = logging.getLogger(__name__)

POD_VETH_NAME = "veth0"
REPLY_TABLE = 100  # "reply via host" (underlay) / the overlay NIC's default route (overlay)
FIRST_NIC_TABLE = 101
REPLY_MARK = 0x1
REPLY_RULE_PRIORITY = 1000
HOST_RULE_PRIORITY = 1000

# Spec §8.3 step 3: host interfaces whose addresses are not "the node" for a pod (bridges, other CNIs' devices).
HOST_INTERFACE_EXCLUDES: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern)
    for pattern in (
        r"^docker.*", r"^cbr.*", r"^dummy.*", r"^virbr.*", r"^lxcbr.*", r"^veth.*", r"^lo$", r"^cali.*",
        r"^flannel.*", r"^kube-ipvs.*", r"^cni.*", r"^vx-submariner", r"^cilium*",
    )
)

_REPLY_IPTABLES_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PREROUTING", ("-i", POD_VETH_NAME, "-m", "conntrack", "--ctstate", "NEW",
                    "-j", "MARK", "--set-xmark", f"{REPLY_MARK:#x}/0xffffffff")),
    ("PREROUTING", ("-m", "mark", "--mark", f"{REPLY_MARK:#x}", "-j", "CONNMARK", "--save-mark")),
    ("OUTPUT", ("-j", "CONNMARK", "--restore-mark")),
)


# --- pure decisions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModeDecision:
    """The effective mode for this NIC, whether it is the first coordinator invocation, and its policy table."""

    mode: str
    first_invoke: bool
    table: int


def resolve_mode(*, mode: str, if_name: str, first_nic: str, up_links: int, veth0_exists: bool) -> ModeDecision:
    """Spec §8.2: resolve ``auto``, decide "first invoke" and number the NIC's policy table.

    ``up_links`` counts the pod's links that are UP and BROADCAST (so not ``lo``), after this NIC was brought up.

    >>> resolve_mode(mode="auto", if_name="eth0", first_nic="eth0", up_links=1, veth0_exists=False)
    ModeDecision(mode='underlay', first_invoke=True, table=101)
    >>> resolve_mode(mode="auto", if_name="net2", first_nic="eth0", up_links=4, veth0_exists=True)
    ModeDecision(mode='underlay', first_invoke=False, table=102)
    >>> resolve_mode(mode="auto", if_name="net1", first_nic="eth0", up_links=2, veth0_exists=False)
    ModeDecision(mode='overlay', first_invoke=True, table=101)
    >>> resolve_mode(mode="overlay", if_name="net2", first_nic="eth0", up_links=3, veth0_exists=False)
    ModeDecision(mode='overlay', first_invoke=False, table=102)
    """
    if mode == MODE_AUTO:
        mode = MODE_UNDERLAY if if_name == first_nic or veth0_exists else MODE_OVERLAY
    if mode == MODE_UNDERLAY:
        first = if_name == first_nic
        if not first and not veth0_exists:
            raise CoordinatorError(
                f"{if_name} runs coordinator in underlay mode but the pod has no {POD_VETH_NAME}: the first NIC "
                f"({first_nic}) must also run coordinator in underlay mode",
                details={"ifName": if_name, "mode": mode},
            )
        return ModeDecision(mode, first, FIRST_NIC_TABLE if first else up_links + 98)
    if mode == MODE_OVERLAY:
        if if_name == first_nic:
            raise CoordinatorError(
                f"coordinator in overlay mode must not run for the pod's first NIC {first_nic}; it is for extra "
                f"NICs next to an overlay CNI", details={"ifName": if_name, "mode": mode})
        if veth0_exists:
            raise CoordinatorError(
                f"{if_name} runs coordinator in overlay mode but {POD_VETH_NAME} exists: an earlier NIC ran in "
                f"underlay mode", details={"ifName": if_name, "mode": mode})
        first = up_links == 2
        return ModeDecision(mode, first, FIRST_NIC_TABLE if first else up_links + 99)
    raise CoordinatorError(f"unknown coordinator mode {mode!r}", details={"mode": mode})


def host_veth_name(container_id: str) -> str:
    """Host end of the pod's veth pair: ``veth`` + the first 11 characters of the container ID (15-char limit).

    >>> host_veth_name("0123456789abcdef")
    'veth0123456789a'
    """
    if not container_id:
        raise CoordinatorError("containerID is required to name the host veth")
    return "veth" + container_id[:11]


def mac_with_prefix(prefix: str, ip: IPAddress) -> str:
    """``podMACPrefix`` + the 4 bytes of an IPv4 address (or the last 4 bytes of an IPv6 address).

    >>> mac_with_prefix("0a:bc", ipaddress.ip_address("10.6.0.100"))
    '0a:bc:0a:06:00:64'
    >>> mac_with_prefix("0a:bc", ipaddress.ip_address("fd00::1:ff02:0304"))
    '0a:bc:ff:02:03:04'
    """
    return prefix.lower() + "".join(f":{b:02x}" for b in ip.packed[-4:])


def random_mac() -> str:
    """A random locally administered unicast MAC: set explicitly so systemd-udev cannot rewrite it later."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def select_host_ips(route_sources: list[IPAddress], host_addresses: list[tuple[str, IPAddress]],
                    versions: set[int]) -> list[IPAddress]:
    """Host IPs a pod must reach through the host (spec §8.3 step 3), route sources first, without duplicates.

    ``route_sources`` are the addresses the host uses to reach the pod's addresses (``ip route get``);
    ``host_addresses`` are ``(interface, address)`` of the host, filtered by :data:`HOST_INTERFACE_EXCLUDES`.

    >>> a = ipaddress.ip_address
    >>> select_host_ips([a("10.6.0.10")], [("ens1", a("10.6.0.10")), ("docker0", a("172.17.0.1")),
    ...                  ("ens2", a("192.168.1.5")), ("ens1", a("fd00::10")), ("ens1", a("fe80::1"))], {4})
    [IPv4Address('10.6.0.10'), IPv4Address('192.168.1.5')]
    """
    chosen: dict[IPAddress, None] = {}
    for ip in route_sources:
        if ip.version in versions and is_usable(ip):
            chosen.setdefault(ip, None)
    for ifname, ip in host_addresses:
        if ip.version not in versions or not is_usable(ip):
            continue
        if any(pattern.match(ifname) for pattern in HOST_INTERFACE_EXCLUDES):
            continue
        chosen.setdefault(ip, None)
    return list(chosen)


# --- iptables in the pod netns ---------------------------------------------------------------------------


def _run_in_pod(netns_path: str, command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run `command` inside the pod netns: spawned by a thread that entered it (no `nsenter` process)."""
    try:
        return run_in_netns(netns_path, subprocess.run, command, input=stdin, capture_output=True, text=True,
                            timeout=30, check=False)
    except FileNotFoundError:
        raise CoordinatorError(f"{command[0]} is not installed; the coordinator needs it") from None
    except subprocess.TimeoutExpired:
        raise CoordinatorError(f"{' '.join(command)} did not finish within 30 s (xtables lock?)") from None


def _iptables(netns_path: str, version: int, args: list[str]) -> subprocess.CompletedProcess:
    binary = "iptables" if version == 4 else "ip6tables"
    return _run_in_pod(netns_path, [binary, "-w", "5", "-t", "mangle", *args])


def _mangle_is_empty(netns_path: str, version: int) -> bool:
    """True when the pod's mangle table holds no rule at all (a new pod's netns): then every rule is missing."""
    binary = "iptables-save" if version == 4 else "ip6tables-save"
    done = _run_in_pod(netns_path, [binary, "-t", "mangle"])
    return done.returncode == 0 and not any(line.startswith("-A ") for line in done.stdout.splitlines())


def _ensure_iptables_rules(netns_path: str, version: int, rules, undo: ExitStack) -> None:
    """Add the missing rules of `rules` ((chain, spec) pairs); register the removal of each rule added here.

    A new pod's mangle table is empty: then one `iptables-save` (to see that) and one `iptables-restore --noflush`
    (all rules in one transaction) do it, two processes. Otherwise each rule is checked (`-C`) and appended (`-A`)
    only when missing, by a small shell script (one process plus one per `iptables` call); rules that were
    already there are left alone.
    """
    binary = "iptables" if version == 4 else "ip6tables"
    if _mangle_is_empty(netns_path, version):
        script = "*mangle\n" + "".join(
            " ".join(["-A", chain, *(shlex.quote(part) for part in spec)]) + "\n" for chain, spec in rules) + "COMMIT\n"
        done = _run_in_pod(netns_path, [f"{binary}-restore", "-w", "5", "--noflush"], stdin=script)
        if done.returncode != 0:
            raise CoordinatorError(f"{binary}-restore failed in the pod: {done.stderr.strip() or done.stdout.strip()}")
        for chain, spec in rules:
            undo.callback(_iptables, netns_path, version, ["-D", chain, *spec])
        return
    lines = []
    for index, (chain, spec) in enumerate(rules):
        rule = " ".join(shlex.quote(part) for part in (chain, *spec))
        base = f"{binary} -w 5 -t mangle"
        lines.append(f"if ! {base} -C {rule} 2>/dev/null; then {base} -A {rule} && echo added:{index} "
                     f"|| {{ echo failed:{index}; exit 1; }}; fi")
    done = _run_in_pod(netns_path, ["sh", "-c", "\n".join(lines)])
    for marker in done.stdout.split():
        kind, _, index = marker.partition(":")
        chain, spec = rules[int(index)]
        if kind == "added":
            undo.callback(_iptables, netns_path, version, ["-D", chain, *spec])
    if done.returncode != 0:
        raise CoordinatorError(f"{binary} -A failed in the pod: {done.stderr.strip() or done.stdout.strip()}")


# --- ADD -------------------------------------------------------------------------------------------------


class _Add:
    """One coordinator ADD. Attributes are filled step by step in :meth:`run`, in spec §8.3 order."""

    def __init__(self, *, pod: Rtnl, host: Rtnl, undo: ExitStack, netns_path: str,
                 if_name: str, container_id: str, config: CoordinatorConfig, host_netns_path: str | None) -> None:
        self.pod, self.host, self.undo = pod, host, undo
        self.netns_path, self.if_name, self.container_id, self.config = netns_path, if_name, container_id, config
        self.host_netns_path = host_netns_path
        self._routes: dict[int, list[Route]] = {}
        self._addresses: list | None = None
        self._known_neighbours: dict[int, list] = {}

    # helpers ---------------------------------------------------------------------------------------------

    def _pod_routes(self, version: int) -> list[Route]:
        """The pod's routes of one family (every table), dumped once per ADD and kept current by ``ensure_route``.

        Only this ADD changes the pod's routes while it runs (a runtime configures one pod's NICs one at a time).
        """
        if version not in self._routes:
            self._routes[version] = list_routes(self.pod, version)
        return self._routes[version]

    def _pod_addresses(self) -> list:
        """The pod's addresses, dumped once per ADD (before this ADD adds any)."""
        if self._addresses is None:
            self._addresses = list_addresses(self.pod)
        return self._addresses

    def _pod_link(self, name: str) -> Link:
        link = get_link(self.pod, name=name)
        if link is None:
            raise CoordinatorError(f"interface {name} not found in pod netns {self.netns_path}")
        return link

    def _usable_addresses(self, link: Link) -> list[IPAddress]:
        return [a.ip for a in self._pod_addresses() if a.index == link.index and is_usable(a.ip)]

    def _first_v4(self, link: Link | None) -> str | None:
        if link is None:
            return None
        return next((str(ip) for ip in self._usable_addresses(link) if ip.version == 4), None)

    def _host_ip(self, version: int) -> IPAddress | None:
        return next((ip for ip in self.host_ips if ip.version == version), None)

    def _set_link(self, link: Link, **changes: object) -> None:
        """``ip link set`` in the pod, undone by restoring the old values."""
        old = {key: getattr(link, key) for key in changes}
        set_link(self.pod, link.index, **changes)
        self.undo.callback(ignore_missing, set_link, self.pod, link.index, **old)

    def _set_sysctl(self, key: str, value: int) -> None:
        old = sysctl_read(key, netns_path=self.netns_path)
        if old == str(value):
            return
        sysctl_write(key, value, netns_path=self.netns_path)
        self.undo.callback(sysctl_write, key, old, netns_path=self.netns_path)

    # steps -----------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Spec §8.3 steps 1-16."""
        config = self.config
        self.cur = self._pod_link(self.if_name)
        if not self.cur.up:  # step 2
            set_link(self.pod, self.cur.index, up=True)
            self.cur = self._pod_link(self.if_name)
        self.cur_addrs = self._usable_addresses(self.cur)  # steps 1 and 5
        if not self.cur_addrs:
            raise CoordinatorError(f"{self.if_name} has no IPv4/IPv6 address; the main CNI must configure it first")
        self.versions = {ip.version for ip in self.cur_addrs}

        links = list_links(self.pod)
        up_links = sum(1 for link in links if link.flags & (IFF_UP | IFF_BROADCAST) == IFF_UP | IFF_BROADCAST)
        self.decision = resolve_mode(mode=config.mode, if_name=self.if_name, first_nic=config.pod_default_cni_nic,
                                     up_links=up_links, veth0_exists=any(lk.name == POD_VETH_NAME for lk in links))
        self.underlay = self.decision.mode == MODE_UNDERLAY
        self.first, self.table = self.decision.first_invoke, self.decision.table
        self.first_nic = next((lk for lk in links if lk.name == config.pod_default_cni_nic), None)
        self._pod_veth_before = next((lk for lk in links if lk.name == POD_VETH_NAME), None)
        self.src_v4 = self._first_v4(self.first_nic)
        log.debug("coordinator ADD %s: %s", self.if_name, self.decision)

        self.host_ips = self._host_ips()  # step 3
        self._veth()  # step 4
        if config.pod_mac_prefix:  # step 6
            self._rewrite_mac()
        if config.tx_queue_len > 0 and self.cur.txqlen != config.tx_queue_len:  # step 7 (in the pod: spec A7)
            self._set_link(self.cur, txqlen=config.tx_queue_len)
        if 6 in self.versions:  # step 8
            self._set_sysctl("net.ipv6.conf.all.disable_ipv6", 0)
        if config.pod_rp_filter != -1:  # step 9
            self._set_sysctl("net.ipv4.conf.all.rp_filter", config.pod_rp_filter)
        self._neighbours()  # step 10
        self._host_routes_in_pod()  # step 11
        self._host_side()  # step 12
        self._hijack_routes()  # step 13
        if self.underlay and self.first:  # step 14
            self._reply_via_veth()
        self._routes.clear()  # steps 15-16 move and delete routes: they dump afresh
        if config.tune_pod_routes and (not self.first or not self.underlay):  # step 15
            self._tune_routes()
        self._policy_routes()  # step 16

    def _host_ips(self) -> list[IPAddress]:
        pod_veth = self._pod_veth_before
        skip = {pod_veth.index} if pod_veth else set()
        sources: list[IPAddress] = []
        for address in self._pod_addresses():
            if address.index in skip or not is_usable(address.ip) or address.ip.version not in self.versions:
                continue
            source = route_source(self.host, address.ip)  # None: no route to it (unusual); the others count
            if source:
                sources.append(ipaddress.ip_address(source))
        host_addresses = [(name, ip) for name, _, ip in _host_addresses(self.host, self.host_netns_path,
                                                                         self.versions)]
        return select_host_ips(sources, host_addresses, self.versions)

    def _veth(self) -> None:
        if self.underlay and self.first:
            self._create_veth()
            return
        pod_veth = self._pod_link(POD_VETH_NAME if self.underlay else self.config.pod_default_cni_nic)
        host_veth = get_link(self.host, index=pod_veth.peer_index) if pod_veth.kind == "veth" else None
        if host_veth is None or host_veth.kind != "veth" or host_veth.peer_index != pod_veth.index:
            raise CoordinatorError(
                f"cannot find the host end of the pod's {pod_veth.name} (is it a veth whose peer is in the host "
                f"netns?)", details={"ifName": self.if_name, "podVeth": pod_veth.name})
        self.pod_veth, self.host_veth = pod_veth, host_veth

    def _create_veth(self) -> None:
        name = host_veth_name(self.container_id)
        pod_veth = self._pod_veth_before
        host_veth = get_link(self.host, name=name)
        paired = (pod_veth is not None and host_veth is not None and pod_veth.peer_index == host_veth.index
                  and host_veth.peer_index == pod_veth.index)
        if not paired:
            if pod_veth is not None:  # a leftover whose peer is not ours: rebuild the pair
                delete_link(self.pod, index=pod_veth.index)
            if host_veth is not None:
                delete_link(self.host, index=host_veth.index)
            netns_fd = os.open(self.netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                add_veth(self.host, name=name, mac=random_mac(), mtu=self.config.veth_mtu, peer_name=POD_VETH_NAME,
                         peer_mac=random_mac(), peer_netns_fd=netns_fd)
            finally:
                os.close(netns_fd)
            self.undo.callback(delete_link, self.host, name=name)
            host_veth = get_link(self.host, name=name)
            pod_veth = get_link(self.pod, name=POD_VETH_NAME)
            if host_veth is None or pod_veth is None:
                raise CoordinatorError(f"veth pair {name}/{POD_VETH_NAME} vanished right after creation")
        for ipr, link in ((self.host, host_veth), (self.pod, pod_veth)):
            if link.mtu != self.config.veth_mtu:
                set_link(ipr, link.index, mtu=self.config.veth_mtu)
            if not link.up:
                set_link(ipr, link.index, up=True)
        self.host_veth = get_link(self.host, index=host_veth.index)
        self.pod_veth = get_link(self.pod, index=pod_veth.index)
        link_address = self.config.veth_link_address
        if link_address and 4 in self.versions:
            current = {str(a.interface) for a in self._pod_addresses() if a.index == self.pod_veth.index}
            if f"{link_address}/32" not in current:
                add_address(self.pod, self.pod_veth.index, link_address, 32)
                self.undo.callback(delete_address, self.pod, self.pod_veth.index, link_address, 32)

    def _rewrite_mac(self) -> None:
        if self.cur.kind == "ipvlan":
            log.warning("podMACPrefix ignored for %s: ipvlan slaves share their parent's MAC", self.if_name)
            return
        source = next((ip for ip in self.cur_addrs if ip.version == 4), self.cur_addrs[0])
        mac = mac_with_prefix(self.config.pod_mac_prefix, source)
        if self.cur.mac == mac:
            return
        self._set_link(self.cur, mac=mac)
        self.cur = self._pod_link(self.if_name)
        try:
            detection.announce(netns_path=self.netns_path, if_name=self.if_name,
                               addresses=[str(ip) for ip in self.cur_addrs])
        except (DetectionError, OSError) as exc:  # neighbours re-learn on their own; not worth failing the pod
            log.warning("could not announce the new MAC of %s: %s", self.if_name, exc)

    def _neighbours(self) -> None:
        # Stale entries for the pod's address can only sit on the node's own NICs (a previous owner's veth took
        # its entries with it): delete them there by key, no dump of the node's per-pod neighbour table.
        node_nics = {index for _, index, _ in _host_addresses(self.host, self.host_netns_path, self.versions)}
        node_nics.discard(self.host_veth.index)
        for ip in self.cur_addrs:
            for index in node_nics:
                delete_neighbour(self.host, index, ip)
            replace_permanent_neighbour(self.host, self.undo, ifindex=self.host_veth.index, dst=ip,
                                        lladdr=self.pod_veth.mac)
        if self.first:
            for ip in self.host_ips:
                if ip.version not in self._known_neighbours:
                    self._known_neighbours[ip.version] = list_neighbours(self.pod, ip.version)
                ensure_permanent_neighbour(self.pod, self.undo, ifindex=self.pod_veth.index, dst=ip,
                                           lladdr=self.host_veth.mac, known=self._known_neighbours[ip.version])

    def _host_routes_in_pod(self) -> None:
        for ip in self.host_ips:
            route = Route(table=self.table, dst=max_prefix(ip), oif=self.pod_veth.index, scope=SCOPE_LINK,
                          prefsrc=self.src_v4 if ip.version == 4 else None)
            ensure_route(self.pod, self.undo, route, self._pod_routes(ip.version))
            if self.first:
                ensure_route(self.pod, self.undo, replace(route, table=MAIN_TABLE), self._pod_routes(ip.version))

    def _host_side(self) -> None:
        table = self.config.host_rule_table
        for version in sorted(self.versions):
            ensure_rule(self.host, None, Rule(version, table, HOST_RULE_PRIORITY))  # node-wide, never undone
        for ip in self.cur_addrs:
            # `replace` takes over a stale route to the same address (a previous owner's), without a dump.
            replace_route(self.host, self.undo, Route(table=table, dst=max_prefix(ip), oif=self.host_veth.index,
                                                      scope=SCOPE_LINK))

    def _hijack_routes(self) -> None:
        table = MAIN_TABLE if self.first else self.table
        for cidr in self.config.hijack_routes:
            gateway = self._host_ip(cidr.version)
            if gateway is None:
                log.info("hijack route %s skipped: no IPv%d host address", cidr, cidr.version)
                continue
            ensure_route(self.pod, self.undo, Route(
                table=table, dst=cidr, oif=self.pod_veth.index, gateway=str(gateway),
                prefsrc=self.src_v4 if cidr.version == 4 else None), self._pod_routes(cidr.version))

    def _reply_via_veth(self) -> None:
        for version in sorted(self.versions):
            gateway = self._host_ip(version)
            if gateway is None:
                continue
            _ensure_iptables_rules(self.netns_path, version, _REPLY_IPTABLES_RULES, self.undo)
            ensure_rule(self.pod, self.undo, Rule(version, REPLY_TABLE, REPLY_RULE_PRIORITY, fwmark=REPLY_MARK))
            default = ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")
            ensure_route(self.pod, self.undo, Route(table=REPLY_TABLE, dst=default, oif=self.pod_veth.index,
                                                    gateway=str(gateway)), self._pod_routes(version))

    def _default_route_link(self) -> Link | None:
        """The NIC (other than ``cur``) holding a default route in ``main``, IPv4 looked at first."""
        for version in sorted(self.versions):
            for route in list_routes(self.pod, version, MAIN_TABLE):
                if not route.is_default:
                    continue
                for oif in [route.oif] if route.oif else [oif for oif, _ in route.multipath]:
                    if oif and oif != self.cur.index:
                        return get_link(self.pod, index=oif)
        return None

    def _from_rules(self, link: Link, table: int) -> None:
        for ip in self._usable_addresses(link):
            if ip.version in self.versions:
                ensure_rule(self.pod, self.undo, Rule(ip.version, table, src=max_prefix(ip)))

    def _move_routes(self, link: Link, table: int, *, copy_only: bool = False) -> None:
        """Copy ``link``'s ``main`` routes into ``table``; default routes are moved (removed from ``main``)."""
        link_local = ipaddress.ip_network("fe80::/64")
        for version in sorted(self.versions):
            for route in list_routes(self.pod, version, MAIN_TABLE):
                if not route.uses(link.index) or route.dst == link_local:
                    continue
                if route.multipath:  # IPv6 ECMP default: keep only this link's nexthops (spec: "split")
                    mine = tuple(hop for hop in route.multipath if hop[0] == link.index)
                    others = tuple(hop for hop in route.multipath if hop[0] != link.index)
                    single = {"oif": mine[0][0], "gateway": mine[0][1], "multipath": ()} if len(mine) == 1 else {
                        "oif": None, "gateway": None, "multipath": mine}
                    ensure_route(self.pod, self.undo, replace(route, table=table, **single))
                    if route.is_default and not copy_only:
                        self._remove_nexthops(route, mine, others)
                    continue
                ensure_route(self.pod, self.undo, replace(route, table=table))
                if route.is_default and not copy_only:
                    delete_route(self.pod, route)
                    self.undo.callback(add_route, self.pod, route, append=True)

    def _remove_nexthops(self, route: Route, mine: tuple, others: tuple) -> None:
        if not others:
            delete_route(self.pod, route)
            self.undo.callback(add_route, self.pod, route)
            return
        if route.version == 6:  # IPv6 deletes single nexthops of an ECMP route
            for oif, gateway in mine:
                hop = replace(route, oif=oif, gateway=gateway, multipath=())
                delete_route(self.pod, hop)
                self.undo.callback(add_route, self.pod, hop, append=True)
            return
        remaining = replace(route, multipath=others) if len(others) > 1 else replace(
            route, oif=others[0][0], gateway=others[0][1], multipath=())
        add_route(self.pod, remaining)
        self.undo.callback(add_route, self.pod, route)

    def _tune_routes(self) -> None:
        default_link = self._default_route_link()
        if default_link is None:
            log.info("no other NIC holds a default route; route tuning skipped for %s", self.if_name)
            return
        wanted = self.config.pod_default_route_nic
        if wanted and wanted != default_link.name:
            if get_link(self.pod, name=wanted) is None:
                raise CoordinatorError(f"podDefaultRouteNIC {wanted} does not exist in the pod",
                                       details={"podDefaultRouteNIC": wanted})
            if wanted == self.if_name:  # cur takes the default route: the old default NIC goes to cur's table
                self._from_rules(default_link, self.table)
                self._move_routes(default_link, self.table)
                return
        self._from_rules(self.cur, self.table)
        self._move_routes(self.cur, self.table)
        if not self.underlay and self.first and self.first_nic is not None:
            self._from_rules(self.first_nic, REPLY_TABLE)
            for version in sorted(self.versions):
                for route in list_routes(self.pod, version, MAIN_TABLE):
                    if route.is_default and route.uses(self.first_nic.index):
                        ensure_route(self.pod, self.undo, replace(route, table=REPLY_TABLE))

    def _policy_routes(self) -> None:
        table = MAIN_TABLE if self.underlay and self.first else self.table
        for policy in self.config.policy_routes:
            if policy.version in self.versions:
                ensure_route(self.pod, self.undo, Route(table=table, dst=policy.dst, oif=self.cur.index,
                                                        gateway=str(policy.gw)))


_HOST_ADDRESS_TTL = 10.0
_host_address_cache: dict[tuple[str | None, frozenset[int]], tuple[float, list]] = {}
_host_address_refresh = threading.Lock()


def _host_addresses(host: Rtnl, host_netns_path: str | None,
                    versions: set[int]) -> list[tuple[str, int, IPAddress]]:
    """The node's usable (interface name, index, address) triples of ``versions``, without host veths; cached 10 s.

    Host addresses change rarely, while a node holds a host veth per pod: a dump of its links (thousands of fully
    decoded messages) cost more than the rest of an ADD, and when the cache expired every concurrent ADD made
    its own. So: only the families asked for are dumped (the kernel filters by family, and host veths carry no
    IPv4 address), only usable addresses are kept (not loopback, not IPv6 link-local, which every veth has), names
    are looked up for the few interfaces that hold those, and one thread refreshes the cache while the others use
    the previous value. A new node address is picked up within the TTL.
    """
    key = (host_netns_path, frozenset(versions))
    cached = _host_address_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < _HOST_ADDRESS_TTL:
        return cached[1]
    if not _host_address_refresh.acquire(blocking=cached is None):
        return cached[1]  # another ADD is refreshing it
    try:
        cached = _host_address_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < _HOST_ADDRESS_TTL:
            return cached[1]
        usable = [a for version in sorted(versions) for a in list_addresses(host, family=FAMILY[version])
                  if is_usable(a.ip)]
        names = {}
        for index in {a.index for a in usable}:
            link = get_link(host, index=index)
            names[index] = link.name if link is not None else ""
        value = [(names[a.index], a.index, a.ip) for a in usable if not names[a.index].startswith("veth")]
        _host_address_cache[key] = (time.monotonic(), value)
        return value
    finally:
        _host_address_refresh.release()


def _require_netns(netns_path: str) -> None:
    if not netns_path or not os.path.exists(netns_path):
        raise CoordinatorError(f"network namespace {netns_path!r} does not exist", details={"netns": netns_path})


def coordinator_add(*, netns_path: str, if_name: str, container_id: str, config: CoordinatorConfig,
                    prev_result: dict, host_netns_path: str | None = None) -> dict:
    """Run coordinator ADD for NIC ``if_name`` of the pod at ``netns_path``; return the CNI result to print.

    ``host_netns_path`` is the namespace playing "the node" (``None`` = the agent's own, which is the node's when
    the agent runs with hostNetwork); tests pass a namespace of their own. On any failure everything this call
    changed is undone and :class:`CoordinatorError` is raised.
    """
    result = copy.deepcopy(prev_result)
    if config.mode == MODE_DISABLE:
        return result
    _require_netns(netns_path)
    try:
        with iproute(netns_path) as pod, iproute(host_netns_path) as host, ExitStack() as undo:
            _Add(pod=pod, host=host, undo=undo, netns_path=netns_path, if_name=if_name,
                 container_id=container_id, config=config, host_netns_path=host_netns_path).run()
            undo.pop_all()
    except (NetlinkError, OSError) as exc:
        raise CoordinatorError(f"coordinator ADD for {if_name} failed: {exc}", details={"ifName": if_name}) from exc
    return result


# --- DEL / CHECK -----------------------------------------------------------------------------------------


def coordinator_del(*, netns_path: str, if_name: str, container_id: str, config: CoordinatorConfig,
                    host_netns_path: str | None = None) -> None:
    """Run coordinator DEL (spec §8.4); succeeds when the netns, veth, routes or rules are already gone.

    Removes the host veth ``veth<cid[:11]>`` (its ``hostRuleTable`` routes and neighbour entries go with it),
    then, when the pod netns is still readable, the ``hostRuleTable`` routes, host neighbour entries and legacy
    ``to <addr> lookup <hostRuleTable>`` rules of ``if_name``'s addresses that point at the pod's host veth (in
    overlay mode the peer of the pod's first NIC). Pod-side state disappears with the netns.
    """
    if config.mode == MODE_DISABLE:
        return
    pod_addrs: list[IPAddress] = []
    peer_indexes: set[int] = set()
    if netns_path and os.path.exists(netns_path):
        try:
            with iproute(netns_path) as pod:
                cur = get_link(pod, name=if_name)
                if cur is not None:
                    pod_addrs = [a.ip for a in list_addresses(pod, cur.index) if is_usable(a.ip)]
                for name in (POD_VETH_NAME, config.pod_default_cni_nic):
                    link = get_link(pod, name=name)
                    if link is not None and link.kind == "veth" and link.peer_index:
                        peer_indexes.add(link.peer_index)
        except OSError:  # removed since the check, or a stale mount point (EINVAL): nothing left to read
            log.info("pod netns %s is not readable any more; cleaning the host side only", netns_path)
    try:
        with iproute(host_netns_path) as host:
            host_veth = get_link(host, name=host_veth_name(container_id))
            candidates = {index for index in peer_indexes if (lk := get_link(host, index=index)) and lk.kind == "veth"}
            if host_veth is not None:
                candidates.add(host_veth.index)
            table = config.host_rule_table
            for ip in pod_addrs:
                dst = max_prefix(ip)
                for index in candidates:  # by key, no dump of the node's per-pod tables
                    delete_route(host, Route(table=table, dst=dst, oif=index, scope=SCOPE_LINK))
                    delete_neighbour(host, index, ip)
                for rule in list_rules(host, ip.version):
                    if rule.table == table and rule.dst == dst and rule.src is None:
                        delete_rule(host, rule)
            if host_veth is not None:
                delete_link(host, index=host_veth.index)
    except NetlinkError as exc:
        raise CoordinatorError(f"coordinator DEL for {if_name} failed: {exc}", details={"ifName": if_name}) from exc


def coordinator_check(*, netns_path: str, if_name: str, container_id: str, config: CoordinatorConfig,
                      host_netns_path: str | None = None) -> None:
    """Light CHECK: the NIC exists and, for an underlay pod, the ``veth0`` pair is intact.

    Upstream's CHECK is a no-op; this catches the one breakage that silently cuts a pod off from its node (a
    deleted host veth) without re-deriving every route. Raises :class:`CoordinatorError` on a mismatch.
    """
    if config.mode == MODE_DISABLE:
        return
    _require_netns(netns_path)
    with iproute(netns_path) as pod, iproute(host_netns_path) as host:
        if get_link(pod, name=if_name) is None:
            raise CoordinatorError(f"interface {if_name} is missing from the pod", details={"ifName": if_name})
        pod_veth = get_link(pod, name=POD_VETH_NAME)
        underlay = config.mode == MODE_UNDERLAY or (
            config.mode == MODE_AUTO and (if_name == config.pod_default_cni_nic or pod_veth is not None))
        if not underlay:
            return
        if pod_veth is None:
            raise CoordinatorError(f"{POD_VETH_NAME} is missing from the pod", details={"ifName": if_name})
        host_veth = get_link(host, index=pod_veth.peer_index)
        if host_veth is None or host_veth.peer_index != pod_veth.index:
            raise CoordinatorError(f"the host end of {POD_VETH_NAME} ({host_veth_name(container_id)}) is missing",
                                   details={"ifName": if_name})
