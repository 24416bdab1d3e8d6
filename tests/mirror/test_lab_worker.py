"""The whole loop with real processes: a Celery worker on Redis, the ``k8s_watch`` command and the HTTPS portal.

kubectl-style create → webhook writes the row → watcher enqueues ``mirror_in`` → the worker records the CRD's
resourceVersion. A portal edit in another process enqueues ``mirror_out`` on commit → the worker updates the CRD.
The watcher stops cleanly on SIGTERM, resumes from its stored resourceVersion (no relist), and relists after a
real 410 Gone (a cursor the API server no longer serves), which also finishes a deletion made while it was down.
"""

import sys

import pytest
import redis
from kubernetes.client.exceptions import ApiException

from spiderweb.controllers.models import WatchCursor
from spiderweb.ipam.models import IPPool
from spiderweb.k8s.crd import GROUP, VERSION

from .lab import REPO, VENV_BIN, crs_delete_all, spawn, stop_process, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
POOLS = "spiderippools"


@pytest.fixture
def lab(mirror_lab, webhook_portal, transactional_db):
    yield mirror_lab
    crs_delete_all(mirror_lab)


@pytest.fixture
def worker(lab_env, tmp_path):
    """A real Celery worker (solo pool, one process) on the test's private Redis database."""
    redis.Redis.from_url(lab_env["CELERY_BROKER_URL"]).flushdb()
    log = tmp_path / "worker.log"
    process = spawn([str(VENV_BIN / "celery"), "-A", "workers.celery", "worker", "--pool=solo", "--loglevel=INFO",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"], lab_env, log)
    yield log
    stop_process(process)


def _watcher(lab_env, log):
    return spawn([sys.executable, str(REPO / "manage.py"), "k8s_watch", "--kinds=SpiderIPPool", "--watch-timeout=5",
                  "--lease-ttl=6"], lab_env, log)


def _create(lab, name, subnet, ips):
    return lab.custom.create_cluster_custom_object(GROUP, VERSION, POOLS, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": name},
        "spec": {"subnet": subnet, "ips": ips}})


def _rv_recorded(lab, name):
    """mirror_in (run by the worker) is the only writer of a row's k8s_resource_version."""
    row = IPPool.objects.filter(name=name).first()
    obj = lab.custom.get_cluster_custom_object(GROUP, VERSION, POOLS, name)
    return row is not None and row.k8s_resource_version == obj["metadata"]["resourceVersion"]


def _cursor():
    return WatchCursor.objects.filter(kind="SpiderIPPool").first()


def test_watcher_worker_and_portal_edit_end_to_end(lab, lab_env, worker, tmp_path):
    watch_log = tmp_path / "watch.log"
    watcher = _watcher(lab_env, watch_log)
    try:
        wait_for("the watcher's first list", lambda: _cursor() and _cursor().relisted_at, timeout=60)
        first_list = _cursor().relisted_at
        _create(lab, "w1", "10.80.0.0/24", ["10.80.0.10-10.80.0.20"])
        wait_for("mirror_in of w1 through the worker", lambda: _rv_recorded(lab, "w1"), timeout=60)

        # A portal edit in another process: enqueued on commit, pushed by the worker.
        edit = ("from spiderweb.ipam import services; from spiderweb.ipam.models import IPPool; "
                "services.ippool_update(pool=IPPool.objects.get(name='w1'), spec={'node_name': ['n9']})")
        assert spawn([sys.executable, str(REPO / "manage.py"), "shell", "-c", edit], lab_env,
                     tmp_path / "edit.log").wait(60) == 0, (tmp_path / "edit.log").read_text()
        wait_for("mirror_out of the portal edit", lambda: lab.custom.get_cluster_custom_object(
            GROUP, VERSION, POOLS, "w1")["spec"].get("nodeName") == ["n9"], timeout=60)

        assert stop_process(watcher) == 0, watch_log.read_text()[-2000:]
        stored = _cursor().resource_version
        assert stored

        # Created while the watcher is down: found on restart from the stored cursor, without a relist.
        _create(lab, "w2", "10.81.0.0/24", ["10.81.0.10"])
        watcher = _watcher(lab_env, watch_log)
        wait_for("w2 after the restart", lambda: _rv_recorded(lab, "w2"), timeout=60)
        assert _cursor().relisted_at == first_list, "resumed from the stored resourceVersion"
        assert stop_process(watcher) == 0

        # A cursor the API server no longer serves (410 Gone) → relist; it also finishes a deletion made meanwhile.
        WatchCursor.objects.filter(kind="SpiderIPPool").update(resource_version="1")
        lab.custom.delete_cluster_custom_object(GROUP, VERSION, POOLS, "w2")
        assert IPPool.objects.get(name="w2").terminating, "the DELETE webhook marked it"
        watcher = _watcher(lab_env, watch_log)
        wait_for("a relist after 410 Gone", lambda: _cursor().relisted_at != first_list, timeout=60)
        wait_for("w2 gone from the database", lambda: not IPPool.objects.filter(name="w2").exists(), timeout=60)

        def crd_gone():
            try:
                lab.custom.get_cluster_custom_object(GROUP, VERSION, POOLS, "w2")
            except ApiException as exc:
                return exc.status == 404
            return False

        wait_for("w2's finalizer released", crd_gone, timeout=30)
        assert "relisting" in watch_log.read_text()
    finally:
        assert stop_process(watcher) == 0, watch_log.read_text()[-2000:]
