"""Prometheus instruments of the portal and the workers: one registry per process, multiprocess-safe.

Names follow Spiderpool where Spiderpool has one (spec §13.2, snake case as Appendix A1 asks; counters get the
``_total`` suffix the upstream OpenTelemetry exporter adds); everything Spiderpool has no name for is
``spiderweb_*``. The node agent's own instruments (spec §13.1) live in ``agent/metrics.py``.

Processes that fork (gunicorn workers, Celery's prefork pool) run in prometheus_client's multiprocess mode: with
``PROMETHEUS_MULTIPROC_DIR`` in the environment *before the process starts*, every process writes its values to
files there and a scrape merges them (``scrape_registry``). Without it, the values live in ``REGISTRY``. Gauges that
describe the database (pool totals) are never stored: a collector computes them when scraped, so every process
answers the same level and nothing is left stale by a process that died.

This module imports only the standard library and ``prometheus_client``, so any layer may record a value.
"""

from __future__ import annotations

import functools
import glob
import os
import time
from collections.abc import Iterable
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from spiderweb import __version__

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Sub-second buckets: a portal allocation is a few milliseconds when healthy (the agent's Spiderpool histograms
# keep Spiderpool's 0.1-15 s buckets, which measure the whole CNI call).
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOCK_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def _ensure_multiproc_dir() -> None:
    """prometheus_client opens its value files on the first instrument; the directory must exist by then."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)


_ensure_multiproc_dir()
REGISTRY = CollectorRegistry(auto_describe=True)

# --------------------------------------------------------------------------------------- allocation (portal)
ALLOCATIONS = Counter("spiderweb_ipam_allocation_requests", "Allocations the portal served, by result (ok or the "
                      "error code: ip_exhausted, no_pool_available, unavailable, autopool_not_ready, ...)",
                      ["result"], registry=REGISTRY)
ALLOCATION_DURATION = Histogram("spiderweb_ipam_allocation_duration_seconds", "Portal time of one allocation "
                                "(every NIC of the pod), seconds", buckets=LATENCY_BUCKETS, registry=REGISTRY)
RELEASES = Counter("spiderweb_ipam_release_requests", "Pod releases the portal served, by result",
                   ["result"], registry=REGISTRY)
RELEASE_DURATION = Histogram("spiderweb_ipam_release_duration_seconds", "Portal time of one pod release, seconds",
                             buckets=LATENCY_BUCKETS, registry=REGISTRY)
RELEASED_IPS = Counter("spiderweb_ipam_released_ips", "Addresses released, by why (cni-del, gc-scan, gc-trace, "
                       "admin, ...)", ["reason"], registry=REGISTRY)
LOCK_WAIT = Histogram("spiderweb_ipam_lock_wait_seconds", "Time spent waiting for a lock (pod: the per-pod advisory "
                      "lock; pool: the candidate pools' row locks), seconds", ["lock"], buckets=LOCK_BUCKETS,
                      registry=REGISTRY)
DB_RETRYABLE = Counter("spiderweb_db_retryable_errors", "Database errors answered 503 for a retry, by SQLSTATE "
                       "(55P03 lock timeout, 40P01 deadlock, 40001 serialization; 'connection' when none)",
                       ["sqlstate"], registry=REGISTRY)

# --------------------------------------------------------------------------------------------------- GC (workers)
IP_GC = Counter("spiderpool_ip_gc_counts", "Release attempts by the IP GC (spec 13.2)", registry=REGISTRY)
IP_GC_FAILURES = Counter("spiderpool_ip_gc_failure_counts", "Failed IP GC releases (spec 13.2)", registry=REGISTRY)
GC_RELEASED_IPS = Counter("spiderweb_gc_released_ips", "Addresses the IP GC released, by path (trace, scan)",
                          ["path"], registry=REGISTRY)
GC_SCANS = Counter("spiderweb_gc_scans", "Full GC scans, by result (done, disabled, failed)", ["result"],
                   registry=REGISTRY)
GC_SCAN_DURATION = Histogram("spiderweb_gc_scan_duration_seconds", "Duration of one full GC scan, seconds",
                             buckets=TASK_BUCKETS, registry=REGISTRY)

# ------------------------------------------------------------------------------------------ controllers (workers)
RECONCILES = Counter("spiderweb_controller_reconciles", "Controller task runs (reconciles, scans, resyncs), by "
                     "controller, task and outcome (success, retry, failure)", ["controller", "task", "outcome"],
                     registry=REGISTRY)
RECONCILE_DURATION = Histogram("spiderweb_controller_reconcile_duration_seconds", "Duration of one controller task "
                               "run, seconds", ["controller", "task"], buckets=TASK_BUCKETS, registry=REGISTRY)


# Database errors the API answers 503 `unavailable` (spiderweb.ipam.api.errors), by class name: this module
# imports no Django.
UNAVAILABLE_ERRORS = {"OperationalError", "InterfaceError"}


def result_of(exc: BaseException | None) -> str:
    """The ``result`` label of an outcome: ``ok``, an IPAM error's stable code, ``unavailable`` for a lost database
    or a lock timeout, else ``internal``."""
    if exc is None:
        return "ok"
    if type(exc).__name__ in UNAVAILABLE_ERRORS:
        return "unavailable"
    code = getattr(exc, "code", "")
    return code if isinstance(code, str) and code else "internal"


@functools.cache
def labelled(metric: Counter | Histogram, *values: str):
    """``metric.labels(*values)``, looked up once: prometheus_client finds the child under a lock on every call,
    which the allocation hot path would pay several times per pod. Only for bounded label values (the cache keeps
    every child it was asked for, as the metric itself does)."""
    return metric.labels(*values)


@contextmanager
def timed(counter: Counter, histogram: Histogram):
    """Count one operation by result and observe its duration (also when it raises; the error propagates)."""
    started = time.perf_counter()
    try:
        yield
    except BaseException as exc:
        labelled(counter, result_of(exc)).inc()
        histogram.observe(time.perf_counter() - started)
        raise
    labelled(counter, "ok").inc()
    histogram.observe(time.perf_counter() - started)


@contextmanager
def lock_wait(lock: str):
    """Observe how long the enclosed lock statement waited."""
    started = time.perf_counter()
    try:
        yield
    finally:
        labelled(LOCK_WAIT, lock).observe(time.perf_counter() - started)


def release_reason_label(reason: str) -> str:
    """A bounded label from a release reason: ``admin:alice`` counts as ``admin``."""
    return (reason or "unknown").split(":", 1)[0][:32]


# ----------------------------------------------------------------------------------------------------- scraping


class BuildInfo(Collector):
    """``spiderweb_build_info{version, component}`` = 1, computed at scrape time (no stored value)."""

    def __init__(self, component: str) -> None:
        self.component = component

    def collect(self):
        family = GaugeMetricFamily("spiderweb_build_info", "Version of the running Spiderweb component",
                                   labels=["version", "component"])
        family.add_metric([__version__, self.component], 1)
        yield family


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def scrape_registry(*extra: Collector) -> CollectorRegistry:
    """What one scrape exposes: this process's instruments (or, in multiprocess mode, every process's merged from
    their files) plus ``extra`` collectors computed now."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    for collector in extra:
        registry.register(collector)
    return registry


class _Forward(Collector):
    """Exposes another registry's metrics inside a per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self):
        yield from self.source.collect()


def exposition(*extra: Collector) -> bytes:
    """The Prometheus text of one scrape."""
    return generate_latest(scrape_registry(*extra))


def multiprocess_dir_reset(*, keep_pids: Iterable[int] = ()) -> None:
    """Remove the value files of processes from an earlier run (at server start, before any worker forks)."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return
    os.makedirs(path, exist_ok=True)
    keep = {str(pid) for pid in keep_pids}
    for name in glob.glob(os.path.join(path, "*.db")):
        pid = os.path.basename(name).rsplit("_", 1)[-1].removesuffix(".db")
        if pid not in keep:
            os.remove(name)


def multiprocess_process_dead(pid: int) -> None:
    """A forked worker exited: drop its live-gauge files (counters and histograms keep counting)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(pid)
