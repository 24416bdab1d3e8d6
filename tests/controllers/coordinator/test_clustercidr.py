"""The pure rules of SpiderCoordinator status discovery (spec §8.7) on plain dicts, without a server."""

import doctest

import pytest

from spiderweb.k8s import clustercidr as cc


def test_docstring_examples_hold():
    result = doctest.testmod(cc, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 10 and result.failed == 0


KCM = cc.ClusterCIDRs(("10.244.0.0/16",), ("10.96.0.0/12",), "pod kube-system/kcm")


@pytest.mark.parametrize(("observed", "overlay", "service"), [
    (cc.Observed("cluster", KCM), ["10.244.0.0/16"], ["10.96.0.0/12"]),
    (cc.Observed("none", KCM), [], ["10.96.0.0/12"]),
    (cc.Observed("none", service_cidr_objects=({"spec": {"cidrs": ["10.0.0.0/24"]}},)), [], ["10.0.0.0/24"]),
    (cc.Observed("calico", KCM, calico_ippools=({"spec": {"cidr": "10.5.0.0/16"}},)), ["10.5.0.0/16"],
     ["10.96.0.0/12"]),
    (cc.Observed("cilium", KCM, cilium_config={"data": {"ipam": "kubernetes"}}), ["10.244.0.0/16"], ["10.96.0.0/12"]),
    (cc.Observed("cilium", KCM, cilium_config={"data": {"ipam": "multi-pool"}}, cilium_pod_ippools=(
        {"spec": {"ipv4": {"cidrs": ["10.6.0.0/16"]}, "ipv6": {"cidrs": ["fd06::/64"]}}},)),
     ["10.6.0.0/16", "fd06::/64"], ["10.96.0.0/12"]),
], ids=["cluster", "none", "none-servicecidr-only", "calico", "cilium-kubernetes", "cilium-multi-pool"])
def test_synced_status_per_pod_cidr_type(observed, overlay, service):
    assert cc.coordinator_status(observed) == cc.status_synced(overlay, service)


@pytest.mark.parametrize(("observed", "event", "text"), [
    (cc.Observed("cluster"), "ClusterNotReady", "cannot tell the pod CIDRs: no kube-system/kubeadm-config"),
    (cc.Observed("cluster", cc.ClusterCIDRs((), ("10.96.0.0/12",), "pod kube-system/kcm")), "ClusterNotReady",
     "pod kube-system/kcm has no --cluster-cidr flag"),
    (cc.Observed("calico", KCM), "CalicoNotReady", "Calico is not installed"),
    (cc.Observed("cilium", KCM), "CiliumNotReady", "Cilium's ConfigMap cannot be found"),
    (cc.Observed("cilium", KCM, cilium_config={"data": {"ipam": "eni"}}), "CiliumNotReady", "unsupported Cilium"),
    (cc.Observed("none", cc.ClusterCIDRs((), (), "kube-system/kubeadm-config")), "ClusterNotReady",
     "no ServiceCIDR objects and kube-system/kubeadm-config has no serviceSubnet"),
], ids=["nothing", "kcm-without-cluster-cidr", "calico-missing", "cilium-missing", "cilium-eni", "no-services"])
def test_not_ready_says_why(observed, event, text):
    with pytest.raises(cc.DiscoveryFailed) as failed:
        cc.coordinator_status(observed)
    assert failed.value.event == event and text in failed.value.reason


def test_kcm_flags_in_args_and_command_and_bad_cidrs_are_skipped():
    pod = {"metadata": {"namespace": "kube-system", "name": "kcm"},
           "spec": {"containers": [{"command": ["kube-controller-manager"],
                                    "args": ["--cluster-cidr=10.244.0.0/16,bogus", "--service-cluster-ip-range="]}]}}
    assert cc.kcm_cidrs(pod).pod == ("10.244.0.0/16",) and cc.kcm_cidrs(pod).service == ()


def test_the_default_cni_configuration_must_be_json():
    with pytest.raises(cc.DiscoveryFailed, match="10-x.conf is not a JSON object"):
        cc.default_cni_name([("10-x.conf", "not json")])


def test_watch_events_enqueue_the_coordinator_that_pods_use(monkeypatch):
    """SpiderCoordinator events name themselves; ServiceCIDRs and the kube-controller-manager pod re-sync the one
    pods use; other pods are none of this controller's business."""
    from spiderweb.controllers.coordinator import watches
    from spiderweb.k8s.watch import WatchEvent

    sent = []
    monkeypatch.setattr(watches, "coordinator_enqueue", sent.append)
    watches._coordinator_event(WatchEvent("MODIFIED", {"metadata": {"name": "other"}}))
    watches._source_event(WatchEvent("ADDED", {"metadata": {"name": "kubernetes"}}))
    watches._pod_event(WatchEvent("MODIFIED", {"metadata": {"name": "kcm", "labels": {
        "component": "kube-controller-manager"}}}))
    watches._pod_event(WatchEvent("MODIFIED", {"metadata": {"name": "web", "labels": {"app": "web"}}}))
    assert sent == ["other", "default", "default"]
