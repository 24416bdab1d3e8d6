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

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spiderweb.k8s.client import api_client
from spiderweb.k8s.crd import GROUP, KINDS, VERSION
from spiderweb.k8s.tls import webhook_certificate_write
from tests.e2e.fake_kubelet import FakeKubelet, KubeletNode
from tests.lab.controlplane import ControlPlane, ensure_built, find_bin_dir, free_port
from tests.mirror.lab import CRD_DIR, REPO, VENV_BIN, _webhook, spawn, stop_process, wait_for
from tests.netlab.topology import Topology

NODES = ("node-a", "node-b")
NAD_NAMESPACE, NAD_NAME = "kube-system", "macvlan-underlay"
AGENT_USER = "spiderweb-agent"
E2E_REDIS_DB = os.environ.get("SPIDERWEB_TEST_E2E_REDIS_DB", "14")
RBAC_TEMPLATE = REPO / "helm" / "spiderweb" / "templates" / "rbac.yaml"


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
        extensions = k8s.ApiextensionsV1Api(api)
        names = []
        for path in sorted(CRD_DIR.glob("*.yaml")):
            body = yaml.safe_load(path.read_text())
            extensions.create_custom_resource_definition(body)
            names.append(body["metadata"]["name"])

        def established():
            return all(any(c.type == "Established" and c.status == "True"
                           for c in extensions.read_custom_resource_definition(name).status.conditions or [])
                       for name in names)

        wait_for("CRDs established", established)
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
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "KUBECONFIG": str(lab.plane.kubeconfig),
        "CELERY_BROKER_URL": urlunsplit((broker.scheme, broker.netloc, f"/{E2E_REDIS_DB}", "", "")),
        "SPIDERWEB_MIRROR_ENABLED": "true",
        "SPIDERWEB_MIRROR_STATUS_INTERVAL": "1",
        "SPIDERWEB_MIRROR_RESYNC_INTERVAL": "10",
        "SPIDERWEB_DB_CONN_MAX_AGE": "0",
        "PYTHONPATH": str(REPO),
    }


# --------------------------------------------------------------------------------------------- portal + mirror


@dataclass
class Portal:
    url: str
    ca_path: Path
    process: subprocess.Popen
    log: Path


@pytest.fixture(scope="package")
def portal(lab, lab_env, workdir):
    """The portal under gunicorn over HTTPS, registered as the CRDs' admission webhooks (as in tests/mirror)."""
    cert = webhook_certificate_write(workdir / "portal-tls", dns_names=["localhost"], ip_addresses=["127.0.0.1"],
                                     days=1)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    log = workdir / "gunicorn.log"
    process = spawn([str(VENV_BIN / "gunicorn"), "spiderweb.wsgi:application", f"--bind=127.0.0.1:{port}",
                     f"--certfile={cert.cert_path}", f"--keyfile={cert.key_path}", "--workers=2", "--threads=4",
                     "--timeout=60", "--no-control-socket", f"--chdir={REPO}"], lab_env, log)
    context = ssl.create_default_context(cafile=str(cert.ca_path))
    # The admission webhooks get their own listener, as in the chart: it requires the API server's client
    # certificate (mutual TLS); the agents keep using `url`.
    webhook_port = free_port()
    webhook_url = f"https://127.0.0.1:{webhook_port}"
    webhook_process = spawn(
        [str(VENV_BIN / "gunicorn"), "spiderweb.wsgi:application", f"--bind=127.0.0.1:{webhook_port}",
         f"--certfile={cert.cert_path}", f"--keyfile={cert.key_path}", "--workers=1", "--threads=4", "--timeout=60",
         "--no-control-socket", f"--chdir={REPO}", f"--ca-certs={lab.plane.webhook_client_ca_path}",
         f"--cert-reqs={int(ssl.CERT_REQUIRED)}"], lab_env, workdir / "gunicorn-webhook.log")
    webhook_context = ssl.create_default_context(cafile=str(cert.ca_path))
    webhook_context.load_cert_chain(lab.plane.webhook_client_cert_path, lab.plane.webhook_client_key_path)

    def healthy():
        for server, server_url, server_context in ((process, url, context),
                                                   (webhook_process, webhook_url, webhook_context)):
            if server.poll() is not None:
                raise AssertionError(f"gunicorn exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{server_url}/webhook-health-check", context=server_context,
                                            timeout=2) as response:
                    if response.status != 200:
                        return False
            except OSError:
                return False
        return True

    registration = k8s.AdmissionregistrationV1Api(lab.api)
    kinds = sorted({k.webhook_name for k in KINDS.values()} - {"spiderendpoint"})
    try:
        wait_for("the portal", healthy, timeout=60)
        for mode, create in (("mutate", registration.create_mutating_webhook_configuration),
                             ("validate", registration.create_validating_webhook_configuration)):
            kind = "MutatingWebhookConfiguration" if mode == "mutate" else "ValidatingWebhookConfiguration"
            create({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                    "metadata": {"name": "spiderweb-e2e"},
                    "webhooks": [_webhook(k, mode, webhook_url, cert.ca_bundle) for k in kinds]})

        def webhooks_active():
            probe = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": "probe"},
                     "spec": {"subnet": "10.255.0.0/24", "ips": ["10.254.0.1"]}}
            try:
                lab.custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", probe, dry_run="All")
            except ApiException as exc:
                return "is outside subnet" in (exc.body or "")
            return False

        wait_for("the API server to call the webhooks", webhooks_active, timeout=30)
        yield Portal(url=url, ca_path=Path(cert.ca_path), process=process, log=log)
    finally:
        for delete in (registration.delete_mutating_webhook_configuration,
                       registration.delete_validating_webhook_configuration):
            try:
                delete("spiderweb-e2e")
            except ApiException:
                pass
        stop_process(webhook_process)
        stop_process(process)


@pytest.fixture(scope="package")
def mirror(portal, lab_env, workdir):
    """A Celery worker (solo pool, embedded beat for the status batches) and the CRD watcher, as processes."""
    redis.Redis.from_url(lab_env["CELERY_BROKER_URL"]).flushdb()
    worker = spawn([str(VENV_BIN / "celery"), "-A", "workers.celery", "worker", "--pool=solo", "--beat",
                    f"--schedule={workdir / 'celerybeat-schedule'}", "--loglevel=INFO", "--without-gossip",
                    "--without-mingle", "--without-heartbeat"], lab_env, workdir / "worker.log")
    watcher = spawn([sys.executable, str(REPO / "manage.py"), "k8s_watch", "--watch-timeout=10", "--lease-ttl=15"],
                    lab_env, workdir / "watch.log")
    yield {"worker": workdir / "worker.log", "watcher": workdir / "watch.log"}
    stop_process(watcher)
    stop_process(worker)


# --------------------------------------------------------------------------------------------- nodes


def chart_agent_rules() -> list[dict]:
    """The rules of the Helm chart's agent ClusterRole, read from the template (they hold no template code)."""
    for doc in RBAC_TEMPLATE.read_text().split("\n---\n"):
        if "kind: ClusterRole\n" in doc and "name: {{ $agent }}" in doc:
            return yaml.safe_load(doc[doc.index("\nrules:") + 1:])["rules"]
    raise AssertionError(f"no agent ClusterRole in {RBAC_TEMPLATE}")


@pytest.fixture(scope="package")
def agent_kubeconfig(lab) -> Path:
    """A client certificate for CN=spiderweb-agent, bound to the chart's agent ClusterRole and nothing else."""
    rbac = k8s.RbacAuthorizationV1Api(lab.api)
    rbac.create_cluster_role({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                              "metadata": {"name": AGENT_USER}, "rules": chart_agent_rules()})
    rbac.create_cluster_role_binding({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": AGENT_USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AGENT_USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": AGENT_USER}]})
    return lab.plane.issue_client_kubeconfig(AGENT_USER)


@pytest.fixture(scope="package")
def topology(e2e_host):
    topo = Topology().build(node_names=NODES)
    yield topo
    topo.teardown()
    assert topo.leftovers() == []


@pytest.fixture(scope="package")
def cni_bin(workdir, lab) -> list[str]:
    """Our CNI executables (as a node's /opt/cni/bin), then the lab's reference plugins (macvlan, ...)."""
    from cni.package import build

    directory = workdir / "cni-bin"
    build(directory)
    return [str(directory), str(lab.plane.bin_dir)]


@pytest.fixture(scope="package")
def cluster_rows(django_db_setup, django_db_blocker):
    """What the portal holds before any node starts: the coordinator defaults and one credential per node."""
    from spiderweb.ipam import services
    from spiderweb.ipam.models import Coordinator
    from spiderweb.tenancy.models import Tenant

    with django_db_blocker.unblock():
        tenant, _ = Tenant.objects.get_or_create(name="default")
        Coordinator.objects.create(name="default", tenant=tenant, mode="auto", pod_cidr_type="none",
                                   service_cidr=["10.96.0.0/12"], hijack_cidr=["169.254.0.0/16"], phase="Synced")
        return {name: services.node_credential_issue(node_name=name)[1] for name in NODES}


class AgentProcess:
    """``python -m agent`` for one node in kubernetes mode: pod facts from the API server with its own identity."""

    def __init__(self, node, *, portal: Portal, token: str, kubeconfig: Path, run_dir: Path, log: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.socket = str(run_dir / "spiderpool.sock")
        self.log = log
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "SPIDERWEB_NODE_NAME": node.name,
            "SPIDERWEB_PORTAL_URL": portal.url,
            "SPIDERWEB_PORTAL_CA_FILE": str(portal.ca_path),
            "SPIDERWEB_NODE_TOKEN": token,
            "SPIDERWEB_AGENT_MODE": "kubernetes",
            "KUBECONFIG": str(kubeconfig),
            "MULTUS_CLUSTER_NETWORK": f"{NAD_NAMESPACE}/{NAD_NAME}",
            "SPIDERWEB_NAMESPACE": NAD_NAMESPACE,
            "SPIDERWEB_AGENT_SOCKET": self.socket,
            "SPIDERWEB_AGENT_HEALTH_PORT": str(free_port()),
            "SPIDERWEB_AGENT_METRICS_PORT": "0",
            "SPIDERWEB_CNI_BIN_DIR": "",
            "SPIDERWEB_AGENT_HOST_NETNS": node.netns_path,
            "SPIDERWEB_AGENT_LOG_LEVEL": "info",
        }
        self.process = spawn([sys.executable, "-m", "agent"], env, log)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.socket):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent for {node.name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        assert stop_process(self.process) == 0, self.log.read_text()[-3000:]


@pytest.fixture(scope="package")
def agents(topology, portal, mirror, cluster_rows, agent_kubeconfig, workdir):
    started = {}
    try:
        for name, node in topology.nodes.items():
            started[name] = AgentProcess(node, portal=portal, token=cluster_rows[name], kubeconfig=agent_kubeconfig,
                                         run_dir=workdir / name / "run", log=workdir / f"agent-{name}.log")
        yield started
    finally:
        for agent in started.values():
            agent.stop()


def underlay_conflist(socket_path: str) -> dict:
    """The NetworkAttachmentDefinition's config: macvlan on the node's eth0, our IPAM, the coordinator chained."""
    return {"cniVersion": "1.0.0", "name": NAD_NAME, "plugins": [
        {"type": "macvlan", "master": "eth0", "mode": "bridge",
         "ipam": {"type": "spiderpool", "ipam_unix_socket_path": socket_path}},
        {"type": "coordinator", "unix_socket_path": socket_path},
    ]}


@pytest.fixture(scope="package")
def kubelet(lab, topology, agents, cni_bin, workdir):
    """The NAD, then the fake kubelet for both nodes, Multus as its CNI entry point."""
    shared_run = workdir / "run"  # the path every node's plugins use; each node sees its own agent there
    shared_run.mkdir()
    lab.custom.create_namespaced_custom_object("k8s.cni.cncf.io", "v1", NAD_NAMESPACE,
                                               "network-attachment-definitions", {
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": NAD_NAME, "namespace": NAD_NAMESPACE},
        "spec": {"config": json.dumps(underlay_conflist(str(shared_run / "spiderpool.sock")))}})
    nodes = []
    for name, node in topology.nodes.items():
        node_dir = workdir / name
        nodes.append(KubeletNode(name=name, netns=node.netns, ip=node.ipv4, run_dir=node_dir / "run", multus_conf={
            "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
            "kubeconfig": str(lab.plane.kubeconfig), "clusterNetwork": NAD_NAME, "multusNamespace": NAD_NAMESPACE,
            "cniDir": str(node_dir / "multus-cache"), "confDir": str(node_dir / "net.d"), "binDir": cni_bin[0],
            "logToStderr": True, "logLevel": "verbose"}))
    api_port = int(urlsplit(lab.plane.server).port)
    kubelet = FakeKubelet(lab.api, topology, nodes, multus_bin=str(lab.plane.bin_dir / "multus"), cni_path=cni_bin,
                          shared_run_dir=shared_run, api_port=api_port).start()
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
