"""The agent's Prometheus metrics, under Spiderpool's snake-case names (spec §13.1 and Appendix A1).

Dashboards and alerts written for Spiderpool keep working: counters are exposed with the ``_total`` suffix the
OpenTelemetry exporter adds upstream, histograms use Spiderpool's buckets, and each latency also has the
average/max/min/latest gauges. "Limit" durations are the time a request waited in the agent's admission queue
(Spiderpool's per-pool ticket wait; spec §7.6). Each agent owns a private registry so several agents can run in one
process (tests) without clashing.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from spiderweb import __version__

BUCKETS = (0.1, 0.3, 0.5, 1, 3, 5, 7, 10, 15)
PREFIX = "spiderpool_ipam"

# Allocation failures by error code -> the counter Spiderpool increments for that class (spec §13.1).
ALLOCATION_ERROR_CLASS = {
    "ip_exhausted": "err_ip_used_out",
    "no_pool_available": "err_no_available_pool",
    "unavailable": "err_retries_exhausted",
}
RELEASE_ERROR_CLASS = {"unavailable": "err_retries_exhausted"}


class _Latency:
    """A histogram plus the running average/max/min/latest gauges of one latency."""

    def __init__(self, registry: CollectorRegistry, base: str, kind: str, what: str) -> None:
        self.histogram = Histogram(f"{base}_{kind}duration_seconds", f"{what} (seconds)", buckets=BUCKETS,
                                   registry=registry)
        self.gauges = {
            stat: Gauge(f"{base}_{stat}_{kind}duration_seconds", f"{stat} {what} (seconds)", registry=registry)
            for stat in ("average", "max", "min", "latest")
        }
        self._lock = threading.Lock()
        self._count = 0
        self._sum = 0.0
        self._max = 0.0
        self._min = float("inf")

    def observe(self, seconds: float) -> None:
        self.histogram.observe(seconds)
        with self._lock:
            self._count += 1
            self._sum += seconds
            self._max = max(self._max, seconds)
            self._min = min(self._min, seconds)
            self.gauges["average"].set(self._sum / self._count)
            self.gauges["max"].set(self._max)
            self.gauges["min"].set(self._min)
            self.gauges["latest"].set(seconds)


class _Operation:
    """Counters and latencies of allocation or release."""

    def __init__(self, registry: CollectorRegistry, name: str, error_classes: tuple[str, ...]) -> None:
        base = f"{PREFIX}_{name}"
        self.counts = Counter(f"{base}_counts", f"{name} requests", registry=registry)
        self.failures = Counter(f"{base}_failure_counts", f"failed {name} requests", registry=registry)
        self.conflicts = Counter(f"{base}_update_ippool_conflict_counts", f"{name} failures from conflicting "
                                 "pool updates", registry=registry)
        self.errors = {
            cls: Counter(f"{base}_{cls}_counts", f"{name} failures of class {cls}", registry=registry)
            for cls in error_classes
        }
        self.duration = _Latency(registry, base, "", f"{name} latency")
        self.limit = _Latency(registry, base, "limit_", f"{name} wait in the admission queue")

    def record(self, *, seconds: float, waited: float | None, error_code: str | None,
               classes: dict[str, str]) -> None:
        self.counts.inc()
        self.duration.observe(seconds)
        if waited is not None:
            self.limit.observe(waited)
        if error_code is None:
            return
        self.failures.inc()
        if error_code == "conflict":
            self.conflicts.inc()
            return
        self.errors[classes.get(error_code, "err_internal")].inc()


class AgentMetrics:
    """All agent metrics in one private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.allocation = _Operation(self.registry, "allocation", (
            "err_internal", "err_no_available_pool", "err_retries_exhausted", "err_ip_used_out"))
        self.release = _Operation(self.registry, "release", ("err_internal", "err_retries_exhausted"))
        # Appendix A20: upstream declares this and never increments it; here every wait for an auto pool counts.
        self.auto_pool_waits = Counter("spiderpool_debug_auto_pool_waited_for_available_counts",
                                       "ADDs that waited for their SpiderSubnet auto pool to exist or grow",
                                       registry=self.registry)

    def watch(self, *, in_flight, waiting, token_present) -> None:
        """Agent health read when scraped: requests in flight and waiting in the limiter, whether a node token is
        there (without one the agent is not ready), and the version."""
        Gauge("spiderweb_agent_requests_in_flight", "Socket API requests being served", registry=self.registry
              ).set_function(in_flight)
        Gauge("spiderweb_agent_requests_waiting", "Socket API requests waiting in the limiter queue",
              registry=self.registry).set_function(waiting)
        Gauge("spiderweb_agent_node_token_present", "1 when the agent has its portal token (else it is not ready)",
              registry=self.registry).set_function(lambda: 1 if token_present() else 0)
        info = Gauge("spiderweb_build_info", "Version of the running Spiderweb component", ["version", "component"],
                     registry=self.registry)
        info.labels(version=__version__, component="agent").set(1)

    def record_allocation(self, *, seconds: float, waited: float | None, error_code: str | None) -> None:
        """One ``POST /v1/ipam/ip``; ``error_code`` is the failure's stable code, ``None`` on success."""
        self.allocation.record(seconds=seconds, waited=waited, error_code=error_code, classes=ALLOCATION_ERROR_CLASS)

    def record_release(self, *, seconds: float, waited: float | None, error_code: str | None) -> None:
        """One ``DELETE /v1/ipam/ip`` or ``DELETE /v1/ipam/ips``."""
        self.release.record(seconds=seconds, waited=waited, error_code=error_code, classes=RELEASE_ERROR_CLASS)

    def serve(self, address: str, port: int):
        """Start the metrics listener (any path answers); returns the server, whose ``server_port`` is bound."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server
