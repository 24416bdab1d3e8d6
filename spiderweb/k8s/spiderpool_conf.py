"""Spiderpool's ``spiderpool-conf`` ConfigMap (spec §12.5): one typed loader for the portal, the workers and the agent.

The chart mounts the ConfigMap at ``/tmp/spiderpool/config-map`` (Spiderpool's path) and points every component at
``conf.yml`` there with ``SPIDERWEB_CONFIG_PATH``; the sibling key ``clusterNetwork`` is a file next to it. As in
Spiderpool, a component reads it once at start-up (``helm upgrade`` restarts the pods: their templates carry the
ConfigMap's checksum) and a bad value stops it with a message naming every problem. Without
``SPIDERWEB_CONFIG_PATH`` nothing is read: the portal's cluster settings row (admin, REST API) holds the switches,
as in ``make run``.

| key | used by |
|---|---|
| ``ipamUnixSocketPath`` | agent (its socket, unless ``SPIDERWEB_AGENT_SOCKET`` says otherwise) |
| ``enableIPv4`` / ``enableIPv6`` | portal (pool validation, allocation), agent (host sysctls per family) |
| ``enableStatefulSet`` / ``enableKubevirtStaticIP`` | portal (fixed addresses), agent (DEL keeps them), GC |
| ``enableCleanOutdatedEndpoint`` | GC |
| ``enableSpiderSubnet`` / ``enableAutoPoolForApplication`` | webhooks, validation, auto pools |
| ``enableIPConflictDetection`` / ``enableGatewayDetection`` | portal → agent → IPAM plugin |
| ``enableValidatingResourcesDeletedWebhook`` | webhooks |
| ``clusterSubnetDefaultFlexibleIPNumber`` | auto pools (the one key for it, spec A3) |
| ``tuneSysctlConfig`` | agent (host sysctls at start-up) |
| ``podResourceInject`` | the pod webhook ``/mutate--v1-pod`` (spec §10.5) |
| ``iaasNetworkProvider`` | refused when ``serverUrl`` is set: Spiderweb has no IaaS provider client |
| ``agent.networkResourcePlugin`` | refused when enabled: Spiderweb has no device plugin |
| ``clusterNetwork`` (file) | agent (the first NIC's Multus network, unless ``MULTUS_CLUSTER_NETWORK`` says otherwise) |

Never imports Django.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

ENV_PATH = "SPIDERWEB_CONFIG_PATH"
CLUSTER_NETWORK_FILE = "clusterNetwork"
DEFAULT_SOCKET_PATH = "/var/run/spidernet/spiderpool.sock"
DEFAULT_INJECT_EXCLUDE = ("kube-system", "spiderpool", "metallb-system", "istio-system")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_DURATION_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# conf.yml key → (attribute, type) for the flat switches; ClusterSettings has a field of the same attribute name.
_SWITCHES: dict[str, tuple[str, type]] = {
    "enableIPv4": ("enable_ipv4", bool),
    "enableIPv6": ("enable_ipv6", bool),
    "enableStatefulSet": ("enable_statefulset", bool),
    "enableKubevirtStaticIP": ("enable_kubevirt_static_ip", bool),
    "enableCleanOutdatedEndpoint": ("enable_clean_outdated_endpoint", bool),
    "enableSpiderSubnet": ("enable_spider_subnet", bool),
    "enableAutoPoolForApplication": ("enable_auto_pool_for_application", bool),
    "enableIPConflictDetection": ("enable_ip_conflict_detection", bool),
    "enableGatewayDetection": ("enable_gateway_detection", bool),
    "enableValidatingResourcesDeletedWebhook": ("enable_validating_resources_deleted_webhook", bool),
    "clusterSubnetDefaultFlexibleIPNumber": ("cluster_subnet_default_flexible_ip_number", int),
}
CLUSTER_SETTINGS_FIELDS = tuple(attribute for attribute, _ in _SWITCHES.values())


class ConfError(ValueError):
    """``conf.yml`` cannot be used; the message names every problem and the file."""


@dataclass(frozen=True)
class PodResourceInject:
    """``podResourceInject``: the pod mutating webhook of spec §10.5 and the namespaces it serves."""

    enabled: bool = False
    namespaces_exclude: tuple[str, ...] = DEFAULT_INJECT_EXCLUDE
    namespaces_include: tuple[str, ...] = ()

    def serves(self, namespace: str) -> bool:
        """Whether a pod in ``namespace`` is the webhook's business (the chart registers the same selector).

        >>> PodResourceInject(True).serves("kube-system"), PodResourceInject(True, (), ("a",)).serves("b")
        (False, False)
        """
        if not self.enabled or namespace in self.namespaces_exclude:
            return False
        return not self.namespaces_include or namespace in self.namespaces_include


@dataclass(frozen=True)
class SpiderpoolConf:
    """Every key of ``conf.yml`` (spec §12.5) with Spiderpool's defaults, plus the ``clusterNetwork`` key."""

    path: str = ""
    ipam_unix_socket_path: str = DEFAULT_SOCKET_PATH
    enable_ipv4: bool = True
    enable_ipv6: bool = True
    enable_statefulset: bool = True
    enable_kubevirt_static_ip: bool = True
    enable_clean_outdated_endpoint: bool = False
    enable_spider_subnet: bool = True
    enable_auto_pool_for_application: bool = True
    enable_ip_conflict_detection: bool = False
    enable_gateway_detection: bool = False
    enable_validating_resources_deleted_webhook: bool = False
    cluster_subnet_default_flexible_ip_number: int = 1
    tune_sysctl_config: bool = True
    pod_resource_inject: PodResourceInject = field(default_factory=PodResourceInject)
    iaas_server_url: str = ""
    iaas_http_request_timeout: float = 30.0
    cluster_network: str = ""

    def cluster_settings(self) -> dict[str, Any]:
        """The switches the portal keeps in its cluster settings, by field name."""
        return {name: getattr(self, name) for name in CLUSTER_SETTINGS_FIELDS}


def parse(text: str, *, path: str = "conf.yml", cluster_network: str = "") -> SpiderpoolConf:
    """Read ``conf.yml``'s text; :class:`ConfError` lists every unknown key and every bad value.

    >>> conf = parse("enableIPv6: false\\nclusterSubnetDefaultFlexibleIPNumber: 3\\n")
    >>> conf.enable_ipv6, conf.cluster_subnet_default_flexible_ip_number, conf.enable_ipv4
    (False, 3, True)
    >>> parse("enableIPv4: false\\nenableIPv6: false\\nenableStatefulSett: true\\n", path="/c/conf.yml")
    Traceback (most recent call last):
    ...
    spiderweb.k8s.spiderpool_conf.ConfError: invalid /c/conf.yml: unknown key enableStatefulSett; enableIPv4 and \
enableIPv6 cannot both be false
    """
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfError(f"invalid {path}: not YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfError(f"invalid {path}: expected a mapping of keys, got {type(data).__name__}")
    problems: list[str] = []
    values: dict[str, Any] = {"path": path, "cluster_network": cluster_network.strip()}
    known = {*_SWITCHES, "ipamUnixSocketPath", "tuneSysctlConfig", "podResourceInject", "iaasNetworkProvider",
             "agent"}
    problems += [f"unknown key {key}" for key in data if key not in known]
    for key, (attribute, kind) in _SWITCHES.items():
        if key in data:
            values[attribute] = _typed(data[key], kind, key, problems)
    if "tuneSysctlConfig" in data:
        values["tune_sysctl_config"] = _typed(data["tuneSysctlConfig"], bool, "tuneSysctlConfig", problems)
    if "ipamUnixSocketPath" in data:
        socket_path = _typed(data["ipamUnixSocketPath"], str, "ipamUnixSocketPath", problems)
        if socket_path is not None and not (os.path.isabs(socket_path) and len(socket_path.encode()) <= 107):
            problems.append(f"ipamUnixSocketPath {socket_path!r} must be an absolute path of at most 107 bytes")
        values["ipam_unix_socket_path"] = socket_path
    if (values.get("cluster_subnet_default_flexible_ip_number") or 0) < 0:
        problems.append("clusterSubnetDefaultFlexibleIPNumber must not be negative")
    values["pod_resource_inject"] = _pod_resource_inject(data.get("podResourceInject"), problems)
    values.update(_iaas(data.get("iaasNetworkProvider"), problems))
    _agent(data.get("agent"), problems)
    if values.get("enable_ipv4") is False and values.get("enable_ipv6") is False:
        problems.append("enableIPv4 and enableIPv6 cannot both be false")
    if problems:
        raise ConfError(f"invalid {path}: " + "; ".join(problems))
    return SpiderpoolConf(**{k: v for k, v in values.items() if v is not None})


def _typed(value: Any, kind: type, key: str, problems: list[str]) -> Any:
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is not int and isinstance(value, kind):
        return value
    expected = {bool: "true or false", int: "a whole number", str: "a string"}[kind]
    problems.append(f"{key} must be {expected}, got {value!r}")
    return None


def _names(value: Any, key: str, problems: list[str]) -> tuple[str, ...] | None:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{key} must be a list of namespace names")
        return None
    return tuple(value)


def _pod_resource_inject(value: Any, problems: list[str]) -> PodResourceInject:
    if value is None:
        return PodResourceInject()
    if not isinstance(value, Mapping):
        problems.append("podResourceInject must be a mapping")
        return PodResourceInject()
    extra = sorted(set(value) - {"enabled", "namespacesExclude", "namespacesInclude"})
    problems += [f"unknown key podResourceInject.{key}" for key in extra]
    enabled = _typed(value.get("enabled", False), bool, "podResourceInject.enabled", problems)
    exclude = _names(value.get("namespacesExclude", list(DEFAULT_INJECT_EXCLUDE)),
                     "podResourceInject.namespacesExclude", problems)
    include = _names(value.get("namespacesInclude"), "podResourceInject.namespacesInclude", problems)
    return PodResourceInject(bool(enabled), exclude if exclude is not None else DEFAULT_INJECT_EXCLUDE,
                             include or ())


def _iaas(value: Any, problems: list[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append("iaasNetworkProvider must be a mapping")
        return {}
    out: dict[str, Any] = {}
    url = value.get("serverUrl") or ""
    if not isinstance(url, str):
        problems.append(f"iaasNetworkProvider.serverUrl must be a string, got {url!r}")
    elif url:
        problems.append(f"iaasNetworkProvider.serverUrl is {url!r}, but Spiderweb has no IaaS network provider "
                        f"client (spec §12.7); leave it empty")
    out["iaas_server_url"] = url if isinstance(url, str) else ""
    timeout = value.get("httpRequestTimeout")
    if timeout not in (None, ""):
        match = _DURATION.match(str(timeout))
        if not match:
            problems.append(f"iaasNetworkProvider.httpRequestTimeout {timeout!r} is not a duration such as 30s")
        else:
            out["iaas_http_request_timeout"] = min(float(match[1]) * _DURATION_UNIT[match[2]], 120.0)
    return out


def _agent(value: Any, problems: list[str]) -> None:
    plugin = (value or {}).get("networkResourcePlugin") if isinstance(value, Mapping) else None
    if isinstance(plugin, Mapping) and plugin.get("enabled"):
        problems.append("agent.networkResourcePlugin.enabled is true, but Spiderweb has no network resource device "
                        "plugin (spec §12.6)")


def load(path: str) -> SpiderpoolConf:
    """Read ``conf.yml`` at ``path`` and the ``clusterNetwork`` key beside it (a mounted ConfigMap's files)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfError(f"cannot read {path} ({ENV_PATH}): {exc.strerror or exc}") from None
    cluster_network = ""
    sibling = os.path.join(os.path.dirname(path), CLUSTER_NETWORK_FILE)
    if os.path.exists(sibling):
        try:
            with open(sibling, encoding="utf-8") as handle:
                cluster_network = handle.read()
        except OSError as exc:
            raise ConfError(f"cannot read {sibling}: {exc.strerror or exc}") from None
    return parse(text, path=path, cluster_network=cluster_network)


@lru_cache(maxsize=1)
def configured() -> SpiderpoolConf | None:
    """This process's ``conf.yml`` (``SPIDERWEB_CONFIG_PATH``), read once; ``None`` when the variable is unset.
    Tests call ``configured.cache_clear()`` after changing it."""
    path = os.environ.get(ENV_PATH, "").strip()
    return load(path) if path else None
