"""Assembles the agent from its configuration and runs its three listeners (socket API, probes, metrics).

:class:`Agent` is what ``python -m agent`` runs and what the tests start in a thread; it owns nothing global, so
several agents can live in one process (each with its own socket, ports and metrics registry).
"""

from __future__ import annotations

import logging
import threading
import time

from agent.admission import Admission
from agent.config import AgentConfig
from agent.coordination import CoordinatorService
from agent.ipam import IpamService
from agent.metrics import AgentMetrics
from agent.node_token import NodeToken
from agent.podfacts import FactsSource, KubernetesFacts, StandaloneFacts
from agent.portal import PortalClient
from agent.probes import ProbeServer
from agent.server import SocketAPI, UnixHTTPServer

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how quickly a listener notices stop(); the standard library's default is 0.5 s


def facts_source_for(config: AgentConfig) -> FactsSource:
    """Standalone facts, or Kubernetes facts through a client built from KUBECONFIG / the service account."""
    if config.standalone:
        return StandaloneFacts(config.node_name)
    from spiderweb.k8s.client import KubeClient, api_client

    reader = KubeClient(api_client(config.kubeconfig, pool_size=config.max_active), timeout=config.kube_timeout)
    return KubernetesFacts(reader, node_name=config.node_name, pod_ttl=config.pod_cache_seconds,
                           object_ttl=config.object_cache_seconds, keep_statefulset=config.enable_statefulset,
                           keep_kubevirt=config.enable_kubevirt_static_ip)


def wait_for_kubernetes(config: AgentConfig, *, attempts: int = 15, gap: float = 2.0) -> None:
    """Spec §12.3 start-up order: wait for the API server's ``/readyz`` (15 x 2 s), then fail loudly."""
    from spiderweb.k8s.client import KubeClient, api_client

    reader = KubeClient(api_client(config.kubeconfig), timeout=config.kube_timeout)
    for attempt in range(1, attempts + 1):
        if reader.ready():
            return
        log.info("waiting for the Kubernetes API server (%d/%d)", attempt, attempts)
        time.sleep(gap)
    raise RuntimeError(f"the Kubernetes API server was not ready after {attempts} attempts")


class Agent:
    """The running agent: ``start()`` binds and serves in background threads, ``stop()`` drains and closes."""

    def __init__(self, config: AgentConfig, *, facts: FactsSource | None = None, portal: PortalClient | None = None,
                 host_netns_path: str | None = None) -> None:
        self.config = config
        self.token = NodeToken(value=config.node_token, path=config.node_token_file)
        self.metrics = AgentMetrics()
        self.portal = portal or PortalClient(
            config.portal_url, self.token, timeout=config.portal_timeout, retries=config.portal_retries,
            backoff=config.portal_backoff, ca_file=config.portal_ca_file,
            user_agent=f"spiderweb-agent/{config.node_name}",
        )
        self.facts = facts or facts_source_for(config)
        self.admission = Admission(max_active=config.max_active, max_waiting=config.queue_size)
        self.api = SocketAPI(
            ipam=IpamService(config=config, portal=self.portal, facts=self.facts,
                             on_auto_pool_wait=self.metrics.auto_pool_waits.inc),
            coordinator=CoordinatorService(portal=self.portal, facts=self.facts, host_netns_path=host_netns_path),
            admission=self.admission,
            metrics=self.metrics,
        )
        self.metrics.watch(in_flight=lambda: self.admission.active, waiting=lambda: self.admission.waiting,
                           token_present=lambda: bool(self.portal.token.get()))
        self.socket_server: UnixHTTPServer | None = None
        self.probe_server: ProbeServer | None = None
        self.metrics_server = None
        self._threads: list[threading.Thread] = []

    @property
    def health_port(self) -> int:
        return self.probe_server.server_port if self.probe_server else 0

    @property
    def metrics_port(self) -> int:
        return self.metrics_server.server_port if self.metrics_server else 0

    def start(self) -> None:
        """Metrics, then probes, then the socket; the startup probe turns green last (spec §12.3 order)."""
        if self.config.metrics_port is not None:
            self.metrics_server = self.metrics.serve(self.config.metrics_address, self.config.metrics_port)
            log.info("metrics on %s:%d", self.config.metrics_address, self.metrics_port)
        self.probe_server = ProbeServer(self.config.health_address, self.config.health_port, self.config.socket_path,
                                        ready=lambda: bool(self.portal.token.get()))
        self._spawn("probes", lambda: self.probe_server.serve_forever(poll_interval=POLL_SECONDS))
        self.socket_server = UnixHTTPServer(self.config.socket_path, self.api)
        self._spawn("socket", lambda: self.socket_server.serve_forever(poll_interval=POLL_SECONDS))
        self.probe_server.started.set()
        log.info("agent for node %s (%s mode) serving %s, probes on %s:%d", self.config.node_name, self.config.mode,
                 self.config.socket_path, self.config.health_address, self.health_port)

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to ``shutdown_grace``), close everything."""
        self.api.serving = False
        if self.socket_server is not None:
            self.socket_server.shutdown()
            if not self.admission.drain(self.config.shutdown_grace):
                log.warning("stopping with %d request(s) still running", self.admission.active)
            self.socket_server.server_close()
        closing = [threading.Thread(target=_close, args=(server,)) for server in (self.probe_server,
                   self.metrics_server) if server is not None]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join()
        for thread in self._threads:
            thread.join(timeout=5)
        self.portal.close()
        log.info("agent stopped")

    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=f"agent-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)


def _close(server) -> None:
    server.shutdown()
    server.server_close()
