"""Lab fixtures for the mirror: a real control plane with the Spiderpool CRDs, the portal serving the admission
webhooks over HTTPS (gunicorn, test database), and helpers to run a Celery worker and the watcher as processes.

Imported by ``tests/mirror/conftest.py``; every fixture here needs the lab binaries (skipped without them unless
``SPIDERWEB_REQUIRE_LAB`` is set, as in ``tests/lab``).
"""

from __future__ import annotations

import glob
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spiderweb.k8s.client import KubeClient, api_client
from spiderweb.k8s.crd import GROUP, KINDS, VERSION
from spiderweb.k8s.tls import webhook_certificate_write
from tests.lab.controlplane import ControlPlane, ensure_built, find_bin_dir, free_port

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CRD_DIR = REPO / "helm" / "spiderweb" / "crds"
# Kinds with validating webhooks on DELETE too (as in the Helm chart).
DELETE_VALIDATED = {"spiderippool", "spidersubnet"}
# Our own Redis database, so no other worker on this machine takes the test's tasks.
MIRROR_TEST_REDIS_DB = os.environ.get("SPIDERWEB_TEST_MIRROR_REDIS_DB", "15")


def wait_for(what: str, check, timeout: float = 30.0, interval: float = 0.2):
    """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Lab:
    plane: ControlPlane
    api: k8s.ApiClient
    crd: KubeClient
    custom: k8s.CustomObjectsApi


@pytest.fixture(scope="session")
def mirror_lab(tmp_path_factory):
    """A control plane with the Helm chart's CRDs applied and established."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if not os.environ.get("SPIDERWEB_REQUIRE_LAB"):
            pytest.skip("lab binaries not built (run `make lab-build`, or set SPIDERWEB_REQUIRE_LAB=1)")
        bin_dir = ensure_built()
    with ControlPlane(tmp_path_factory.mktemp("mirror-lab"), bin_dir) as plane:
        api = api_client(str(plane.kubeconfig))
        ext = k8s.ApiextensionsV1Api(api)
        names = []
        for path in sorted(glob.glob(str(CRD_DIR / "*.yaml"))):
            body = yaml.safe_load(Path(path).read_text())
            ext.create_custom_resource_definition(body)
            names.append(body["metadata"]["name"])

        def established():
            for name in names:
                conditions = ext.read_custom_resource_definition(name).status.conditions or []
                if not any(c.type == "Established" and c.status == "True" for c in conditions):
                    return False
            return True

        wait_for("CRDs established", established)
        yield Lab(plane=plane, api=api, crd=KubeClient(api), custom=k8s.CustomObjectsApi(api))
        api.close()


def _database_url(settings_dict: dict) -> str:
    return (f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD']}@{settings_dict['HOST']}:"
            f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}")


def _broker_url() -> str:
    from django.conf import settings

    parts = urlsplit(settings.CELERY_BROKER_URL)
    if parts.scheme != "redis":
        pytest.skip("the mirror's worker test needs a Redis broker (CELERY_BROKER_URL=redis://...)")
    return urlunsplit((parts.scheme, parts.netloc, f"/{MIRROR_TEST_REDIS_DB}", "", ""))


@pytest.fixture(scope="session")
def lab_env(mirror_lab, django_db_setup):
    """Environment for processes that share the test database, the lab and a private Redis database."""
    from django.db import connection

    return {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "KUBECONFIG": str(mirror_lab.plane.kubeconfig),
        "CELERY_BROKER_URL": _broker_url(),
        "SPIDERWEB_MIRROR_ENABLED": "true",
        "SPIDERWEB_DB_CONN_MAX_AGE": "0",
        "PYTHONPATH": str(REPO),
    }


def _webhook(kind: str, mode: str, url: str, ca_bundle: str) -> dict:
    operations = ["CREATE", "UPDATE"] + (["DELETE"] if mode == "validate" and kind in DELETE_VALIDATED else [])
    return {
        "name": f"{kind}.spiderpool.spidernet.io",
        "admissionReviewVersions": ["v1"],
        # Our validating webhook writes the database except for dry runs.
        "sideEffects": "NoneOnDryRun",
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
        "clientConfig": {"url": f"{url}/{mode}-spiderpool-spidernet-io-v2beta1-{kind}", "caBundle": ca_bundle},
        "rules": [{"apiGroups": [GROUP], "apiVersions": [VERSION], "operations": operations,
                   "resources": [KINDS[k].plural for k in KINDS if KINDS[k].webhook_name == kind]}],
    }


@dataclass
class Portal:
    url: str
    process: subprocess.Popen
    log: Path
    ca_path: Path  # the serving certificate's CA


@pytest.fixture(scope="session")
def webhook_portal(mirror_lab, lab_env, tmp_path_factory):
    """The portal under gunicorn over HTTPS on a free loopback port, registered as the CRDs' admission webhooks.

    Like the chart's webhook listener it requires the API server's client certificate (mutual TLS): a caller
    without one is refused in the TLS handshake.
    """
    plane = mirror_lab.plane
    workdir = tmp_path_factory.mktemp("webhook")
    cert = webhook_certificate_write(workdir, dns_names=["localhost"], ip_addresses=["127.0.0.1"], days=1)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    log = workdir / "gunicorn.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "spiderweb.wsgi:application", f"--bind=127.0.0.1:{port}",
             f"--certfile={cert.cert_path}", f"--keyfile={cert.key_path}", "--workers=1", "--threads=4",
             "--timeout=30", "--no-control-socket", f"--chdir={REPO}",
             f"--ca-certs={plane.webhook_client_ca_path}", f"--cert-reqs={int(ssl.CERT_REQUIRED)}"],
            env=lab_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    context = ssl.create_default_context(cafile=str(cert.ca_path))
    context.load_cert_chain(plane.webhook_client_cert_path, plane.webhook_client_key_path)

    def healthy():
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/webhook-health-check", context=context, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    admissionregistration = k8s.AdmissionregistrationV1Api(mirror_lab.api)
    try:
        wait_for("the webhook portal", healthy, timeout=60)
        kinds = sorted({k.webhook_name for k in KINDS.values()} - {"spiderendpoint"})
        meta = k8s.V1ObjectMeta(name="spiderweb-test")
        admissionregistration.create_mutating_webhook_configuration(
            {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
             "metadata": {"name": meta.name}, "webhooks": [_webhook(k, "mutate", url, cert.ca_bundle) for k in kinds]})
        admissionregistration.create_validating_webhook_configuration(
            {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
             "metadata": {"name": meta.name}, "webhooks": [_webhook(k, "validate", url, cert.ca_bundle)
                                                           for k in kinds]})

        def webhooks_active():
            probe = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": "probe"},
                     "spec": {"subnet": "10.255.0.0/24", "ips": ["10.254.0.1"]}}
            try:
                mirror_lab.custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", probe, dry_run="All")
            except ApiException as exc:
                return "is outside subnet" in (exc.body or "")
            return False

        wait_for("the API server to call the webhooks", webhooks_active, timeout=30)
        yield Portal(url=url, process=process, log=log, ca_path=cert.ca_path)
    finally:
        for delete in (admissionregistration.delete_mutating_webhook_configuration,
                       admissionregistration.delete_validating_webhook_configuration):
            try:
                delete("spiderweb-test")
            except ApiException:
                pass
        stop_process(process)


def stop_process(process: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM the process group, SIGKILL after ``timeout``; returns the exit code."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
    return process.returncode


def spawn(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """Start a project process (manage.py, celery) in its own process group, output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def crs_delete_all(lab: Lab) -> None:
    """Delete every Spiderpool custom resource (delete first, then release finalizers) and wait until none is left."""
    plurals = [k.plural for k in KINDS.values() if not k.namespaced]
    for plural in plurals:
        for obj in lab.custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"]:
            name = obj["metadata"]["name"]
            try:
                lab.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
            except ApiException:
                pass
            try:
                lab.custom.patch_cluster_custom_object(GROUP, VERSION, plural, name, {"metadata": {"finalizers": []}})
            except ApiException:
                pass
    endpoints = lab.custom.list_cluster_custom_object(GROUP, VERSION, "spiderendpoints")["items"]
    for obj in endpoints:
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        try:
            lab.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "spiderendpoints", name)
        except ApiException:
            pass
        try:  # the GC's SpiderEndpoints carry Spiderpool's finalizer (spec §6)
            lab.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "spiderendpoints", name,
                                                      {"metadata": {"finalizers": []}})
        except ApiException:
            pass

    def empty():
        return all(not lab.custom.list_cluster_custom_object(GROUP, VERSION, p)["items"]
                   for p in [*plurals, "spiderendpoints"])

    wait_for("custom resources to be gone", empty, timeout=30)
