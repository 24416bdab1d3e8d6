"""The workers' metrics from a real prefork Celery worker: task runs by controller and outcome, their durations, the
IP GC's Spiderpool counters after a full scan asked for with ``spiderweb gc`` (CLI → portal → broker → worker →
the lab's API server), and the broker's queue depth."""

from __future__ import annotations

import json
import os
import signal

import pytest
from celery import Celery
from knox.models import AuthToken

from spiderweb.cli.commands import main as cli
from spiderweb.ipam import allocation
from spiderweb.ipam.allocation import AllocateRequest
from spiderweb.ipam.models import Allocation
from tests import live
from tests.ipam import factories as f
from tests.mirror.lab import wait_for
from workers.metrics import QueueDepthCollector, controller_of

WORKER_TYPES = {
    "spiderweb_controller_reconciles": "counter",
    "spiderweb_controller_reconcile_duration_seconds": "histogram",
    "spiderpool_ip_gc_counts": "counter",
    "spiderweb_gc_released_ips": "counter",
    "spiderweb_gc_scans": "counter",
    "spiderweb_gc_scan_duration_seconds": "histogram",
    "spiderweb_celery_queue_depth": "gauge",
    "spiderweb_celery_broker_up": "gauge",
    "spiderweb_build_info": "gauge",
}


def test_controller_label_is_the_tasks_module():
    assert controller_of("workers.gc.gc_scan_task") == "gc"
    assert controller_of("workers.mirror.mirror_status_task") == "mirror"
    assert controller_of("celery.backend_cleanup") == "other"


@pytest.mark.lab
def test_worker_counts_runs_and_a_scan_asked_for_by_the_cli_releases_a_leak(transactional_db, mirror_lab, tmp_path,
                                                                             staff, capsys):
    # Given an address held by a pod that does not exist in Kubernetes (a leak)
    f.pool("leaky", "10.61.0.0/24", ["10.61.0.10-10.61.0.20"])
    ghost = f.facts("ghost", namespace="ops-nowhere",
                    annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["leaky"]})})
    allocation.ippool_allocate(request=AllocateRequest(facts=ghost, if_name="eth0"))
    token = AuthToken.objects.create(user=staff)[1]
    # And a worker and the portal, both pointed at the lab
    env = live.live_env(KUBECONFIG=str(mirror_lab.plane.kubeconfig))
    (tmp_path / "worker").mkdir()
    (tmp_path / "portal").mkdir()
    worker = live.worker_start(tmp_path / "worker", env)
    portal = live.portal_start(tmp_path / "portal", env)
    try:
        # When tasks run: two that succeed and one that fails
        sender = Celery("test-sender")
        sender.conf.broker_write_url = env["CELERY_BROKER_URL"]  # CELERY_BROKER_URL in os.environ beats broker_url
        for _ in range(2):
            sender.send_task("workers.tasks.verify_allocation_integrity_task")
        sender.send_task("workers.gc.gc_release_pod_task", args=[])  # missing argument: a failure, not a retry
        # And an operator asks for a full GC scan
        assert cli(["gc", "--portal", portal.url, "--token", token]) == 0
        assert "full GC scan queued" in capsys.readouterr().out

        seen = {}

        def scanned():
            scraped = live.scrape(f"{worker.url}/metrics")
            for key, name, labels in (("done", "spiderweb_gc_scans_total", {"result": "done"}),
                                      ("runs", "spiderweb_controller_reconciles_total",
                                       {"controller": "tasks", "outcome": "success"}),
                                      ("failed", "spiderweb_controller_reconciles_total", {"outcome": "failure"})):
                try:
                    seen[key] = scraped.value(name, **labels)
                except AssertionError:
                    seen[key] = None
            return scraped if seen == {"done": 1, "runs": 2, "failed": 1} else None

        try:
            scraped = wait_for("the worker to run the tasks and the scan", scanned, timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last scrape {seen}; worker log:\n{worker.log_tail()}") from None
        # Then the scan released the leak and counted it under Spiderpool's name and ours
        assert not Allocation.objects.filter(address="10.61.0.10").exists()
        assert scraped.value("spiderpool_ip_gc_counts_total") == 1
        assert scraped.value("spiderweb_gc_released_ips_total", path="scan") == 1
        assert scraped.value("spiderweb_controller_reconciles_total", controller="gc", task="workers.gc.gc_scan_task",
                             outcome="success") == 1
        assert scraped.value("spiderweb_controller_reconcile_duration_seconds_count",
                             task="workers.tasks.verify_allocation_integrity_task") == 2
        assert scraped.value("spiderweb_celery_broker_up") == 1
        assert scraped.value("spiderweb_celery_queue_depth", queue="celery") == 0
        assert scraped.value("spiderweb_build_info", component="worker") == 1
        for name, kind in WORKER_TYPES.items():
            assert scraped.type_of(name) == kind, name
        # And the portal saw the CLI's request
        assert live.scrape(f"{portal.url}/metrics").value("spiderpool_total_ippool_counts") == 1
    finally:
        live.stop(portal)
        live.stop(worker)


def test_the_worker_forks_its_pool_from_a_process_without_threads_and_its_listener_ends_with_it(transactional_db,
                                                                                                   tmp_path):
    # Given a prefork worker serving its metrics
    worker = live.worker_start(tmp_path, live.live_env())
    try:
        # Then its main process, which forks a pool process whenever one exits, runs no thread but its own: a scrape
        # served by a thread there would leave the locks it holds locked in the forked process (a pool process that
        # then never ran a task)
        assert os.listdir(f"/proc/{worker.process.pid}/task") == [str(worker.process.pid)]
        assert live.http_ok(f"{worker.url}/metrics")
        # And when the worker dies without a word, its listener goes too
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)
        wait_for("the listener to end with the worker", lambda: not live.http_ok(f"{worker.url}/metrics"), timeout=10)
    finally:
        live.stop(worker)


def test_queue_depth_is_read_from_the_broker_when_scraped(settings):
    # Given three messages waiting in a queue of a Redis database nobody consumes
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("needs the Redis broker")
    url = settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + "/13"
    app = Celery("depth-test")
    app.conf.broker_read_url = app.conf.broker_write_url = url  # CELERY_BROKER_URL in os.environ beats broker_url
    app.conf.task_default_queue = "depth-test"
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("depth-test")
    for _ in range(3):
        app.send_task("workers.tasks.verify_allocation_integrity_task")
    # When the collector is scraped
    families = {family.name: family for family in QueueDepthCollector(app).collect()}
    # Then it reports them, and the broker as up
    assert [(s.labels, s.value) for s in families["spiderweb_celery_queue_depth"].samples] == [
        ({"queue": "depth-test"}, 3)]
    assert families["spiderweb_celery_broker_up"].samples[0].value == 1
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("depth-test")
    # And a broker that cannot be reached is a 0, not a failed scrape
    down = Celery("down")
    down.conf.broker_read_url = "redis://127.0.0.1:1/0"
    down.conf.broker_connection_retry = False
    down.conf.broker_connection_max_retries = 0
    families = {family.name: family for family in QueueDepthCollector(down).collect()}
    assert families["spiderweb_celery_broker_up"].samples[0].value == 0
