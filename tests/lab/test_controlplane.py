"""Smoke tests of the lab control plane itself: if these fail, every test built on
the lab is meaningless, so they check the three things the rest relies on:
the admin kubeconfig works with the official client, the controller-manager
runs the workload controllers, and RBAC really denies an unbound identity.

Skipped only when the binaries are not built and ``SPIDERWEB_REQUIRE_LAB`` is
unset; with ``SPIDERWEB_REQUIRE_LAB=1`` (CI) a missing build is built here
instead, so a broken build fails loudly rather than skipping silently.
"""

import os
import tempfile
import time
import uuid

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from kubernetes.config import new_client_from_config

from .controlplane import ControlPlane, ensure_built, find_bin_dir

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if not os.environ.get("SPIDERWEB_REQUIRE_LAB"):
            pytest.skip(
                "lab binaries not built (run `make lab-build`, or set SPIDERWEB_REQUIRE_LAB=1 to build them here)"
            )
        bin_dir = ensure_built()
    with tempfile.TemporaryDirectory(prefix="spiderweb-lab-") as wd, ControlPlane(wd, bin_dir) as cp:
        print(f"lab control plane up in {cp.startup_seconds:.1f}s at {cp.server}")
        yield cp


@pytest.fixture(scope="module")
def admin(lab):
    api = new_client_from_config(config_file=str(lab.kubeconfig))
    yield api
    api.close()


@pytest.mark.lab
def test_version_with_admin_kubeconfig(admin):
    info = k8s.VersionApi(admin).get_code()
    assert info.major == "1" and info.git_version.startswith("v1.")


@pytest.mark.lab
def test_deployment_gets_replicaset_and_pods(admin):
    core, apps = k8s.CoreV1Api(admin), k8s.AppsV1Api(admin)
    ns = f"lab-{uuid.uuid4().hex[:8]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        ns,
        k8s.V1Deployment(
            metadata=k8s.V1ObjectMeta(name="web"),
            spec=k8s.V1DeploymentSpec(
                replicas=2,
                selector=k8s.V1LabelSelector(match_labels=labels),
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(labels=labels),
                    # Never pulled: no kubelet runs in the lab, the pods stay Pending.
                    spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="example.invalid/pause:1")]),
                ),
            ),
        ),
    )
    deadline = time.monotonic() + 30
    rs = pods = []
    while time.monotonic() < deadline:
        rs = [
            r
            for r in apps.list_namespaced_replica_set(ns).items
            if any(o.kind == "Deployment" and o.name == "web" for o in r.metadata.owner_references or [])
        ]
        pods = [
            p
            for p in core.list_namespaced_pod(ns).items
            if rs
            and any(o.kind == "ReplicaSet" and o.uid == rs[0].metadata.uid for o in p.metadata.owner_references or [])
        ]
        if len(rs) == 1 and len(pods) == 2:
            break
        time.sleep(0.2)
    assert len(rs) == 1, "deployment-controller made no ReplicaSet within 30 s"
    assert len(pods) == 2, f"replicaset-controller made {len(pods)}/2 pods within 30 s"
    core.delete_namespace(ns)


@pytest.mark.lab
def test_unbound_agent_identity_is_forbidden(lab):
    kc = lab.issue_client_kubeconfig("spiderweb-agent")
    api = new_client_from_config(config_file=str(kc))
    try:
        with pytest.raises(ApiException) as err:
            k8s.CoreV1Api(api).list_namespaced_pod("default")
        assert err.value.status == 403
        assert "spiderweb-agent" in err.value.body  # authenticated, as that user, but not authorised
    finally:
        api.close()
