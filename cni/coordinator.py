"""The ``coordinator`` meta-plugin: a thin shim that hands the chained call to the agent, which does the netlink work.

Chained after the main plugin (spec §8). The agent owns mode resolution, routes, rules and the veth pair; this
executable validates the call, short-circuits ``mode: disable``/``disabled`` (Appendix A6: accept both) without
touching the agent, and prints the result the agent returns in the runtime's CNI version.
"""

from __future__ import annotations

import sys

from cni import config_values, errors, logs
from cni.agent_client import DEFAULT_SOCKET_PATH, AgentClient, require_available
from cni.dispatch import main
from cni.invocation import Invocation, path_exists
from cni.record import Record
from cni.results import convert_result, empty_result
from cni.versions import version_info

if False:  # annotations only (postponed): collections.abc would add ~1 ms to every call's start-up
    from collections.abc import Mapping

PLUGIN = "coordinator"
MODES = ("auto", "underlay", "overlay", "disable", "disabled")
DISABLED_MODES = ("disable", "disabled")

log = logs.Logger("cni.coordinator")


class CoordinatorConfig(Record):
    """What the shim itself reads from its conflist entry; every other key is the agent's to interpret."""

    __slots__ = ("mode", "unix_socket_path", "log")
    _defaults = {"mode": "", "unix_socket_path": DEFAULT_SOCKET_PATH, "log": config_values.LogSettings()}

    @property
    def disabled(self) -> bool:
        """``disable`` (the plugin's spelling) and ``disabled`` (the CRD enum's) both switch coordinator off."""
        return self.mode in DISABLED_MODES


def coordinator_config(config: Mapping[str, object]) -> CoordinatorConfig:
    """Read ``mode``, ``unix_socket_path`` and ``logOptions`` (code 7 on a bad value)."""
    mode = config_values.read_str(config, "mode", "", "")
    if mode and mode not in MODES:
        raise config_values.invalid("mode", f"must be one of {list(MODES)}", mode)
    options = config_values.section(config, "logOptions", required=False)
    return CoordinatorConfig(
        mode=mode,
        unix_socket_path=config_values.read_socket_path(config, "unix_socket_path", DEFAULT_SOCKET_PATH, ""),
        log=_log_options(options),
    )


def log_settings(config: Mapping[str, object]) -> config_values.LogSettings:
    """The dispatcher's hook: validate the entry up front and return its log settings."""
    return coordinator_config(config).log


def cmd_add(invocation: Invocation) -> dict:
    """Post the chained ADD to the agent and print the result it returns."""
    conf = coordinator_config(invocation.config)
    prev = invocation.validated_prev_result()
    if conf.disabled:
        log.info("ADD: mode %s, passing prevResult through", conf.mode)
        return prev if prev is not None else empty_result(invocation.cni_version)
    if prev is None:
        raise errors.CNIError(
            errors.INVALID_NETWORK_CONFIG,
            "coordinator needs a prevResult: chain it after the main plugin in the conflist",
        )
    invocation.pod.require_identity()
    invocation.require_netns()
    answer = _client(conf).call("POST", "/v1/coordinator/add", _body(invocation, prev))
    if not isinstance(answer, dict) or not isinstance(answer.get("result"), dict):
        raise errors.AgentBadResponse("/v1/coordinator/add answer has no 'result' object")
    return convert_result(answer["result"], invocation.cni_version)


def cmd_del(invocation: Invocation) -> None:
    """Post the DEL to the agent; nothing to do when disabled or when the pod's netns is already gone.

    An unreachable or unavailable agent fails the DEL so the runtime retries; other agent errors cannot be fixed
    by a retry and are logged (host-side leftovers are harmless and cleaned by the next ADD of that address).
    """
    conf = coordinator_config(invocation.config)
    if conf.disabled:
        return None
    if not path_exists(invocation.netns):
        log.info("DEL: netns %r no longer exists, nothing to undo", invocation.netns)
        return None
    invocation.pod.require_identity()
    try:
        _client(conf).call("POST", "/v1/coordinator/del", _body(invocation, _tolerant_prev_result(invocation)))
    except errors.AgentError as exc:
        if exc.is_transient:
            raise
        log.warning("DEL: agent answered %s (HTTP %s): %s; nothing more to do", exc.code, exc.status, exc.message)
    except errors.AgentBadResponse as exc:
        log.warning("DEL: the agent answered badly (%s); treating the DEL as done", exc)
    return None


def cmd_check(invocation: Invocation) -> None:
    """Ask the agent to verify what ADD set up (routes, rules, veth)."""
    conf = coordinator_config(invocation.config)
    prev = invocation.validated_prev_result()
    if conf.disabled:
        return None
    invocation.pod.require_identity()
    invocation.require_netns()
    _client(conf).call("POST", "/v1/coordinator/check", _body(invocation, prev))
    return None


def cmd_status(invocation: Invocation) -> None:
    """Ready when the agent answers its health check (code 50 otherwise); always ready when disabled."""
    conf = coordinator_config(invocation.config)
    if not conf.disabled:
        require_available(_client(conf))
    return None


def cmd_gc(invocation: Invocation) -> None:
    """Nothing to collect here: pod-side state dies with the netns and the agent tidies host-side leftovers."""
    coordinator_config(invocation.config)
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
    """Entry point of the packaged ``coordinator`` executable."""
    return main(HANDLERS, plugin=PLUGIN, log_settings=log_settings)


def _body(invocation: Invocation, prev: dict | None) -> dict:
    """The agent's coordinator request: the whole conflist entry plus the call's facts."""
    body = {
        "containerID": invocation.container_id,
        "netNamespace": invocation.netns,
        "ifName": invocation.ifname,
        "podNamespace": invocation.pod.namespace,
        "podName": invocation.pod.name,
        "podUID": invocation.pod.uid,
        "cniVersion": invocation.cni_version,
        "config": invocation.config,
    }
    if prev is not None:
        body["prevResult"] = prev
    return body


def _tolerant_prev_result(invocation: Invocation) -> dict | None:
    """DEL's prevResult is optional; a malformed one is dropped rather than failing a DEL forever."""
    try:
        return invocation.validated_prev_result()
    except errors.CNIError as exc:
        log.warning("DEL: ignoring %s", exc.msg)
        return None


def _log_options(options: Mapping[str, object]) -> config_values.LogSettings:
    where = "logOptions."
    config_values.read_int(options, "logMaxAge", 30, where, low=0, high=1 << 20)
    return config_values.LogSettings(
        path=config_values.read_log_path(options, "logFile", where),
        level=config_values.read_log_level(options, "logLevel", where),
        max_size_mb=config_values.read_int(options, "logMaxSize", 100, where, low=0, high=1 << 20),
        max_count=config_values.read_int(options, "logMaxCount", 10, where, low=0, high=1000),
    )


def _client(conf: CoordinatorConfig) -> AgentClient:
    return AgentClient(conf.unix_socket_path, user_agent=f"spiderweb-cni/{PLUGIN}")


if __name__ == "__main__":
    sys.exit(run())
