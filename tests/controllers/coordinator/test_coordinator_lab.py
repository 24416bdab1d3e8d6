"""SpiderCoordinator status discovered from a real API server (tests/lab), written to the CRD and its mirror row.

The SpiderCoordinator is applied as kubectl would (through our admission webhooks, which take it into the database);
the controller-manager's flags come from its mirror pod as a kubeadm cluster shows it (``component=
kube-controller-manager`` in ``kube-system``, the lab's real command line); the service CIDRs come from the
``ServiceCIDR`` API the lab's v1.37 API server serves. Nothing writes the coordinator row by hand.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spiderweb.changelog.models import ObjectChange
from spiderweb.controllers.coordinator.config import CoordinatorControllerConfig
from spiderweb.controllers.coordinator.services import coordinator_reconcile
from spiderweb.controllers.mirror import reconcile as mirror
from spiderweb.ipam import services
from spiderweb.ipam.models import Coordinator
from spiderweb.k8s import crd, resources
from spiderweb.k8s.crd import GROUP, VERSION
from tests.lab.controlplane import CONTROL_PLANE_NODE, POD_CIDR, SERVICE_CIDR
from tests.mirror.lab import crs_delete_all, wait_for

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
PLURAL = "spidercoordinators"


@pytest.fixture
def lab(mirror_lab, webhook_portal, transactional_db):
    yield mirror_lab
    core = k8s.CoreV1Api(mirror_lab.api)
    for delete in (lambda: core.delete_namespaced_pod(f"kube-controller-manager-{CONTROL_PLANE_NODE}", "kube-system",
                                                      grace_period_seconds=0),
                   lambda: core.delete_node(CONTROL_PLANE_NODE),
                   lambda: core.delete_namespaced_config_map("kubeadm-config", "kube-system"),
                   lambda: k8s.NetworkingV1Api(mirror_lab.api).delete_service_cidr("extra")):
        try:
            delete()
        except ApiException:
            pass
    crs_delete_all(mirror_lab)


def controller_config(tmp_path, **changes) -> CoordinatorControllerConfig:
    values = dict(enabled=True, name="default", resync_interval=60, cni_config_dir=str(tmp_path / "net.d"),
                  cilium_configmap=("kube-system", "cilium-config"))
    return CoordinatorControllerConfig(**{**values, **changes})


def apply_coordinator(lab, **spec) -> dict:
    return lab.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderCoordinator", "metadata": {"name": "default"},
        "spec": {"podCIDRType": "cluster", **spec}})


def kcm_pod_create(lab) -> None:
    """The controller-manager's mirror pod (its real flags) on a control-plane Node, as kubeadm clusters have."""
    core = k8s.CoreV1Api(lab.api)
    core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": CONTROL_PLANE_NODE}})
    core.create_namespaced_pod("kube-system", lab.plane.kcm_pod_manifest())


def status_of(lab) -> dict:
    return lab.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, "default").get("status") or {}


def events_of(lab, reason: str) -> list:
    return [e for e in k8s.CoreV1Api(lab.api).list_namespaced_event("default").items
            if e.involved_object.kind == "SpiderCoordinator" and e.involved_object.name == "default"
            and e.reason == reason]


def test_status_comes_from_the_controller_managers_flags_and_the_servicecidr_api(lab, tmp_path):
    created = apply_coordinator(lab)
    row = Coordinator.objects.get(name="default")  # the admission webhook took it in
    assert (row.pod_cidr_type, row.k8s_uid, row.phase) == ("cluster", created["metadata"]["uid"], "NotReady")

    # Given no kubeadm-config and no controller-manager pod: NotReady, the reason, one Warning Event.
    assert coordinator_reconcile("default", client=lab.crd, config=controller_config(tmp_path)).startswith("NotReady")
    status = status_of(lab)
    assert status["phase"] == "NotReady" and "no kube-system/kubeadm-config ConfigMap" in status["reason"]
    assert status.get("overlayPodCIDR", []) == [] and status.get("serviceCIDR", []) == []
    [event] = events_of(lab, "ClusterNotReady")
    assert event.type == "Warning" and "cannot tell the pod CIDRs" in event.message
    assert Coordinator.objects.get(name="default").reason == status["reason"]
    coordinator_reconcile("default", client=lab.crd, config=controller_config(tmp_path))
    assert len(events_of(lab, "ClusterNotReady")) == 1, "an unchanged status is not announced again"

    # When the controller-manager's mirror pod shows its flags: Synced, pod CIDR from --cluster-cidr, service CIDRs
    # from the ServiceCIDR API (the apiserver's default "kubernetes" object holds --service-cluster-ip-range).
    kcm_pod_create(lab)
    assert coordinator_reconcile("default", client=lab.crd, config=controller_config(tmp_path)) == "Synced (changed)"
    assert status_of(lab) == {"phase": "Synced", "reason": "", "overlayPodCIDR": [POD_CIDR],
                              "serviceCIDR": [SERVICE_CIDR]}
    row = Coordinator.objects.get(name="default")
    assert (row.phase, row.reason, row.overlay_pod_cidr, row.service_cidr) == ("Synced", "", [POD_CIDR],
                                                                               [SERVICE_CIDR])
    assert ObjectChange.objects.filter(object_type="ipam.coordinator", message="status Synced").exists()

    # A second ServiceCIDR object: the API is the source (the flags do not know it), oldest object first.
    k8s.NetworkingV1Api(lab.api).create_service_cidr({"apiVersion": "networking.k8s.io/v1", "kind": "ServiceCIDR",
                                                      "metadata": {"name": "extra"},
                                                      "spec": {"cidrs": ["10.1.0.0/24"]}})
    coordinator_reconcile("default", client=lab.crd, config=controller_config(tmp_path))
    assert status_of(lab)["serviceCIDR"] == [SERVICE_CIDR, "10.1.0.0/24"]
    assert Coordinator.objects.get(name="default").service_cidr == [SERVICE_CIDR, "10.1.0.0/24"]


def test_kubeadm_config_wins_over_the_controller_manager(lab, tmp_path):
    apply_coordinator(lab)
    kcm_pod_create(lab)
    k8s.CoreV1Api(lab.api).create_namespaced_config_map("kube-system", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config"},
        "data": {"ClusterConfiguration": "networking:\n  dnsDomain: cluster.local\n  podSubnet: 10.233.64.0/18,"
                                         "fd85:ee78:d8a6:8607::1:0000/112\n  serviceSubnet: 10.233.0.0/18\n"}})
    coordinator_reconcile("default", client=lab.crd, config=controller_config(tmp_path))
    status = status_of(lab)
    assert status["overlayPodCIDR"] == ["10.233.64.0/18", "fd85:ee78:d8a6:8607::1:0000/112"]
    assert status["serviceCIDR"] == [SERVICE_CIDR], "the ServiceCIDR API still wins for services"


def test_editing_pod_cidr_type_emits_pod_cidr_type_changed_and_resyncs(lab, tmp_path):
    apply_coordinator(lab)
    kcm_pod_create(lab)
    coordinator_reconcile("default", client=lab.crd, config=controller_config(tmp_path))
    assert status_of(lab)["overlayPodCIDR"] == [POD_CIDR]

    # kubectl edit: podCIDRType cluster → none (the webhook updates the mirror row as it admits it).
    lab.custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "default", {"spec": {"podCIDRType": "none"}})
    assert Coordinator.objects.get(name="default").pod_cidr_type == "none"
    coordinator_reconcile("default", client=lab.crd, config=controller_config(tmp_path))
    [event] = events_of(lab, "PodCIDRTypeChanged")
    assert (event.type, event.message) == ("Normal", "Pod CIDR type changed from cluster to none")
    assert status_of(lab) == {"phase": "Synced", "reason": "", "overlayPodCIDR": [], "serviceCIDR": [SERVICE_CIDR]}
    coordinator_reconcile("default", client=lab.crd, config=controller_config(tmp_path))
    assert len(events_of(lab, "PodCIDRTypeChanged")) == 1


def test_auto_reads_the_nodes_cni_configuration(lab, tmp_path):
    apply_coordinator(lab, podCIDRType="auto")
    kcm_pod_create(lab)
    config = controller_config(tmp_path)
    # The directory cannot be read: NotReady, saying which directory.
    coordinator_reconcile("default", client=lab.crd, config=config)
    assert status_of(lab)["phase"] == "NotReady" and str(tmp_path / "net.d") in status_of(lab)["reason"]
    assert events_of(lab, "FoundCNIErr")

    # flannel (the first file by name; Multus' own skipped) → cluster: the controller-manager's pod CIDR.
    net_d = tmp_path / "net.d"
    net_d.mkdir()
    (net_d / "00-multus.conf").write_text(json.dumps({"name": "multus-cni-network", "type": "multus"}))
    (net_d / "10-flannel.conflist").write_text(json.dumps({"name": "flannel", "plugins": [{"type": "flannel"}]}))
    (net_d / "20-other.conf").write_text(json.dumps({"name": "calico"}))
    coordinator_reconcile("default", client=lab.crd, config=config)
    assert status_of(lab)["overlayPodCIDR"] == [POD_CIDR]

    # Calico named first but not installed: NotReady with CalicoNotReady; the CIDR lists are cleared.
    (net_d / "05-calico.conflist").write_text(json.dumps({"name": "k8s-pod-network", "plugins": []}))
    coordinator_reconcile("default", client=lab.crd, config=config)
    status = status_of(lab)
    assert status["phase"] == "NotReady" and "Calico is not installed" in status["reason"]
    assert status["overlayPodCIDR"] == [] and status["serviceCIDR"] == []
    assert events_of(lab, "CalicoNotReady")
    assert Coordinator.objects.get(name="default").phase == "NotReady"


def test_an_admin_edit_goes_to_the_crd_which_stays_the_source_of_truth(lab, tmp_path):
    apply_coordinator(lab, vethMTU=1500)
    assert mirror.mirror_in(kind="SpiderCoordinator", name="default", client=lab.crd) == "synced"  # the watch event
    row = Coordinator.objects.get(name="default")
    services.coordinator_update(coordinator=row, spec={"veth_mtu": 9000, "pod_mac_prefix": "0a:1b"})
    assert mirror.mirror_out(kind="SpiderCoordinator", pk=row.pk, client=lab.crd) == "pushed"
    spec = lab.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, "default")["spec"]
    assert (spec["vethMTU"], spec["podMACPrefix"], spec["podCIDRType"]) == (9000, "0a:1b", "cluster")

    # kubectl changes the same field afterwards: the CRD wins, the row follows.
    lab.custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "default", {"spec": {"vethMTU": 1400}})
    assert Coordinator.objects.get(name="default").veth_mtu == 1400
    assert mirror.mirror_in(kind="SpiderCoordinator", name="default", client=lab.crd) == "synced"

    # Deleting it releases the finalizer and the row.
    lab.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "default")
    assert mirror.mirror_in(kind="SpiderCoordinator", name="default", client=lab.crd) == "deleted"
    wait_for("the SpiderCoordinator to be gone", lambda: lab.crd.get(crd.SPIDER_COORDINATOR, "default") is None)
    assert not Coordinator.objects.filter(name="default").exists()
    assert lab.crd.get(resources.CONFIGMAP, "kubeadm-config", namespace="kube-system") is None


def test_the_install_job_creates_the_default_coordinator_from_the_charts_values(lab, tmp_path):
    """``helm install``: the init Job's objects (rendered from coordinator.*) go through our webhooks into the
    database, and the controller syncs the coordinator: no one writes the portal's row."""
    from kubernetes import client as k8s_client

    from tests.helm.test_chart import HELM, _load_init_script, _one, _render

    if HELM is None:
        pytest.skip("no helm binary (tests/helm/build_helm.sh)")
    objects = json.loads(_one(_render("coordinator.podCIDRType=none", "multus.enableMultusConfig=false"), "ConfigMap",
                              "spiderweb-init")["data"]["objects.json"])
    report = _load_init_script().ensure_objects(k8s_client.CustomObjectsApi(lab.api), objects, deadline=1e18)
    assert report == ["created spidercoordinators/default"]
    row = Coordinator.objects.get(name="default")
    assert (row.pod_cidr_type, row.hijack_cidr, row.veth_mtu, row.phase) == ("none", ["169.254.0.0/16"], 1500,
                                                                              "NotReady")
    assert coordinator_reconcile("default", client=lab.crd, config=controller_config(tmp_path)) == "Synced (changed)"
    assert Coordinator.objects.get(name="default").service_cidr == [SERVICE_CIDR]
