"""Kubernetes mode against a real API server (the lab: etcd + kube-apiserver + kube-controller-manager) and the
real portal.

Given workloads created through the API (the controller-manager creates their ReplicaSets and pods; no kubelet
runs, so pods stay Pending and unscheduled pods vanish at once when deleted), when the agent serves ADD and DEL for
them, then the facts it sends carry the top controller and the namespace and node labels, and DEL keeps or releases
as spec §3.1/§5.1 say. Skipped when the lab binaries are not built (``make lab-build``), unless
``SPIDERWEB_REQUIRE_LAB`` is set.
"""

from __future__ import annotations

import os
import tempfile
import time

import pytest

from tests.agent.conftest import NODE, client_for, pod_args

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab():
    from tests.lab.controlplane import ControlPlane, ensure_built, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        if not os.environ.get("SPIDERWEB_REQUIRE_LAB"):
            pytest.skip("lab binaries not built (make lab-build)")
        bin_dir = ensure_built()
    with tempfile.TemporaryDirectory(prefix="spiderweb-agent-lab-") as workdir, ControlPlane(workdir, bin_dir) as cp:
        yield cp


@pytest.fixture(scope="module")
def kube(lab):
    from kubernetes import client as k8s
    from kubernetes.config import new_client_from_config

    api = new_client_from_config(config_file=str(lab.kubeconfig))
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    core.create_namespace({"metadata": {"name": "team-a", "labels": {"team": "a"}}})
    core.create_node({"metadata": {"name": NODE, "labels": {"zone": "z1"}}})
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    apps.create_namespaced_deployment("team-a", {
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template}})
    db_template = {"metadata": {"labels": {"app": "db"}}, "spec": template["spec"]}
    apps.create_namespaced_stateful_set("team-a", {
        "metadata": {"name": "db"},
        "spec": {"replicas": 2, "podManagementPolicy": "Parallel", "serviceName": "db",
                 "selector": {"matchLabels": {"app": "db"}}, "template": db_template}})
    yield core, apps
    api.close()


def wait_pod(core, label: str, name: str | None = None, not_uid: str | None = None):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for item in core.list_namespaced_pod("team-a", label_selector=label).items:
            if (name is None or item.metadata.name == name) and item.metadata.uid != not_uid \
                    and item.metadata.deletion_timestamp is None:
                return item
        time.sleep(0.2)
    raise AssertionError(f"no pod {label} {name or ''} appeared")


@pytest.fixture
def kube_agent(start_agent, lab, portal):
    from spiderweb.ipam import services

    services.ippool_create(tenant=portal["tenant"], name="team-a-pool", spec={
        "subnet": "10.30.0.0/24", "ips": ["10.30.0.10-10.30.0.20"],
        "namespace_affinity": {"matchLabels": {"team": "a"}}, "node_affinity": {"matchLabels": {"zone": "z1"}}})
    return start_agent(mode="kubernetes", kubeconfig=str(lab.kubeconfig))


@pytest.mark.django_db(transaction=True)
def test_deployment_pod_gets_facts_from_the_api_and_del_follows_liveness(kube, kube_agent, start_agent):
    from cni.errors import AgentError
    from spiderweb.ipam.models import Allocation, Endpoint

    core, _ = kube
    web = wait_pod(core, "app=web")
    args = pod_args(web.metadata.name, uid=web.metadata.uid, defaultIPv4IPPool=["team-a-pool"])
    client = client_for(kube_agent)
    with pytest.raises(AgentError) as without_labels:  # standalone facts carry no labels: the pool refuses
        client_for(start_agent()).call("POST", "/v1/ipam/ip", args)
    assert without_labels.value.code == "no_pool_available"

    answer = client.call("POST", "/v1/ipam/ip", args)  # the pool's affinities need namespace and node labels

    assert answer["ips"][0]["ipPool"] == "team-a-pool"
    endpoint = Endpoint.objects.get(namespace="team-a", name=web.metadata.name)
    assert (endpoint.owner_kind, endpoint.owner_name) == ("Deployment", "web")

    client.call("DELETE", "/v1/ipam/ip", args)  # still alive: a sandbox re-creation keeps the address
    assert Allocation.objects.filter(pod_uid=web.metadata.uid).exists()

    core.delete_namespaced_pod(web.metadata.name, "team-a", grace_period_seconds=0)
    client.call("DELETE", "/v1/ipam/ip", args)  # gone: released by the request's UID
    assert not Allocation.objects.filter(pod_uid=web.metadata.uid).exists()


@pytest.mark.django_db(transaction=True)
def test_statefulset_pods_keep_wanted_ordinals_and_release_removed_ones(kube, kube_agent):
    from spiderweb.ipam.models import Allocation

    core, apps = kube
    client = client_for(kube_agent)
    db0, db1 = wait_pod(core, "app=db", "db-0"), wait_pod(core, "app=db", "db-1")
    args0 = pod_args("db-0", uid=db0.metadata.uid, defaultIPv4IPPool=["team-a-pool"])
    args1 = pod_args("db-1", uid=db1.metadata.uid, defaultIPv4IPPool=["team-a-pool"])
    first = client.call("POST", "/v1/ipam/ip", args0)["ips"][0]["address"]
    client.call("POST", "/v1/ipam/ip", args1)

    core.delete_namespaced_pod("db-0", "team-a", grace_period_seconds=0)  # the controller re-creates db-0
    client.call("DELETE", "/v1/ipam/ip", args0)
    assert Allocation.objects.filter(pod_uid=db0.metadata.uid).exists()  # ordinal 0 is still wanted
    new0 = wait_pod(core, "app=db", "db-0", not_uid=db0.metadata.uid)
    again = client.call("POST", "/v1/ipam/ip", pod_args("db-0", uid=new0.metadata.uid,
                                                          defaultIPv4IPPool=["team-a-pool"]))
    assert again["ips"][0]["address"] == first  # the StatefulSet pod got its address back

    apps.patch_namespaced_stateful_set_scale("db", "team-a", {"spec": {"replicas": 1}})
    deadline = time.monotonic() + 60
    while any(p.metadata.name == "db-1" for p in core.list_namespaced_pod("team-a").items):
        assert time.monotonic() < deadline, "db-1 was not removed"
        time.sleep(0.2)
    client.call("DELETE", "/v1/ipam/ip", args1)  # ordinal 1 is no longer wanted
    assert not Allocation.objects.filter(pod_uid=db1.metadata.uid).exists()


@pytest.mark.django_db(transaction=True)
def test_an_agent_without_rbac_rights_says_so(kube, lab, start_agent):
    from cni.errors import AgentError

    unbound = lab.issue_client_kubeconfig("system:node:nobody")
    client = client_for(start_agent(mode="kubernetes", kubeconfig=str(unbound)))
    with pytest.raises(AgentError) as caught:
        client.call("POST", "/v1/ipam/ip", pod_args("web-x", defaultIPv4IPPool=["v4-pool"]))
    assert caught.value.status == 500
    assert "Kubernetes API refused GET /api/v1/namespaces/team-a/pods/web-x: HTTP 403" in caught.value.message


@pytest.mark.django_db(transaction=True)
def test_with_enable_statefulset_off_in_spiderpool_conf_a_del_releases_a_wanted_ordinal(kube, lab, start_agent,
                                                                                        portal, tmp_path, monkeypatch):
    """spiderpool-conf ``enableStatefulSet: false``, read by the portal and the agent: a StatefulSet pod is stateless,
    so the DEL of a pod whose ordinal is still wanted releases its address (the previous test shows it kept)."""

    from agent.config import load
    from spiderweb.ipam import services
    from spiderweb.ipam.models import AddressHistory, Allocation, ClusterSettings
    from spiderweb.k8s.spiderpool_conf import ENV_PATH, configured

    (tmp_path / "conf.yml").write_text("enableStatefulSet: false\n")
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "conf.yml"))  # the portal (this process) reads the same file
    configured.cache_clear()
    ClusterSettings.invalidate_cache()
    try:
        from_conf = load({"SPIDERWEB_NODE_NAME": NODE, "SPIDERWEB_PORTAL_URL": portal["url"],
                          "SPIDERWEB_NODE_TOKEN": portal["token"], ENV_PATH: str(tmp_path / "conf.yml")})
        assert from_conf.enable_statefulset is False
        services.ippool_create(tenant=portal["tenant"], name="team-a-pool", spec={
            "subnet": "10.30.0.0/24", "ips": ["10.30.0.10-10.30.0.20"]})
        agent = start_agent(mode="kubernetes", kubeconfig=str(lab.kubeconfig),
                            enable_statefulset=from_conf.enable_statefulset)
        client = client_for(agent)
        core, _ = kube
        db0 = wait_pod(core, "app=db", "db-0")
        args = pod_args("db-0", uid=db0.metadata.uid, defaultIPv4IPPool=["team-a-pool"])
        client.call("POST", "/v1/ipam/ip", args)
        core.delete_namespaced_pod("db-0", "team-a", grace_period_seconds=0)  # the controller re-creates db-0
        wait_pod(core, "app=db", "db-0", not_uid=db0.metadata.uid)
        client.call("DELETE", "/v1/ipam/ip", args)
        assert not Allocation.objects.filter(pod_uid=db0.metadata.uid).exists()
        assert AddressHistory.objects.filter(pod_uid=db0.metadata.uid).exists()
    finally:
        monkeypatch.delenv(ENV_PATH)
        configured.cache_clear()
        ClusterSettings.invalidate_cache()
