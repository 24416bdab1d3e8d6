"""The whole system in one lab, for end-to-end tests (one of each, shared by the tests of this package):

* a real control plane of its own (etcd + kube-apiserver + kube-controller-manager, ``tests/lab``) with the chart's
  CRDs (the Spiderpool kinds and Multus' NetworkAttachmentDefinition);
* the portal under gunicorn over HTTPS on the e2e test database: the admission webhooks for the API server and
  the internal API for the agents (one server, one CA);
* the mirror: a Celery worker with embedded beat (status batches every second) on a private Redis database and
  the ``k8s_watch`` watcher, so pool status and SpiderEndpoints reach the API server as in production;
* the two-node netns lab (``tests/netlab/topology.py``) and one agent per node in **kubernetes** mode, whose
  kubeconfig is a client certificate bound only to the Helm chart's agent ClusterRole (RBAC exercised);
* a NetworkAttachmentDefinition ``kube-system/macvlan-underlay`` (macvlan + spiderpool + coordinator) and the
  fake kubelet (``fake_kubelet.py``) running the real Multus thin plugin with it as the cluster network.

Skipped without root or without the lab binaries (unless ``SPIDERWEB_REQUIRE_LAB`` is set, as in ``tests/lab``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from kubernetes import client as k8s

from spiderweb.k8s.client import api_client
from tests.e2e.fake_kubelet import FakeKubelet
from tests.e2e.stack import (
    NODES,
    AgentProcess,
    PortalProcess,
    WebhookProcess,
    agent_identity,
    cluster_rows_create,
    cni_bin_dirs,
    crds_apply,
    kubelet_start,
    spider_coordinator_apply,
    watcher_process,
    worker_process,
)
from tests.e2e.stack import lab_env as stack_lab_env
from tests.lab.controlplane import ControlPlane, ensure_built, find_bin_dir
from tests.netlab.topology import Topology

E2E_REDIS_DB = os.environ.get("SPIDERWEB_TEST_E2E_REDIS_DB", "14")


# --------------------------------------------------------------------------------------------- database


@pytest.fixture(scope="package")
def django_db_setup(django_test_environment, django_db_blocker):
    """The e2e test database (``test_<name>_e2e``, so other suites running at the same time don't clash), made
    for this package whatever the tests' marks: they carry no ``django_db`` mark because other processes write
    to this database, so there is no per-test transaction or flush. Dropped after the package's last test (and
    the connection goes back to the suite's own test database, if another package made one)."""
    from django.conf import settings
    from django.test.utils import setup_databases, teardown_databases

    db = settings.DATABASES["default"]
    name = db["NAME"] if db["NAME"].startswith("test_") else f"test_{db['NAME']}"
    db.setdefault("TEST", {})["NAME"] = name if name.endswith("_e2e") else f"{name}_e2e"
    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, aliases={"default"}, serialized_aliases=set())
    yield
    with django_db_blocker.unblock():
        teardown_databases(config, verbosity=0)


@pytest.fixture(autouse=True)
def _db_open(django_db_blocker):
    """The e2e tests read the shared test database directly (no per-test transaction: other processes write)."""
    with django_db_blocker.unblock():
        yield


# --------------------------------------------------------------------------------------------- host


@pytest.fixture(scope="package")
def e2e_host():
    """Root and iproute2; skip otherwise."""
    if os.geteuid() != 0:
        pytest.skip("the e2e lab needs root (network namespaces, veth, macvlan, bind mounts)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip`) is not installed")


@pytest.fixture(scope="package")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@dataclass
class Lab:
    plane: ControlPlane
    api: k8s.ApiClient
    custom: k8s.CustomObjectsApi


@pytest.fixture(scope="package")
def lab(e2e_host, tmp_path_factory):
    """A control plane of our own (not shared with tests/mirror) with the chart's CRDs applied and established."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if not os.environ.get("SPIDERWEB_REQUIRE_LAB"):
            pytest.skip("lab binaries not built (run `make lab-build`, or set SPIDERWEB_REQUIRE_LAB=1)")
        bin_dir = ensure_built()
    for binary in ("multus", "macvlan"):
        if not (bin_dir / binary).exists():
            pytest.skip(f"{binary} is missing from the lab build {bin_dir} (run `make lab-build`)")
    with ControlPlane(tmp_path_factory.mktemp("e2e-plane"), bin_dir) as plane:
        api = api_client(str(plane.kubeconfig))
        crds_apply(api)
        yield Lab(plane=plane, api=api, custom=k8s.CustomObjectsApi(api))
        api.close()


@pytest.fixture(scope="package")
def lab_env(lab, django_db_setup):
    """Environment for the portal, worker and watcher: the e2e test database, the lab, a private Redis database."""
    from django.conf import settings
    from django.db import connection

    s = connection.settings_dict
    broker = urlsplit(settings.CELERY_BROKER_URL)
    if broker.scheme != "redis":
        pytest.skip("the e2e lab needs a Redis broker (CELERY_BROKER_URL=redis://...)")
    return stack_lab_env(
        database_url=f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}",
        kubeconfig=lab.plane.kubeconfig,
        broker_url=urlunsplit((broker.scheme, broker.netloc, f"/{E2E_REDIS_DB}", "", "")))


# --------------------------------------------------------------------------------------------- portal + mirror


@pytest.fixture(scope="package")
def portal(lab, lab_env, workdir):
    """The portal under gunicorn over HTTPS, registered as the CRDs' admission webhooks (as in tests/mirror)."""
    portal = PortalProcess(workdir, lab_env)
    webhooks = WebhookProcess(workdir, lab_env, portal=portal, plane=lab.plane)
    try:
        portal.start()
        webhooks.start()
        portal.register_webhooks(lab.api, webhooks.url)
        yield portal
    finally:
        portal.unregister_webhooks(lab.api)
        webhooks.stop()
        portal.stop()


@pytest.fixture(scope="package")
def mirror(portal, lab_env, workdir):
    """A Celery worker (solo pool, embedded beat for the status batches) and the CRD watcher, as processes."""
    redis.Redis.from_url(lab_env["CELERY_BROKER_URL"]).flushdb()
    worker = worker_process(workdir, lab_env).start()
    watcher = watcher_process(workdir, lab_env).start()
    yield {"worker": worker.log, "watcher": watcher.log}
    watcher.stop()
    worker.stop()


# --------------------------------------------------------------------------------------------- nodes


@pytest.fixture(scope="package")
def agent_kubeconfig(lab) -> Path:
    """A client certificate for CN=spiderweb-agent, bound to the chart's agent ClusterRole and nothing else."""
    return agent_identity(lab.plane, lab.api)


@pytest.fixture(scope="package")
def topology(e2e_host):
    topo = Topology().build(node_names=NODES)
    yield topo
    topo.teardown()
    assert topo.leftovers() == []


@pytest.fixture(scope="package")
def cni_bin(workdir, lab) -> list[str]:
    """Our CNI executables (as a node's /opt/cni/bin), then the lab's reference plugins (macvlan, ...)."""
    return cni_bin_dirs(workdir, lab.plane.bin_dir)


@pytest.fixture(scope="package")
def cluster_rows(django_db_setup, django_db_blocker):
    """What the portal holds before any node starts: the coordinator defaults and one credential per node."""
    with django_db_blocker.unblock():
        return cluster_rows_create(NODES)


@pytest.fixture(scope="package")
def spider_coordinator(lab, mirror, cluster_rows, django_db_blocker):
    """The default SpiderCoordinator, applied to the API server and synced by its controller (see
    :func:`tests.e2e.stack.spider_coordinator_apply`)."""
    with django_db_blocker.unblock():
        return spider_coordinator_apply(lab.plane, lab.api)


@pytest.fixture(scope="package")
def agents(topology, portal, mirror, cluster_rows, spider_coordinator, agent_kubeconfig, workdir):
    started = {}
    try:
        for name, node in topology.nodes.items():
            started[name] = AgentProcess(node, portal=portal, token=cluster_rows[name], kubeconfig=agent_kubeconfig,
                                         run_dir=workdir / name / "run", log=workdir / f"agent-{name}.log").start()
        yield started
    finally:
        for agent in started.values():
            assert agent.stop() == 0, agent.log_tail()


@pytest.fixture(scope="package")
def kubelet(lab, topology, agents, cni_bin, workdir):
    """The NAD, then the fake kubelet for both nodes, Multus as its CNI entry point."""
    kubelet = kubelet_start(lab.plane, lab.api, topology, workdir, cni_bin)
    yield kubelet
    kubelet.stop()


@dataclass
class E2E:
    lab: Lab
    api: k8s.ApiClient
    core: k8s.CoreV1Api
    apps: k8s.AppsV1Api
    custom: k8s.CustomObjectsApi
    kubelet: FakeKubelet
    topology: Topology
    workdir: Path
    agent_kubeconfig: Path


@pytest.fixture(scope="package")
def e2e(lab, kubelet, topology, workdir, agent_kubeconfig):
    return E2E(lab=lab, api=lab.api, core=k8s.CoreV1Api(lab.api), apps=k8s.AppsV1Api(lab.api), custom=lab.custom,
               kubelet=kubelet, topology=topology, workdir=workdir, agent_kubeconfig=agent_kubeconfig)
