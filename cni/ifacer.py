"""The ``ifacer`` meta-plugin: makes sure the VLAN/bond parent device of the main plugin exists on the host.

Placed first in a conflist (spec §9). The agent creates the devices; this shim validates the config locally so a
typo is reported with a clear message before anything is touched, posts it to the agent, and prints an empty
result (or passes a prevResult through). DEL and CHECK do nothing: devices are shared by pods and never removed.
"""

from __future__ import annotations

import sys

from cni import config_values, errors, logs
from cni.agent_client import DEFAULT_SOCKET_PATH, AgentClient, require_available
from cni.dispatch import main
from cni.invocation import Invocation, validate_interface_name
from cni.record import Record
from cni.results import empty_result
from cni.versions import version_info

if False:  # annotations only (postponed): collections.abc would add ~1 ms to every call's start-up
    from collections.abc import Mapping

PLUGIN = "ifacer"
DEFAULT_BOND_NAME = "sp_bond0"
MAX_VLAN_ID = 4094
MAX_BOND_MODE = 6

log = logs.Logger("cni.ifacer")


class BondConfig(Record):
    """``bond``: ``mode`` 0..6 (balance-rr .. balance-alb), ``options`` as ``k1=v1;k2=v2``."""

    __slots__ = ("name", "mode", "options")
    _defaults = {"name": DEFAULT_BOND_NAME, "mode": 0, "options": ""}


class IfacerConfig(Record):
    """The validated ifacer entry (``interfaces`` is a tuple of names)."""

    __slots__ = ("interfaces", "vlan_id", "bond", "unix_socket_path", "log")
    _defaults = {"vlan_id": 0, "bond": None, "unix_socket_path": DEFAULT_SOCKET_PATH,
                 "log": config_values.LogSettings()}

    @property
    def vlan_parent(self) -> str | None:
        """The device the VLAN sub-interface hangs off, or ``None`` when there is no VLAN to create."""
        if self.vlan_id == 0:
            return None
        if len(self.interfaces) == 1:
            return self.interfaces[0]
        return self.bond.name if self.bond is not None else None


def ifacer_config(config: Mapping[str, object]) -> IfacerConfig:
    """Validate ``interfaces``, ``vlanID`` and ``bond`` (code 7 with the key named)."""
    interfaces = config.get("interfaces")
    if not isinstance(interfaces, list) or not interfaces:
        raise config_values.invalid("interfaces", "must list at least one host interface", interfaces)
    for index, name in enumerate(interfaces):
        if not isinstance(name, str):
            raise config_values.invalid(f"interfaces[{index}]", "must be an interface name", name)
        validate_interface_name(name, errors.INVALID_NETWORK_CONFIG, f"invalid network config: interfaces[{index}]")
    if len(set(interfaces)) != len(interfaces):
        raise config_values.invalid("interfaces", "lists an interface twice", interfaces)
    vlan_id = config_values.read_int(config, "vlanID", 0, "", low=0, high=MAX_VLAN_ID)
    bond = None
    if config.get("bond") is not None:
        raw = config_values.section(config, "bond", required=True)
        bond = BondConfig(
            name=config_values.read_str(raw, "name", "", "bond.") or DEFAULT_BOND_NAME,
            mode=config_values.read_int(raw, "mode", 0, "bond.", low=0, high=MAX_BOND_MODE),
            options=config_values.read_str(raw, "options", "", "bond."),
        )
        validate_interface_name(bond.name, errors.INVALID_NETWORK_CONFIG, "invalid network config: bond.name")
        if bond.name in interfaces:
            raise config_values.invalid("bond.name", "must differ from the enslaved interfaces", bond.name)
    options = config_values.section(config, "logOptions", required=False)
    conf = IfacerConfig(
        interfaces=tuple(interfaces),
        vlan_id=vlan_id,
        bond=bond,
        unix_socket_path=config_values.read_socket_path(config, "unix_socket_path", DEFAULT_SOCKET_PATH, ""),
        log=config_values.LogSettings(
            path=config_values.read_log_path(options, "logFile", "logOptions."),
            level=config_values.read_log_level(options, "logLevel", "logOptions."),
            max_size_mb=config_values.read_int(options, "logMaxSize", 100, "logOptions.", low=0, high=1 << 20),
            max_count=config_values.read_int(options, "logMaxCount", 10, "logOptions.", low=0, high=1000),
        ),
    )
    parent = conf.vlan_parent
    if parent is not None:
        validate_interface_name(
            f"{parent}.{vlan_id}",
            errors.INVALID_NETWORK_CONFIG,
            f"invalid network config: VLAN interface {parent}.{vlan_id}",
        )
    return conf


def log_settings(config: Mapping[str, object]) -> config_values.LogSettings:
    """The dispatcher's hook. DEL must not fail on an entry that no longer validates, so only log keys count."""
    options = config_values.section(config, "logOptions", required=False)
    return config_values.LogSettings(
        path=config_values.read_log_path(options, "logFile", "logOptions."),
        level=config_values.read_log_level(options, "logLevel", "logOptions."),
    )


def cmd_add(invocation: Invocation) -> dict:
    """Validate, ask the agent to ensure the devices, print an empty result (or the prevResult)."""
    conf = ifacer_config(invocation.config)
    prev = invocation.validated_prev_result()
    answer = AgentClient(conf.unix_socket_path, user_agent=f"spiderweb-cni/{PLUGIN}").call(
        "POST", "/v1/ifacer/add", {"config": invocation.config}
    )
    log.info("ADD: agent answered %s", answer)
    return prev if prev is not None else empty_result(invocation.cni_version)


def cmd_del(invocation: Invocation) -> None:
    """No-op: the devices are shared by every pod on the network and outlive any one of them."""
    return None


def cmd_check(invocation: Invocation) -> None:
    """No-op apart from validating the entry, so a broken config shows up in CHECK."""
    ifacer_config(invocation.config)
    return None


def cmd_status(invocation: Invocation) -> None:
    """Ready when the agent, which creates the devices, answers its health check (code 50 otherwise)."""
    conf = ifacer_config(invocation.config)
    require_available(AgentClient(conf.unix_socket_path, user_agent=f"spiderweb-cni/{PLUGIN}"))
    return None


def cmd_gc(invocation: Invocation) -> None:
    """Nothing is held per attachment, so nothing to collect."""
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
    """Entry point of the packaged ``ifacer`` executable."""
    return main(HANDLERS, plugin=PLUGIN, log_settings=log_settings)


if __name__ == "__main__":
    sys.exit(run())
