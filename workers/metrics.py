"""The workers' Prometheus metrics: every task run counted by controller and outcome, its duration, the broker's
queue depth, and the instruments the services record (GC counts, releases; ``spiderweb.metrics``).

``SPIDERWEB_WORKER_METRICS_PORT`` (unset: no listener) makes the worker's main process serve them on
``SPIDERWEB_WORKER_METRICS_ADDRESS`` (default 0.0.0.0). Tasks run in forked pool processes, so set
``PROMETHEUS_MULTIPROC_DIR`` to a writable empty directory in the worker's environment (the chart does): each
process writes its values there and the listener merges them. The queue depth is read from the broker when scraped.
"""

from __future__ import annotations

import logging
import os
import time

from celery import signals
from kombu.exceptions import ChannelError
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from spiderweb import metrics

log = logging.getLogger(__name__)

PORT_ENV = "SPIDERWEB_WORKER_METRICS_PORT"
ADDRESS_ENV = "SPIDERWEB_WORKER_METRICS_ADDRESS"
BROKER_TIMEOUT = 3.0  # seconds a scrape may spend reading the queue depth
OUTCOMES = {"SUCCESS": "success", "RETRY": "retry", "FAILURE": "failure"}

_started: dict[str, float] = {}


def controller_of(task_name: str) -> str:
    """``workers.gc.gc_scan_task`` belongs to controller ``gc``; ``workers.tasks.*`` to ``tasks``."""
    parts = (task_name or "").split(".")
    return parts[1] if len(parts) >= 3 and parts[0] == "workers" else "other"


@signals.task_prerun.connect
def _task_started(task_id=None, **_):
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_):
    started = _started.pop(task_id, None)
    name = getattr(task, "name", "") or "unknown"
    controller = controller_of(name)
    metrics.RECONCILES.labels(controller=controller, task=name, outcome=OUTCOMES.get(state, "failure")).inc()
    if started is not None:
        metrics.RECONCILE_DURATION.labels(controller=controller, task=name).observe(time.perf_counter() - started)


class QueueDepthCollector(Collector):
    """``spiderweb_celery_queue_depth{queue}``: messages waiting in the broker, read when scraped; and
    ``spiderweb_celery_broker_up`` (0 when the broker cannot be read)."""

    def __init__(self, app) -> None:
        self.app = app

    def collect(self):
        depth = GaugeMetricFamily("spiderweb_celery_queue_depth", "Messages waiting in the broker queue",
                                  labels=["queue"])
        up = GaugeMetricFamily("spiderweb_celery_broker_up", "1 when the broker answered the last queue-depth read")
        queues = sorted(self.app.amqp.queues) or [self.app.conf.task_default_queue]
        try:
            with self.app.connection_for_read(connect_timeout=BROKER_TIMEOUT) as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT)
                channel = connection.default_channel
                for queue in queues:
                    depth.add_metric([queue], _queue_depth(channel, queue))
            up.add_metric([], 1)
        except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; a scrape must still answer
            log.warning("queue depth unreadable: %s", exc)
            up.add_metric([], 0)
        yield from (depth, up)


def _queue_depth(channel, queue: str) -> int:
    """Messages waiting in ``queue``; a queue the broker does not know yet (Redis: nothing was ever sent) is empty."""
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0


def metrics_serve(app, *, address: str, port: int):
    """Start the listener in this process; returns the server (``server_port`` is the bound port)."""
    registry = metrics.scrape_registry(metrics.BuildInfo("worker"), QueueDepthCollector(app))
    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server


@signals.worker_init.connect
def _worker_init(sender=None, **_):
    """Main worker process, before the pool forks: forget an earlier run's values, start the listener."""
    port = os.environ.get(PORT_ENV, "").strip()
    if not port:
        return
    if not metrics.multiprocess_enabled():
        log.warning("%s is set without PROMETHEUS_MULTIPROC_DIR: tasks run in forked processes and their metrics "
                    "will be missing", PORT_ENV)
    metrics.multiprocess_dir_reset(keep_pids=[os.getpid()])
    server = metrics_serve(sender.app, address=os.environ.get(ADDRESS_ENV, "0.0.0.0"), port=int(port))
    log.info("worker metrics on port %d", server.server_port)


@signals.worker_process_shutdown.connect
def _pool_process_exit(pid=None, **_):
    metrics.multiprocess_process_dead(pid or os.getpid())
