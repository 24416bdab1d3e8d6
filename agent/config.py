"""The agent's configuration, read once from the environment at start-up into a frozen dataclass.

Every value is validated here and every problem is reported at once (``ConfigError`` lists them all), so a
misconfigured DaemonSet fails on start with a message naming the variables instead of failing on the first pod.
Nothing else in the agent reads ``os.environ``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from spiderweb.k8s import spiderpool_conf

MODE_KUBERNETES = "kubernetes"
MODE_STANDALONE = "standalone"
DEFAULT_SOCKET_PATH = "/var/run/spidernet/spiderpool.sock"
DEFAULT_CNI_BIN_DIR = "/opt/cni/bin"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

T = TypeVar("T")

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """One or more environment variables are missing or malformed; the message names each of them."""


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent is told by its environment (see agent/README.md and spec §12.3).

    Ports: ``health_port=0`` / ``metrics_port=0`` bind any free port (tests); ``metrics_port=None`` disables the
    metrics listener (``SPIDERWEB_AGENT_METRICS_PORT=0`` in the environment).
    """

    node_name: str
    portal_url: str
    node_token: str = field(repr=False)
    node_token_file: str | None = None
    portal_ca_file: str | None = None
    mode: str = MODE_KUBERNETES
    socket_path: str = DEFAULT_SOCKET_PATH
    health_address: str = "127.0.0.1"
    health_port: int = 5710
    metrics_address: str = "0.0.0.0"
    metrics_port: int | None = 5711
    kubeconfig: str | None = None
    cni_bin_dir: str = DEFAULT_CNI_BIN_DIR
    release_conflict_ips: bool = True
    cluster_network: str = ""
    namespace: str = ""
    queue_size: int = 1000
    max_active: int = 8
    portal_timeout: float = 30.0
    portal_retries: int = 3
    portal_backoff: float = 0.2
    # Spec §4.4: how long an ADD waits for its SpiderSubnet auto pool to exist or to grow (25 x 2 s upstream).
    auto_pool_wait_retries: int = 25
    auto_pool_wait_seconds: float = 2.0
    kube_timeout: float = 10.0
    pod_cache_seconds: float = 5.0
    object_cache_seconds: float = 30.0
    shutdown_grace: float = 25.0
    tune_sysctls: bool = False
    # The netns the agent treats as "the host" for coordinator work; None = its own. Lets one machine run
    # several agents, each for a node living in a network namespace (the netns lab, benchmarks).
    host_netns_path: str | None = None
    log_level: str = "info"
    # From the chart's spiderpool-conf (SPIDERWEB_CONFIG_PATH), Spiderpool's defaults without one (spec §12.5).
    config_path: str = ""
    enable_ipv4: bool = True
    enable_ipv6: bool = True
    enable_statefulset: bool = True
    enable_kubevirt_static_ip: bool = True

    @property
    def standalone(self) -> bool:
        """True when pod facts come from the CNI call alone (no Kubernetes API)."""
        return self.mode == MODE_STANDALONE


class _Reader:
    """Collects every problem instead of stopping at the first one."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, *names: str, default: str = "") -> str:
        for name in names:
            value = self.env.get(name)
            if value is not None and value.strip() != "":
                return value.strip()
        return default

    def parsed(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError:
            self.problems.append(f"{name}={raw!r} is not {expected}")
            return default

    def number(self, name: str, default: float, *, low: float, high: float, integer: bool = False) -> float:
        kind = "an integer" if integer else "a number"
        value = self.parsed(name, default, int if integer else float, kind)
        if not low <= value <= high:
            self.problems.append(f"{name}={value} must be between {low} and {high}")
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        return self.parsed(name, default, _parse_bool, "true or false")


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def load(env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read the configuration from ``env`` (default ``os.environ``); raise :class:`ConfigError` listing problems.

    >>> load({"SPIDERPOOL_NODE_NAME": "n1", "SPIDERWEB_PORTAL_URL": "http://portal:8000",
    ...       "SPIDERWEB_NODE_TOKEN": "t", "SPIDERWEB_AGENT_MODE": "standalone"}).node_name
    'n1'
    >>> load({"SPIDERWEB_AGENT_MODE": "cloud", "SPIDERWEB_AGENT_HEALTH_PORT": "x"})
    Traceback (most recent call last):
    ...
    agent.config.ConfigError: invalid agent configuration: SPIDERWEB_NODE_NAME (or SPIDERPOOL_NODE_NAME) is \
required; SPIDERWEB_PORTAL_URL is required (e.g. https://portal.example:8443); SPIDERWEB_NODE_TOKEN or \
SPIDERWEB_NODE_TOKEN_FILE is required; SPIDERWEB_AGENT_MODE='cloud' must be kubernetes or standalone; \
SPIDERWEB_AGENT_HEALTH_PORT='x' is not an integer
    """
    r = _Reader(os.environ if env is None else env)
    conf = _spiderpool_conf(r)
    node_name = r.text("SPIDERWEB_NODE_NAME", "SPIDERPOOL_NODE_NAME")
    if not node_name:
        r.problems.append("SPIDERWEB_NODE_NAME (or SPIDERPOOL_NODE_NAME) is required")
    portal_url = r.text("SPIDERWEB_PORTAL_URL").rstrip("/")
    if not portal_url:
        r.problems.append("SPIDERWEB_PORTAL_URL is required (e.g. https://portal.example:8443)")
    else:
        parts = urlsplit(portal_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            r.problems.append(f"SPIDERWEB_PORTAL_URL={portal_url!r} must be an http:// or https:// URL")
    token, token_file = _token(r)
    mode = r.text("SPIDERWEB_AGENT_MODE", default=MODE_KUBERNETES).lower()
    if mode not in (MODE_KUBERNETES, MODE_STANDALONE):
        r.problems.append(f"SPIDERWEB_AGENT_MODE={mode!r} must be kubernetes or standalone")
    socket_path = r.text("SPIDERWEB_AGENT_SOCKET", default=conf.ipam_unix_socket_path)
    if not os.path.isabs(socket_path) or len(socket_path.encode()) > 107:
        r.problems.append(f"SPIDERWEB_AGENT_SOCKET={socket_path!r} must be an absolute path of at most 107 bytes")
    health_port = int(r.number("SPIDERWEB_AGENT_HEALTH_PORT", 5710, low=1, high=65535, integer=True))
    metrics_port = int(r.number("SPIDERWEB_AGENT_METRICS_PORT", 5711, low=0, high=65535, integer=True))
    log_level = r.text("SPIDERWEB_AGENT_LOG_LEVEL", "SPIDERWEB_LOG_LEVEL", "SPIDERPOOL_LOG_LEVEL", default="info")
    log_level = log_level.lower()
    log_level = {"warn": "warning", "fatal": "critical", "panic": "critical"}.get(log_level, log_level)
    if log_level not in LOG_LEVELS:
        r.problems.append(f"SPIDERWEB_AGENT_LOG_LEVEL={log_level!r} must be one of {', '.join(LOG_LEVELS)}")
    config = AgentConfig(
        node_name=node_name,
        portal_url=portal_url,
        node_token=token,
        node_token_file=token_file,
        portal_ca_file=r.text("SPIDERWEB_PORTAL_CA_FILE") or None,
        mode=mode,
        socket_path=socket_path,
        health_address=r.text("SPIDERWEB_AGENT_HEALTH_ADDRESS", default="127.0.0.1"),
        health_port=health_port,
        metrics_address=r.text("SPIDERWEB_AGENT_METRICS_ADDRESS", default="0.0.0.0"),
        metrics_port=metrics_port or None,
        kubeconfig=r.text("KUBECONFIG") or None,
        # Empty disables the install, so the variable is read raw: "" is a meaningful value here.
        cni_bin_dir=(r.env.get("SPIDERWEB_CNI_BIN_DIR", DEFAULT_CNI_BIN_DIR) or "").strip(),
        release_conflict_ips=r.flag("SPIDERPOOL_ENABLED_RELEASE_CONFLICT_IPS", True),
        cluster_network=r.text("MULTUS_CLUSTER_NETWORK", default=conf.cluster_network),
        namespace=r.text("SPIDERWEB_NAMESPACE", "SPIDERPOOL_POD_NAMESPACE"),
        queue_size=int(r.number("SPIDERWEB_AGENT_QUEUE_SIZE", 1000, low=0, high=100_000, integer=True)),
        # Measured (make bench-cni, 64 concurrent pods on 2 cores): 8 in flight gave twice the ADD rate, a p99 of
        # 8 s instead of 64 s and 64 MB instead of 347 MB RSS compared with 32; the rest wait in the queue.
        max_active=int(r.number("SPIDERWEB_AGENT_MAX_INFLIGHT", 8, low=1, high=4096, integer=True)),
        portal_timeout=r.number("SPIDERWEB_PORTAL_TIMEOUT", 30.0, low=0.1, high=600),
        portal_retries=int(r.number("SPIDERWEB_PORTAL_RETRIES", 3, low=0, high=20, integer=True)),
        portal_backoff=r.number("SPIDERWEB_PORTAL_BACKOFF", 0.2, low=0, high=60),
        auto_pool_wait_retries=int(r.number("SPIDERPOOL_WAIT_SUBNET_POOL_MAX_RETRIES", 25, low=0, high=1000,
                                            integer=True)),
        auto_pool_wait_seconds=r.number("SPIDERPOOL_WAIT_SUBNET_POOL_TIME_IN_SECOND", 2.0, low=0, high=60),
        kube_timeout=r.number("SPIDERWEB_KUBE_TIMEOUT", 10.0, low=0.1, high=600),
        pod_cache_seconds=r.number("SPIDERWEB_AGENT_POD_CACHE_SECONDS", 5.0, low=0, high=3600),
        object_cache_seconds=r.number("SPIDERWEB_AGENT_OBJECT_CACHE_SECONDS", 30.0, low=0, high=3600),
        shutdown_grace=r.number("SPIDERWEB_AGENT_SHUTDOWN_GRACE", 25.0, low=0, high=3600),
        tune_sysctls=r.flag("SPIDERWEB_AGENT_TUNE_SYSCTLS", conf.tune_sysctl_config if conf.path else False),
        host_netns_path=r.text("SPIDERWEB_AGENT_HOST_NETNS") or None,
        log_level=log_level,
        config_path=conf.path,
        enable_ipv4=conf.enable_ipv4,
        enable_ipv6=conf.enable_ipv6,
        enable_statefulset=conf.enable_statefulset,
        enable_kubevirt_static_ip=conf.enable_kubevirt_static_ip,
    )
    if config.node_token_file and not config.node_token:
        log.warning("%s does not exist yet: the agent stays not ready until it does", config.node_token_file)
    if config.cni_bin_dir and not os.path.isabs(config.cni_bin_dir):
        r.problems.append(f"SPIDERWEB_CNI_BIN_DIR={config.cni_bin_dir!r} must be an absolute path (or empty)")
    if config.portal_ca_file and not os.path.isfile(config.portal_ca_file):
        r.problems.append(f"SPIDERWEB_PORTAL_CA_FILE={config.portal_ca_file!r} does not name a readable file")
    if config.kubeconfig and config.mode == MODE_KUBERNETES and not os.path.isfile(config.kubeconfig):
        r.problems.append(f"KUBECONFIG={config.kubeconfig!r} does not name a readable file")
    if r.problems:
        raise ConfigError("invalid agent configuration: " + "; ".join(r.problems))
    return config


def _spiderpool_conf(r: _Reader) -> spiderpool_conf.SpiderpoolConf:
    """The chart's ``conf.yml`` (``SPIDERWEB_CONFIG_PATH``), or Spiderpool's defaults without one. Without a file
    the host sysctls stay untouched unless ``SPIDERWEB_AGENT_TUNE_SYSCTLS`` asks (a developer's machine)."""
    path = r.text(spiderpool_conf.ENV_PATH)
    if not path:
        return spiderpool_conf.SpiderpoolConf()
    try:
        return spiderpool_conf.load(path)
    except spiderpool_conf.ConfError as exc:
        r.problems.append(str(exc))
        return spiderpool_conf.SpiderpoolConf()


def _token(r: _Reader) -> tuple[str, str | None]:
    """The token value, or the file to read it from.

    A token file that does not exist yet is accepted: the Secret holding the node's token may be filled after the
    agent started (helm/README.md), so the agent starts not ready and picks the token up later
    (:mod:`agent.node_token`). A file that exists but cannot be read is a configuration error.
    """
    token = r.text("SPIDERWEB_NODE_TOKEN")
    path = r.text("SPIDERWEB_NODE_TOKEN_FILE")
    if token and path:
        r.problems.append("set SPIDERWEB_NODE_TOKEN or SPIDERWEB_NODE_TOKEN_FILE, not both")
        return token, None
    if path:
        if not os.path.isabs(path):
            r.problems.append(f"SPIDERWEB_NODE_TOKEN_FILE={path!r} must be an absolute path")
            return "", None
        try:
            with open(path, encoding="utf-8") as handle:
                token = handle.read().strip()
        except FileNotFoundError:
            return "", path
        except OSError as exc:
            r.problems.append(f"SPIDERWEB_NODE_TOKEN_FILE={path!r} cannot be read: {exc.strerror or exc}")
            return "", None
    elif not token:
        r.problems.append("SPIDERWEB_NODE_TOKEN or SPIDERWEB_NODE_TOKEN_FILE is required")
    if token and any(ch.isspace() for ch in token):
        r.problems.append("the node token must not contain whitespace")
    return token, path or None
