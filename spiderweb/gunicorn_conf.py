"""gunicorn settings the portal needs for its metrics: ``gunicorn -c python:spiderweb.gunicorn_conf ...``.

With ``PROMETHEUS_MULTIPROC_DIR`` set, each gunicorn worker writes its metric values to files in that directory
and ``/metrics`` merges them (``spiderweb.metrics``): the master clears an earlier run's files when it starts and
tells prometheus_client when a worker exits. Without the variable these hooks do nothing. Command-line options
still apply on top of this file.
"""

from spiderweb import metrics


def on_starting(server):
    metrics.multiprocess_dir_reset()


def child_exit(server, worker):
    metrics.multiprocess_process_dead(worker.pid)


# The node agents keep HTTP/1.1 connections to the portal open between pod starts (agent/portal.py), so a pod
# storm costs no TCP or TLS handshake per call. gunicorn's default sync worker closes every connection after one
# request; a threaded worker keeps them, and serves the concurrent ADDs of many nodes while others wait on the
# database. The agent drops a connection idle for 60 s (agent.portal.MAX_IDLE_SECONDS), before this timeout does.
worker_class = "gthread"
threads = 8
keepalive = 75
