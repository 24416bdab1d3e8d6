"""The ``spiderpool`` IPAM plugin: asks the node agent for addresses and prints them as a CNI IPAM result.

Used as ``"ipam": {"type": "spiderpool", ...}`` inside a main plugin (macvlan, ipvlan, sriov, ...). All
decisions (pool selection, fixed IPs, conflict detection) live in the agent; this executable only validates
its input, calls the agent's unix socket (spec §11.2) and translates answers into CNI terms.
"""

from __future__ import annotations

import sys

from cni import addresses, config_values, errors, logs
from cni.agent_client import DEFAULT_SOCKET_PATH, AgentClient, require_available
from cni.dispatch import main
from cni.invocation import Invocation
from cni.record import Record
from cni.results import convert_result
from cni.versions import version_info

if False:  # annotations only (postponed): collections.abc would add ~1 ms to every call's start-up
    from collections.abc import Mapping

PLUGIN = "spiderpool"
_WHERE = "ipam."

log = logs.Logger("cni.spiderpool")


class IpamConfig(Record):
    """The ``ipam`` section (spec §11.1), read once and validated."""

    __slots__ = ("default_ipv4_ippool", "default_ipv6_ippool", "clean_gateway", "match_master_subnet",
                 "ipam_unix_socket_path", "log")
    _defaults = {"default_ipv4_ippool": (), "default_ipv6_ippool": (), "clean_gateway": False,
                 "match_master_subnet": False, "ipam_unix_socket_path": DEFAULT_SOCKET_PATH,
                 "log": config_values.LogSettings()}


def ipam_config(config: Mapping[str, object]) -> IpamConfig:
    """Read and validate the ``ipam`` section (code 7 on any bad key)."""
    ipam = config_values.section(config, "ipam", required=True)
    kind = config_values.read_str(ipam, "type", "", _WHERE)
    if not kind:
        raise config_values.invalid("ipam.type", "is required")
    return IpamConfig(
        default_ipv4_ippool=config_values.read_str_list(ipam, "default_ipv4_ippool", _WHERE),
        default_ipv6_ippool=config_values.read_str_list(ipam, "default_ipv6_ippool", _WHERE),
        clean_gateway=config_values.read_bool(ipam, "clean_gateway", False, _WHERE),
        match_master_subnet=config_values.read_bool(ipam, "match_master_subnet", False, _WHERE),
        ipam_unix_socket_path=config_values.read_socket_path(
            ipam, "ipam_unix_socket_path", DEFAULT_SOCKET_PATH, _WHERE
        ),
        log=config_values.LogSettings(
            path=config_values.read_log_path(ipam, "log_file_path", _WHERE),
            level=config_values.read_log_level(ipam, "log_level", _WHERE),
            max_size_mb=config_values.read_int(ipam, "log_file_max_size", 100, _WHERE, low=0, high=1 << 20),
            max_count=config_values.read_int(ipam, "log_file_max_count", 10, _WHERE, low=0, high=1000),
        ),
    )


def log_settings(config: Mapping[str, object]) -> config_values.LogSettings:
    """The dispatcher's hook: validate the whole ``ipam`` section up front and return its log settings.

    ``log_file_max_age`` is validated for compatibility with Spiderpool configs but not enforced: the stdlib
    rotating handler rotates by size only.
    """
    settings = ipam_config(config).log
    config_values.read_int(
        config_values.section(config, "ipam", required=True), "log_file_max_age", 30, _WHERE, low=0, high=1 << 20
    )
    return settings


def cmd_add(invocation: Invocation) -> dict:
    """Allocate through the agent and print the addresses and routes of CNI_IFNAME only."""
    conf = ipam_config(invocation.config)
    invocation.pod.require_identity()
    invocation.require_netns()
    client = _client(conf)
    _require_healthy(client)
    answer = client.call(
        "POST",
        "/v1/ipam/ip",
        {
            "containerID": invocation.container_id,
            "ifName": invocation.ifname,
            "netNamespace": invocation.netns,
            "podNamespace": invocation.pod.namespace,
            "podName": invocation.pod.name,
            "podUID": invocation.pod.uid,
            "defaultIPv4IPPool": list(conf.default_ipv4_ippool),
            "defaultIPv6IPPool": list(conf.default_ipv6_ippool),
            "cleanGateway": conf.clean_gateway,
            "matchMasterSubnet": conf.match_master_subnet,
            "network": str(invocation.config.get("name") or ""),
        },
    )
    return convert_result(result_from_allocation(answer, invocation.ifname), invocation.cni_version)


def cmd_del(invocation: Invocation) -> None:
    """Release through the agent. Gone is success; an unreachable or unavailable agent fails so the runtime retries.

    Other agent errors are permanent for this call (retrying cannot fix them) and would make the runtime retry
    the DEL forever, so they are logged and DEL succeeds, as in Spiderpool; the agent's GC releases the rest.
    """
    conf = ipam_config(invocation.config)
    invocation.pod.require_identity()
    try:
        _client(conf).call(
            "DELETE",
            "/v1/ipam/ip",
            {
                "containerID": invocation.container_id,
                "ifName": invocation.ifname,
                "netNamespace": invocation.netns,
                "podNamespace": invocation.pod.namespace,
                "podName": invocation.pod.name,
                "podUID": invocation.pod.uid,
            },
        )
    except errors.AgentError as exc:
        if exc.is_transient:
            raise
        if exc.is_gone:
            log.info(
                "DEL: the agent has no allocation for %s/%s %s: nothing to release",
                invocation.pod.namespace,
                invocation.pod.name,
                invocation.ifname,
            )
        else:
            log.warning(
                "DEL: the agent refused the release (%s, HTTP %s): %s; leaving it to GC",
                exc.code,
                exc.status,
                exc.message,
            )
    except errors.AgentBadResponse as exc:
        log.warning("DEL: the agent answered badly (%s); treating the release as done", exc)
    return None


def cmd_check(invocation: Invocation) -> None:
    """Spiderpool's CHECK is a no-op; the config is still validated so a broken config is reported."""
    ipam_config(invocation.config)
    return None


def cmd_status(invocation: Invocation) -> None:
    """CNI 1.1 STATUS: ready when the agent answers its health check, else code 50."""
    conf = ipam_config(invocation.config)
    require_available(_client(conf))
    return None


def cmd_gc(invocation: Invocation) -> None:
    """CNI 1.1 GC: hand the runtime's list of valid attachments to the agent, which releases the others."""
    conf = ipam_config(invocation.config)
    attachments = valid_attachments(invocation.config)
    body = {"validAttachments": attachments, "network": str(invocation.config.get("name") or "")}
    answer = _client(conf).call("POST", "/v1/ipam/gc", body)
    log.info("GC: agent answered %s", answer)
    return None


def cmd_version(invocation: Invocation) -> dict:
    """The supported spec versions."""
    return version_info(invocation.cni_version)


HANDLERS = {
    "ADD": cmd_add,
    "DEL": cmd_del,
    "CHECK": cmd_check,
    "STATUS": cmd_status,
    "GC": cmd_gc,
    "VERSION": cmd_version,
}


def run() -> int:
    """Entry point of the packaged ``spiderpool`` executable."""
    return main(HANDLERS, plugin=PLUGIN, log_settings=log_settings)


def result_from_allocation(answer: object, ifname: str) -> dict:
    """Build the IPAM result for ``ifname`` from an ``IpamAddResponse`` (which lists every NIC of the pod).

    ``ips`` keeps the entries whose ``nic`` is ``ifname`` (address in CIDR form, gateway when set), ``routes``
    the entries whose ``ifName`` is ``ifname``; no ``interfaces`` section, as an IPAM plugin does not create
    interfaces. An answer without an address for ``ifname`` is an error: the main plugin would otherwise bring
    up a NIC with no address.

    >>> result_from_allocation({"ips": [{"version": 4, "address": "10.6.0.9/16", "nic": "eth0",
    ...     "gateway": "10.6.0.1"}, {"version": 4, "address": "10.7.0.9/16", "nic": "net1"}],
    ...     "routes": [{"ifName": "eth0", "dst": "10.9.0.0/16", "gw": "10.6.0.254"}]}, "eth0")
    {'ips': [{'address': '10.6.0.9/16', 'gateway': '10.6.0.1'}], 'routes': [{'dst': '10.9.0.0/16', 'gw': '10.6.0.254'}]}
    """
    if not isinstance(answer, dict) or not isinstance(answer.get("ips"), list):
        raise errors.AgentBadResponse("IpamAddResponse without an 'ips' array")
    ips = []
    for index, entry in enumerate(answer["ips"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("nic"), str):
            raise errors.AgentBadResponse(f"IpamAddResponse ips[{index}] lacks 'nic'")
        if entry["nic"] == ifname:
            ips.append(_ip_config(entry, index))
    if not ips:
        raise errors.CNIError(
            errors.NO_ADDRESS_FOR_INTERFACE,
            f"spiderpool-agent allocated no IP address for interface {ifname}",
            f"allocated NICs: {sorted({e.get('nic') for e in answer['ips'] if isinstance(e, dict)}, key=str)}",
        )
    result: dict = {"ips": ips}
    routes = answer.get("routes") or []
    if not isinstance(routes, list):
        raise errors.AgentBadResponse("IpamAddResponse 'routes' is not an array")
    picked = [_route(route, index) for index, route in enumerate(routes) if _route_nic(route, index) == ifname]
    if picked:
        result["routes"] = picked
    dns = _dns(answer.get("dns"))
    if dns:
        result["dns"] = dns
    return result


def valid_attachments(config: Mapping[str, object]) -> list:
    """``cni.dev/valid-attachments`` of a GC call, validated (code 7).

    A GC without the list would tell the agent that *nothing* is valid and release every allocation of the
    node, so a missing list is refused rather than read as empty.
    """
    value = config.get("cni.dev/valid-attachments")
    if not isinstance(value, list):
        raise config_values.invalid(
            "cni.dev/valid-attachments", "must be an array (the runtime's live attachments)", value
        )
    attachments = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise config_values.invalid(f"cni.dev/valid-attachments[{index}]", "must be an object", item)
        container_id, ifname = item.get("containerID"), item.get("ifname")
        if not isinstance(container_id, str) or not container_id or not isinstance(ifname, str) or not ifname:
            raise config_values.invalid(f"cni.dev/valid-attachments[{index}]", "needs containerID and ifname", item)
        attachments.append({"containerID": container_id, "ifname": ifname})
    return attachments


def _client(conf: IpamConfig) -> AgentClient:
    return AgentClient(conf.ipam_unix_socket_path, user_agent=f"spiderweb-cni/{PLUGIN}")


def _require_healthy(client: AgentClient) -> None:
    """ADD's first step (spec §11.2): an unhealthy agent is "try again later", not an allocation failure."""
    try:
        client.healthy()
    except (errors.AgentError, errors.AgentBadResponse) as exc:
        raise errors.CNIError(errors.TRY_AGAIN_LATER, f"unhealthy spiderpool-agent backend: {exc}") from exc


def _ip_config(entry: dict, index: int) -> dict:
    address, version = entry.get("address"), entry.get("version")
    try:
        family = addresses.cidr_version(address)
    except ValueError:
        raise errors.AgentBadResponse(f"IpamAddResponse ips[{index}].address {address!r} is not in CIDR form") from None
    if version not in (None, 4, 6, "4", "6") or (version is not None and int(version) != family):
        raise errors.AgentBadResponse(f"IpamAddResponse ips[{index}].version {version!r} does not match {address}")
    config = {"address": address}
    gateway = entry.get("gateway")
    if gateway:
        try:
            if not isinstance(gateway, str) or addresses.ip_version(gateway) != family:
                raise ValueError(gateway)
        except ValueError as exc:
            raise errors.AgentBadResponse(f"IpamAddResponse ips[{index}].gateway {gateway!r} is not valid") from exc
        config["gateway"] = gateway
    return config


def _route_nic(route: object, index: int) -> object:
    if not isinstance(route, dict):
        raise errors.AgentBadResponse(f"IpamAddResponse routes[{index}] is not an object")
    return route.get("ifName")


def _route(route: dict, index: int) -> dict:
    dst, gw = route.get("dst"), route.get("gw")
    try:
        network = addresses.network(dst)
        same_family = addresses.cidr_version(dst) == addresses.ip_version(gw)
    except ValueError:
        same_family = False
    if not same_family:
        raise errors.AgentBadResponse(f"IpamAddResponse routes[{index}] needs dst (CIDR) and gw of one family")
    return {"dst": network, "gw": gw}


def _dns(dns: object) -> dict:
    if not isinstance(dns, dict):
        return {}
    picked = {}
    for key in ("nameservers", "domain", "search", "options"):
        value = dns.get(key)
        if value:
            picked[key] = value
    return picked


if __name__ == "__main__":
    sys.exit(run())
