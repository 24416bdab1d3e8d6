"""Pod resource injection (spec §10.5, F51) through the real API server: the chart registers ``/mutate--v1-pod`` for
CREATE on pods (``failurePolicy: Fail``) when spiderpool-conf's ``podResourceInject.enabled`` is on, and the portal
serves it. Pods are admitted: with the networks and resource limits they ask for, unchanged when they ask for nothing,
refused with the reason when their networks do not exist."""

from __future__ import annotations

import json
import ssl
import urllib.request
import uuid

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spiderweb.k8s.crd import GROUP, VERSION
from spiderweb.k8s.tls import webhook_certificate_write
from tests.lab.controlplane import free_port
from tests.mirror.lab import REPO, VENV_BIN, spawn, stop_process, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
RDMA = "cni.spidernet.io/rdma-resource-inject"
NETWORKS = "k8s.v1.cni.cncf.io/networks"


@pytest.fixture(scope="module")
def namespaces(mirror_lab):
    names = [f"inject-{uuid.uuid4().hex[:5]}", f"inject-ns-{uuid.uuid4().hex[:5]}"]
    core = k8s.CoreV1Api(mirror_lab.api)
    core.create_namespace({"metadata": {"name": names[0]}})
    core.create_namespace({"metadata": {"name": names[1], "annotations": {RDMA: "from-namespace"}}})
    yield names
    for name in names:
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def pod_webhook(mirror_lab, lab_env, namespaces, tmp_path_factory):
    """A portal whose spiderpool-conf turns injection on, registered for pods exactly as the chart registers it
    (limited here to the test's namespaces, so the shared lab's other pods never reach it)."""
    workdir = tmp_path_factory.mktemp("pod-inject")
    (workdir / "conf.yml").write_text("podResourceInject:\n  enabled: true\n  namespacesExclude: [kube-system]\n")
    cert = webhook_certificate_write(workdir, dns_names=["localhost"], ip_addresses=["127.0.0.1"], days=1)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    process = spawn([str(VENV_BIN / "gunicorn"), "spiderweb.wsgi:application", f"--bind=127.0.0.1:{port}",
                     f"--certfile={cert.cert_path}", f"--keyfile={cert.key_path}", "--workers=1", "--threads=2",
                     "--timeout=30", "--no-control-socket", f"--chdir={REPO}"],
                    {**lab_env, "SPIDERWEB_CONFIG_PATH": str(workdir / "conf.yml")}, workdir / "gunicorn.log")
    context = ssl.create_default_context(cafile=str(cert.ca_path))

    def healthy():
        assert process.poll() is None, (workdir / "gunicorn.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/webhook-health-check", context=context, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    registration = k8s.AdmissionregistrationV1Api(mirror_lab.api)
    wait_for("the pod-inject portal", healthy, timeout=60)
    registration.create_mutating_webhook_configuration({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "spiderweb-pod-inject-test"},
        "webhooks": [{"name": "pod.spiderpool.spidernet.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "failurePolicy": "Fail", "timeoutSeconds": 10,
                      "clientConfig": {"url": f"{url}/mutate--v1-pod", "caBundle": cert.ca_bundle},
                      "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                 "resources": ["pods"]}],
                      "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                                                  "operator": "In", "values": namespaces}]}}]})
    try:
        yield url
    finally:
        registration.delete_mutating_webhook_configuration("spiderweb-pod-inject-test")
        stop_process(process)


def smc_apply(lab, namespace, name, value, resource, pools=("p4",)):
    """An SMC applied as kubectl would: our SMC webhook copies the inject annotation into a label."""
    lab.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "spidermultusconfigs", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderMultusConfig",
        "metadata": {"name": name, "annotations": {RDMA: value}},
        "spec": {"cniType": "macvlan", "macvlan": {"master": ["ens1"], "rdmaResourceName": resource,
                                                   "ippools": {"ipv4": list(pools)}}}})


def pod_create(lab, namespace, name, annotations=None, containers=None):
    return k8s.CoreV1Api(lab.api).create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"containers": containers or [{"name": "app", "image": "pause"}, {"name": "side", "image": "pause"}]}})


def test_a_pod_asking_for_rdma_networks_gets_them_and_one_of_each_resource(mirror_lab, webhook_portal, pod_webhook,
                                                                          namespaces):
    ns = namespaces[0]
    smc_apply(mirror_lab, ns, "rdma-b", "hca", "spidernet.io/hca_b")
    smc_apply(mirror_lab, ns, "rdma-a", "hca", "spidernet.io/hca_a")
    smc_apply(mirror_lab, ns, "other", "gpu", "spidernet.io/gpu")
    pod = pod_create(mirror_lab, ns, "trainer", {RDMA: "hca"})
    assert pod.metadata.annotations[NETWORKS] == f"{ns}/rdma-a,{ns}/rdma-b"
    assert pod.spec.containers[0].resources.limits == {"spidernet.io/hca_a": "1", "spidernet.io/hca_b": "1"}
    assert not pod.spec.containers[1].resources.limits

    # A container that already asks for one keeps it; nothing is added twice.
    asked = [{"name": "app", "image": "pause", "resources": {"limits": {"spidernet.io/hca_b": "2"}}}]
    pod = pod_create(mirror_lab, ns, "asked", {RDMA: "hca", NETWORKS: f"{ns}/other"}, containers=asked)
    assert pod.metadata.annotations[NETWORKS] == f"{ns}/other,{ns}/rdma-a,{ns}/rdma-b"
    assert pod.spec.containers[0].resources.limits == {"spidernet.io/hca_a": "1", "spidernet.io/hca_b": "2"}


def test_a_pod_asking_for_nothing_is_admitted_unchanged_and_a_namespace_can_ask_for_its_pods(
        mirror_lab, webhook_portal, pod_webhook, namespaces):
    plain = pod_create(mirror_lab, namespaces[0], "plain")
    assert NETWORKS not in (plain.metadata.annotations or {}) and not plain.spec.containers[0].resources.limits
    smc_apply(mirror_lab, namespaces[1], "ns-wide", "from-namespace", "spidernet.io/hca_ns")
    pod = pod_create(mirror_lab, namespaces[1], "inherits")
    assert pod.metadata.annotations[NETWORKS] == f"{namespaces[1]}/ns-wide"


def test_a_pod_asking_for_networks_that_do_not_exist_is_refused_with_the_reason(mirror_lab, pod_webhook, namespaces):
    with pytest.raises(ApiException) as refused:
        pod_create(mirror_lab, namespaces[0], "lost", {RDMA: "nobody"})
    message = json.loads(refused.value.body)["message"]
    assert f"pod {namespaces[0]}/lost: {RDMA}=nobody: no SpiderMultusConfig is labelled {RDMA}=nobody" in message
