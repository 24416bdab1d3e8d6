"""The workers' Prometheus metrics: every task run counted by controller and outcome, its duration, the broker's
queue depth, and the instruments the services record (GC counts, releases; ``spiderweb.metrics``).

``SPIDERWEB_WORKER_METRICS_PORT`` (unset: no listener) makes the worker serve them on
``SPIDERWEB_WORKER_METRICS_ADDRESS`` (default 0.0.0.0). Tasks run in forked pool processes, so set
``PROMETHEUS_MULTIPROC_DIR`` to a writable empty directory in the worker's environment (the chart does): each
process writes its values there and the listener merges them. The queue depth is read from the broker when scraped.

The listener runs in a process of its own, forked from the main process before the pool's: the main process forks a
pool process whenever one exits, and a scrape served by a thread of the main process would hold the locks it takes
(the broker connection pool's, the metric values') at that moment in the new process too, which then blocks forever
on its first use of them (redis-py's after-fork pool reset did, with every task it was handed).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery import signals
from kombu.exceptions import ChannelError
from prometheus_client import make_wsgi_app
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


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        """Scrapes are not logged (the base class writes every request to stderr)."""


def metrics_bind(app, *, address: str, port: int) -> WSGIServer:
    """The listener, bound in this process (a port in use fails here, at the worker's start) but not serving yet;
    ``server_port`` is the bound port."""
    registry = metrics.scrape_registry(metrics.BuildInfo("worker"), QueueDepthCollector(app))
    return make_server(address, port, make_wsgi_app(registry), _Server, handler_class=_QuietHandler)


def metrics_serve_forked(server: WSGIServer) -> int:
    """Serve ``server`` from a forked process that lives as long as this one; returns its PID.

    Call it while this process runs no other thread (a fork copies only the calling thread, with every lock as it
    was). The listener process exits within a second of this process's end, however that comes.
    """
    parent = os.getpid()
    pid = os.fork()
    if pid:
        server.socket.close()  # the listener process owns it now
        return pid
    try:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_DFL)  # not the worker's shutdown handlers
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        while os.getppid() == parent:
            time.sleep(1)
    finally:
        os._exit(0)


_listener: dict[str, int] = {}


@signals.worker_init.connect
def _worker_init(sender=None, **_):
    """Main worker process, before the pool forks: forget an earlier run's values, start the listener process."""
    port = os.environ.get(PORT_ENV, "").strip()
    if not port:
        return
    if not metrics.multiprocess_enabled():
        log.warning("%s is set without PROMETHEUS_MULTIPROC_DIR: tasks run in forked processes and their metrics "
                    "will be missing", PORT_ENV)
    metrics.multiprocess_dir_reset(keep_pids=[os.getpid()])
    server = metrics_bind(sender.app, address=os.environ.get(ADDRESS_ENV, "0.0.0.0"), port=int(port))
    bound = server.server_port
    _listener["pid"] = metrics_serve_forked(server)
    log.info("worker metrics on port %d", bound)


@signals.worker_shutdown.connect
def _worker_shutdown(**_):
    """Stop the listener process with the worker rather than a second later."""
    pid = _listener.pop("pid", None)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass  # already gone (and reaped)


@signals.worker_process_shutdown.connect
def _pool_process_exit(pid=None, **_):
    metrics.multiprocess_process_dead(pid or os.getpid())
