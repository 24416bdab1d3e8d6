"""The e2e lab's parts as plain functions and restartable processes.

Shared by the package fixtures in ``conftest.py`` (one of each, for the whole package), the chaos run
(``tests/chaos``: every process here is SIGKILLed and restarted at random moments) and ``make bench-chaos``.
Nothing here is a pytest fixture, so a plain program can build the same lab.

* :func:`crds_apply`: the chart's CRDs on a control plane, established;
* :func:`lab_env`: the environment of the portal, the worker and the watcher;
* :class:`ServiceProcess`: one long-running process in its own process group; ``start``/``kill``/``restart``/
  ``pause``/``resume``/``stop``, output appended to one log across restarts;
* :class:`PortalProcess` (gunicorn over HTTPS, registered as the admission webhooks), :func:`worker_process`
  (Celery worker with embedded beat), :func:`watcher_process` (``manage.py k8s_watch``), :class:`AgentProcess`
  (``python -m agent`` for one node, kubernetes mode);
* :func:`agent_identity`, :func:`cluster_rows_create`, :func:`cni_bin_dirs`, :func:`kubelet_start`: the agent's
  least-privilege client certificate, the portal's rows for the nodes, our CNI executables, and the NAD plus the
  fake kubelet.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spiderweb.k8s.crd import GROUP, KINDS, VERSION
from spiderweb.k8s.tls import webhook_certificate_write
from tests.e2e.fake_kubelet import FakeKubelet, KubeletNode
from tests.lab.controlplane import CONTROL_PLANE_NODE, ControlPlane, free_port
from tests.mirror.lab import CRD_DIR, REPO, VENV_BIN, _webhook, spawn, stop_process, wait_for

NODES = ("node-a", "node-b")
NAD_NAMESPACE, NAD_NAME = "kube-system", "macvlan-underlay"
SPIDERPOOL_RUN_DIR = Path("/run/spidernet")  # /var/run/spidernet, where Spiderpool's plugins find the agent socket
AGENT_USER = "spiderweb-agent"
RBAC_TEMPLATE = REPO / "helm" / "spiderweb" / "templates" / "rbac.yaml"
WEBHOOK_CONFIG_NAME = "spiderweb-e2e"


# --------------------------------------------------------------------------------------------- control plane


def crds_apply(api: k8s.ApiClient, crd_dir: Path = CRD_DIR) -> None:
    """Create the CRDs in ``crd_dir`` (the Helm chart's by default) and wait until the API server serves them all."""
    extensions = k8s.ApiextensionsV1Api(api)
    names = []
    for path in sorted(crd_dir.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        extensions.create_custom_resource_definition(body)
        names.append(body["metadata"]["name"])

    def established():
        return all(any(c.type == "Established" and c.status == "True"
                       for c in extensions.read_custom_resource_definition(name).status.conditions or [])
                   for name in names)

    wait_for("CRDs established", established)


def lab_env(*, database_url: str, kubeconfig: Path, broker_url: str, extra: dict | None = None) -> dict:
    """Environment for the portal, worker and watcher: one database, the lab, one Redis database."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "KUBECONFIG": str(kubeconfig),
        "CELERY_BROKER_URL": broker_url,
        "SPIDERWEB_MIRROR_ENABLED": "true",
        "SPIDERWEB_MIRROR_STATUS_INTERVAL": "1",
        "SPIDERWEB_MIRROR_RESYNC_INTERVAL": "10",
        "PYTHONPATH": str(REPO),
        # the coordinator's status and the SpiderMultusConfigs' NADs come from their controllers (issue 9)
        "SPIDERPOOL_COORDINATOR_ENABLED": "true",
        "SPIDERPOOL_MULTUS_CONFIG_ENABLED": "true",
        **(extra or {}),
    }


# --------------------------------------------------------------------------------------------- processes


class ServiceProcess:
    """A long-running process in its own process group (so a signal reaches gunicorn's workers too).

    ``start()`` spawns it and waits until :meth:`ready` (default: at once); ``kill()`` sends SIGKILL to the group
    and reaps it, as an OOM kill or a node reboot would; ``restart()`` is kill then start. Output of every
    incarnation is appended to ``log``.
    """

    ready_timeout = 60.0

    def __init__(self, name: str, args: list[str], env: dict, log: Path):
        self.name, self.args, self.env, self.log = name, args, env, log
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> ServiceProcess:
        self.process = spawn(self.args, self.env, self.log)
        self.starts += 1
        deadline = time.monotonic() + self.ready_timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start (exit {self.process.poll()}):\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def ready(self) -> bool:
        return True

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL, no chance to clean up (its socket file, lease and in-flight requests stay as they were)."""
        if self.process is not None:
            self.signal(signal.SIGKILL)
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the process holds its sockets and connections but answers nothing (a stalled server)."""
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> int | None:
        """SIGTERM (SIGCONT first, in case it is paused), SIGKILL after a while; returns the exit code."""
        if self.process is None:
            return None
        self.resume()
        return stop_process(self.process)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class PortalProcess(ServiceProcess):
    """The portal under gunicorn as the chart runs it (its config module, its default worker count, persistent
    database connections), over HTTPS on a fixed loopback port (kept across restarts, as a Service is)."""

    def __init__(self, workdir: Path, env: dict, *, workers: int = 3):
        cert = webhook_certificate_write(workdir / "portal-tls", dns_names=["localhost"],
                                         ip_addresses=["127.0.0.1"], days=1)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.cert = cert
        self.ca_path = Path(cert.ca_path)
        self.ca_bundle = cert.ca_bundle
        self._context = ssl.create_default_context(cafile=str(cert.ca_path))
        super().__init__("portal", [
            str(VENV_BIN / "gunicorn"), "spiderweb.wsgi:application", "--config=python:spiderweb.gunicorn_conf",
            f"--bind=127.0.0.1:{self.port}",
            f"--certfile={cert.cert_path}", f"--keyfile={cert.key_path}", f"--workers={workers}",
            "--timeout=60", "--no-control-socket", f"--chdir={REPO}"], env,
            workdir / "gunicorn.log")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/webhook-health-check", context=self._context,
                                        timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def register_webhooks(self, api: k8s.ApiClient, url: str) -> None:
        """Register ``url`` (the :class:`WebhookProcess`) as the CRDs' admission webhooks and wait until the API server
        calls them."""
        registration = k8s.AdmissionregistrationV1Api(api)
        kinds = sorted({k.webhook_name for k in KINDS.values()} - {"spiderendpoint"})
        for mode, create in (("mutate", registration.create_mutating_webhook_configuration),
                             ("validate", registration.create_validating_webhook_configuration)):
            kind = "MutatingWebhookConfiguration" if mode == "mutate" else "ValidatingWebhookConfiguration"
            create({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                    "metadata": {"name": WEBHOOK_CONFIG_NAME},
                    "webhooks": [_webhook(k, mode, url, self.ca_bundle) for k in kinds]})
        custom = k8s.CustomObjectsApi(api)

        def webhooks_active():
            probe = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": "probe"},
                     "spec": {"subnet": "10.255.0.0/24", "ips": ["10.254.0.1"]}}
            try:
                custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", probe, dry_run="All")
            except ApiException as exc:
                return "is outside subnet" in (exc.body or "")
            return False

        wait_for("the API server to call the webhooks", webhooks_active, timeout=30)

    @staticmethod
    def unregister_webhooks(api: k8s.ApiClient) -> None:
        registration = k8s.AdmissionregistrationV1Api(api)
        for delete in (registration.delete_mutating_webhook_configuration,
                       registration.delete_validating_webhook_configuration):
            try:
                delete(WEBHOOK_CONFIG_NAME)
            except ApiException:
                pass


class WebhookProcess(ServiceProcess):
    """The admission webhooks' own listener, as in the chart: the portal's code and certificate, but it accepts only
    callers presenting the API server's client certificate (mutual TLS); the agents keep the portal's listener."""

    def __init__(self, workdir: Path, env: dict, *, portal: PortalProcess, plane: ControlPlane):
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._context = ssl.create_default_context(cafile=str(portal.ca_path))
        self._context.load_cert_chain(plane.webhook_client_cert_path, plane.webhook_client_key_path)
        super().__init__("webhook", [
            str(VENV_BIN / "gunicorn"), "spiderweb.wsgi:application", f"--bind=127.0.0.1:{self.port}",
            f"--certfile={portal.cert.cert_path}", f"--keyfile={portal.cert.key_path}", "--workers=1", "--threads=4",
            "--timeout=60", "--no-control-socket", f"--chdir={REPO}", f"--ca-certs={plane.webhook_client_ca_path}",
            f"--cert-reqs={int(ssl.CERT_REQUIRED)}"], env, workdir / "gunicorn-webhook.log")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/webhook-health-check", context=self._context,
                                        timeout=2) as response:
                return response.status == 200
        except OSError:
            return False


def worker_process(workdir: Path, env: dict) -> ServiceProcess:
    """A Celery worker (solo pool) with embedded beat; the beat schedule file survives restarts."""
    return ServiceProcess("worker", [
        str(VENV_BIN / "celery"), "-A", "workers.celery", "worker", "--pool=solo", "--beat",
        f"--schedule={workdir / 'celerybeat-schedule'}", "--loglevel=INFO", "--without-gossip", "--without-mingle",
        "--without-heartbeat"], env, workdir / "worker.log")


def watcher_process(workdir: Path, env: dict, *, lease_ttl: int = 15) -> ServiceProcess:
    """``manage.py k8s_watch``: a restarted watcher waits until its dead predecessor's lease has expired."""
    return ServiceProcess("watcher", [sys.executable, str(REPO / "manage.py"), "k8s_watch", "--watch-timeout=10",
                                      f"--lease-ttl={lease_ttl}"], env, workdir / "watch.log")


# --------------------------------------------------------------------------------------------- nodes


def chart_agent_rules() -> list[dict]:
    """The rules of the Helm chart's agent ClusterRole, read from the template (they hold no template code)."""
    for doc in RBAC_TEMPLATE.read_text().split("\n---\n"):
        if "kind: ClusterRole\n" in doc and "name: {{ $agent }}" in doc:
            return yaml.safe_load(doc[doc.index("\nrules:") + 1:])["rules"]
    raise AssertionError(f"no agent ClusterRole in {RBAC_TEMPLATE}")


def agent_identity(plane: ControlPlane, api: k8s.ApiClient) -> Path:
    """A client certificate for CN=spiderweb-agent, bound to the chart's agent ClusterRole and nothing else."""
    rbac = k8s.RbacAuthorizationV1Api(api)
    rbac.create_cluster_role({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                              "metadata": {"name": AGENT_USER}, "rules": chart_agent_rules()})
    rbac.create_cluster_role_binding({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": AGENT_USER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AGENT_USER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": AGENT_USER}]})
    return plane.issue_client_kubeconfig(AGENT_USER)


def cluster_rows_create(node_names) -> dict[str, str]:
    """What the portal holds before any node starts: one credential per node (the coordinator comes from a
    SpiderCoordinator, :func:`spider_coordinator_apply`). Returns each node's token. Needs Django set up."""
    from spiderweb.ipam import services
    from spiderweb.tenancy.models import Tenant

    Tenant.objects.get_or_create(name="default")
    return {name: services.node_credential_issue(node_name=name)[1] for name in node_names}


def spider_coordinator_apply(plane: ControlPlane, api: k8s.ApiClient) -> dict:
    """The default SpiderCoordinator the way a cluster gets it: applied to the API server (as the chart's install job
    does), taken in by the admission webhook, its status discovered by the coordinator controller in the worker from
    the controller-manager's flags (its kubeadm-style mirror pod, on a control-plane Node) and the ServiceCIDR API.
    Returns it once Synced; nothing writes the portal's row by hand. Needs Django set up and the portal, worker and
    watcher running."""
    from spiderweb.ipam.models import Coordinator

    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    # Tainted as kubeadm taints it, so DaemonSets (and nothing else) schedule no pods on it.
    core.create_node({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": CONTROL_PLANE_NODE, "labels": {"node-role.kubernetes.io/control-plane": ""}},
                      "spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}})
    core.create_namespaced_pod("kube-system", plane.kcm_pod_manifest())
    custom.create_cluster_custom_object(GROUP, VERSION, "spidercoordinators", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderCoordinator", "metadata": {"name": "default"},
        "spec": {"podCIDRType": "cluster", "hijackCIDR": ["169.254.0.0/16"]}})
    wait_for("the default SpiderCoordinator to be Synced",
             lambda: Coordinator.objects.filter(name="default", phase="Synced").exists(), timeout=60)
    return custom.get_cluster_custom_object(GROUP, VERSION, "spidercoordinators", "default")


def cni_bin_dirs(workdir: Path, lab_bin_dir: Path) -> list[str]:
    """Our CNI executables (as a node's /opt/cni/bin), then the lab's reference plugins (macvlan, ...)."""
    from cni.package import build

    directory = workdir / "cni-bin"
    build(directory)
    return [str(directory), str(lab_bin_dir)]


class AgentProcess(ServiceProcess):
    """``python -m agent`` for one node in kubernetes mode: pod facts from the API server with its own identity.
    Ready once its unix socket accepts connections (a killed agent leaves a stale socket file behind)."""

    def __init__(self, node, *, portal: PortalProcess, token: str, kubeconfig: Path, run_dir: Path, log: Path,
                 extra_env: dict | None = None):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.node_name = node.name
        self.socket = str(run_dir / "spiderpool.sock")
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
            **(extra_env or {}),
        }
        super().__init__(f"agent-{node.name}", [sys.executable, "-m", "agent"], env, log)

    def ready(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(self.socket)
            except OSError:
                return False
        return True


def underlay_conflist(socket_path: str) -> dict:
    """The NetworkAttachmentDefinition's config: macvlan on the node's eth0, our IPAM, the coordinator chained."""
    return {"cniVersion": "1.0.0", "name": NAD_NAME, "plugins": [
        {"type": "macvlan", "master": "eth0", "mode": "bridge",
         "ipam": {"type": "spiderpool", "ipam_unix_socket_path": socket_path}},
        {"type": "coordinator", "unix_socket_path": socket_path},
    ]}


def kubelet_start(plane: ControlPlane, api: k8s.ApiClient, topology, workdir: Path, cni_bin: list[str],
                  **options) -> FakeKubelet:
    """The NAD, then the fake kubelet for every node of ``topology``, Multus as its CNI entry point. Each node's
    agent socket is expected at ``<workdir>/<node>/run/spiderpool.sock``. ``options`` go to :class:`FakeKubelet`."""
    # The path every node's plugins use, Spiderpool's default (so NADs rendered from SpiderMultusConfigs work as they
    # are); each node sees its own agent there (a bind mount in the CNI call's private mount namespace).
    shared_run = SPIDERPOOL_RUN_DIR
    shared_run.mkdir(parents=True, exist_ok=True)
    k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        "k8s.cni.cncf.io", "v1", NAD_NAMESPACE, "network-attachment-definitions", {
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": NAD_NAME, "namespace": NAD_NAMESPACE},
            "spec": {"config": json.dumps(underlay_conflist(str(shared_run / "spiderpool.sock")))}})
    nodes = []
    for name, node in topology.nodes.items():
        node_dir = workdir / name
        nodes.append(KubeletNode(name=name, netns=node.netns, ip=node.ipv4, run_dir=node_dir / "run", multus_conf={
            "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
            "kubeconfig": str(plane.kubeconfig), "clusterNetwork": NAD_NAME, "multusNamespace": NAD_NAMESPACE,
            "cniDir": str(node_dir / "multus-cache"), "confDir": str(node_dir / "net.d"), "binDir": cni_bin[0],
            "logToStderr": True, "logLevel": "verbose"}))
    api_port = int(urlsplit(plane.server).port)
    return FakeKubelet(api, topology, nodes, multus_bin=str(plane.bin_dir / "multus"), cni_path=cni_bin,
                       shared_run_dir=shared_run, api_port=api_port, **options).start()
