"""SpiderMultusConfig → NetworkAttachmentDefinition against a real API server (tests/lab): SMCs are applied as kubectl
would (through our admission webhooks), the controller writes their NADs, keeps them in line, never takes another
SMC's NAD, and leaves deletion to Kubernetes' garbage collector (the lab's kube-controller-manager)."""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from spiderweb.controllers.multus import services as multus
from spiderweb.controllers.multus import watches as multus_watches
from spiderweb.k8s import crd
from spiderweb.k8s.crd import GROUP, VERSION
from spiderweb.k8s.resources import NAMESPACE, NETWORK_ATTACHMENT_DEFINITION
from spiderweb.k8s.watch import WatchEvent
from tests.mirror.lab import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
SMCS = "spidermultusconfigs"
NAD_GROUP, NAD_VERSION, NADS = "k8s.cni.cncf.io", "v1", "network-attachment-definitions"


@pytest.fixture
def ns(mirror_lab, webhook_portal, transactional_db):
    """A namespace of the test's own (deleted afterwards with everything in it)."""
    name = f"smc-{uuid.uuid4().hex[:6]}"
    mirror_lab.crd.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    k8s.CoreV1Api(mirror_lab.api).delete_namespace(name)


def apply_smc(lab, namespace: str, name: str, spec: dict, annotations: dict | None = None) -> dict:
    return lab.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, SMCS, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderMultusConfig",
        "metadata": {"name": name, "annotations": annotations or {}}, "spec": spec})


def get_nad(lab, namespace: str, name: str) -> dict | None:
    return lab.crd.get(NETWORK_ATTACHMENT_DEFINITION, name, namespace=namespace)


# The API server fills the CRD's defaults into the coordinator block (hostRuleTable 500, txQueueLen 0), and every
# number that is set is written into the NAD (spec A8), so these are longer than the spec's defaulted example.
TWO_SMCS = {
    "macvlan-eth0": ({"cniType": "macvlan", "macvlan": {"master": ["eth0"], "ippools": {"ipv4": ["pool-a"]}}}, {},
                     '{"cniVersion":"0.3.1","name":"macvlan-eth0","plugins":[{"type":"macvlan","master":"eth0",'
                     '"mode":"bridge","mtu":0,"ipam":{"type":"spiderpool","default_ipv4_ippool":["pool-a"]}},'
                     '{"type":"coordinator","mode":"auto","tunePodRoutes":true,"txQueueLen":0,"podRPFilter":0,'
                     '"hostRuleTable":500}]}'),
    "macvlan-eth1-vlan": ({"cniType": "macvlan", "macvlan": {"master": ["eth1"], "vlanID": 100,
                                                             "ippools": {"ipv4": ["pool-b"], "ipv6": ["pool-b6"]}},
                           "coordinator": {"podRPFilter": 1, "hostRuleTable": 520, "tunePodRoutes": True}},
                          {"multus.spidernet.io/cni-version": "1.0.0", "multus.spidernet.io/cr-name": "net-b"},
                          '{"cniVersion":"1.0.0","name":"net-b","plugins":[{"type":"ifacer","interfaces":["eth1"],'
                          '"vlanID":100},{"type":"macvlan","master":"eth1.100","mode":"bridge","mtu":0,"ipam":'
                          '{"type":"spiderpool","default_ipv4_ippool":["pool-b"],"default_ipv6_ippool":["pool-b6"]}},'
                          '{"type":"coordinator","mode":"auto","tunePodRoutes":true,"txQueueLen":0,"podRPFilter":1,'
                          '"hostRuleTable":520}]}'),
}


def test_two_smcs_become_their_nads_byte_for_byte_with_owner_and_annotations(mirror_lab, ns):
    lab = mirror_lab
    for name, (spec, notes, _) in TWO_SMCS.items():
        apply_smc(lab, ns, name, spec, notes)
        assert multus.multusconfig_reconcile(ns, name, client=lab.crd) == "created"
    for name, (_, notes, config) in TWO_SMCS.items():
        smc = lab.crd.get(crd.SPIDER_MULTUSCONFIG, name, namespace=ns)
        target = notes.get("multus.spidernet.io/cr-name", name)
        nad = get_nad(lab, ns, target)
        assert nad["spec"]["config"] == config
        assert (nad["metadata"].get("annotations") or {}) == notes
        assert nad["metadata"]["ownerReferences"] == [{
            "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderMultusConfig", "name": name,
            "uid": smc["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
        assert multus.multusconfig_reconcile(ns, name, client=lab.crd) == "unchanged"


def test_the_nad_follows_the_smc_is_repaired_after_a_hand_edit_and_goes_with_it(mirror_lab, ns):
    lab = mirror_lab
    apply_smc(lab, ns, "net", {"cniType": "macvlan", "macvlan": {"master": ["eth0"]}})
    multus.multusconfig_reconcile(ns, "net", client=lab.crd)
    lab.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, SMCS, "net", {
        "spec": {"macvlan": {"ippools": {"ipv4": ["pool-x"]}, "mtu": 1400}}})
    assert multus.multusconfig_reconcile(ns, "net", client=lab.crd) == "updated"
    plugin = json.loads(get_nad(lab, ns, "net")["spec"]["config"])["plugins"][0]
    assert (plugin["mtu"], plugin["ipam"]["default_ipv4_ippool"]) == (1400, ["pool-x"])

    lab.custom.patch_namespaced_custom_object(NAD_GROUP, NAD_VERSION, ns, NADS, "net",
                                              {"spec": {"config": '{"cniVersion":"0.3.1","plugins":[]}'}})
    assert multus.multusconfig_reconcile(ns, "net", client=lab.crd) == "updated"
    assert json.loads(get_nad(lab, ns, "net")["spec"]["config"])["plugins"][0]["mtu"] == 1400

    lab.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, SMCS, "net")
    wait_for("Kubernetes' garbage collector to delete the NAD", lambda: get_nad(lab, ns, "net") is None, timeout=60)
    assert multus.multusconfig_reconcile(ns, "net", client=lab.crd) == "absent"


def test_a_nad_of_another_smc_is_never_taken_and_a_free_one_is_adopted(mirror_lab, ns):
    lab = mirror_lab
    apply_smc(lab, ns, "first", {"cniType": "macvlan", "macvlan": {"master": ["eth0"]}},
              {"multus.spidernet.io/cr-name": "shared"})
    multus.multusconfig_reconcile(ns, "first", client=lab.crd)
    with pytest.raises(ApiException) as refused:
        apply_smc(lab, ns, "second", {"cniType": "macvlan", "macvlan": {"master": ["eth1"]}},
                  {"multus.spidernet.io/cr-name": "shared"})
    assert "NetworkAttachmentDefinition " + ns + "/shared already belongs to SpiderMultusConfig first" in \
        json.loads(refused.value.body)["message"]

    # A NAD written by hand before the SMC existed is adopted (spec §10.2).
    lab.custom.create_namespaced_custom_object(NAD_GROUP, NAD_VERSION, ns, NADS, {
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "handmade"}, "spec": {"config": "{}"}})
    apply_smc(lab, ns, "handmade", {"cniType": "ipvlan", "ipvlan": {"master": ["eth2"]}})
    assert multus.multusconfig_reconcile(ns, "handmade", client=lab.crd) == "updated"
    nad = get_nad(lab, ns, "handmade")
    assert nad["metadata"]["ownerReferences"][0]["name"] == "handmade"
    assert json.loads(nad["spec"]["config"])["plugins"][0]["type"] == "ipvlan"


def test_watch_events_become_reconcile_tasks_for_the_owning_smc(mirror_lab, ns, monkeypatch):
    sent = []
    monkeypatch.setattr(multus_watches, "multusconfig_enqueue", lambda namespace, name: sent.append((namespace, name)))
    smc = apply_smc(mirror_lab, ns, "net", {"cniType": "macvlan", "macvlan": {"master": ["eth0"]}},
                    {"multus.spidernet.io/cr-name": "net-nad"})
    multus.multusconfig_reconcile(ns, "net", client=mirror_lab.crd)
    nad = get_nad(mirror_lab, ns, "net-nad")
    multus_watches._smc_event(WatchEvent("ADDED", smc))
    multus_watches._nad_event(WatchEvent("DELETED", nad))
    multus_watches._nad_event(WatchEvent("MODIFIED", {"metadata": {"name": "x", "namespace": ns}}))
    assert sent == [(ns, "net"), (ns, "net")]
