"""Pod rules on plain Kubernetes JSON dicts (spec §3.1, §5.1, §5.2) and the DEL decisions built on them.

No API server: the objects are the dicts the API would return, and ``DictAPI`` answers reads from them, counting
each one so the caching promises (one pod read per ADD at most) are checked too.
"""

from __future__ import annotations

import pytest

from agent.podfacts import KEEP, RELEASE, SKIP, KubernetesFacts
from spiderweb.engine.errors import Conflict, NotFound
from spiderweb.engine.facts import TopController
from spiderweb.k8s import pods


def ref(kind: str, name: str, uid: str, api_version: str = "apps/v1", controller: bool = True) -> dict:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": controller}


def pod(name: str, *, uid: str = "p-uid", namespace: str = "ns", owners: list | None = None, phase: str = "Running",
        restart: str = "Always", deleting: bool = False, reason: str | None = None, node: str = "node-1",
        labels: dict | None = None, annotations: dict | None = None) -> dict:
    meta = {"name": name, "namespace": namespace, "uid": uid, "labels": labels, "annotations": annotations,
            "ownerReferences": owners or []}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    status = {"phase": phase, **({"reason": reason} if reason else {})}
    return {"metadata": meta, "spec": {"restartPolicy": restart, "nodeName": node}, "status": status}


def obj(name: str, *, uid: str = "", owners: list | None = None, deleting: bool = False, **spec) -> dict:
    meta = {"name": name, "ownerReferences": owners or [], **({"uid": uid} if uid else {})}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"metadata": meta, "spec": spec}


# ------------------------------------------------------------------------------------------------ liveness


@pytest.mark.parametrize(("phase", "restart", "reason", "deleting", "alive"), [
    ("Running", "Always", None, False, True),
    ("Pending", "Never", None, False, True),
    ("Running", "Always", None, True, False),
    ("Succeeded", "Always", None, False, True),
    ("Succeeded", "OnFailure", None, False, False),
    ("Succeeded", "Never", None, False, False),
    ("Failed", "OnFailure", None, False, True),
    ("Failed", "Never", None, False, False),
    ("Failed", "Always", "Evicted", False, False),
    ("Unknown", "Never", None, False, True),
])
def test_liveness_rules(phase, restart, reason, deleting, alive):
    assert pods.pod_is_alive(pod("p", phase=phase, restart=restart, reason=reason, deleting=deleting)) is alive


def test_restart_policy_defaults_to_always():
    assert pods.pod_is_alive({"metadata": {}, "status": {"phase": "Succeeded"}}) is True


# ------------------------------------------------------------------------------------------- top controller


def fetch_from(objects: dict):
    return lambda kind, api_version, namespace, name: objects.get((kind, name))


def test_replicaset_resolves_to_its_deployment():
    p = pod("web-7d4-x", owners=[ref("ReplicaSet", "web-7d4", "rs1")])
    rs = obj("web-7d4", owners=[ref("Deployment", "web", "d1")])
    assert pods.top_controller(p, fetch_from({("ReplicaSet", "web-7d4"): rs})) == TopController(
        kind="Deployment", name="web", uid="d1", api_version="apps/v1")


def test_job_resolves_to_its_cronjob_and_a_bare_job_is_itself():
    p = pod("backup-123-x", owners=[ref("Job", "backup-123", "j1", "batch/v1")])
    job = obj("backup-123", owners=[ref("CronJob", "backup", "c1", "batch/v1")])
    assert pods.top_controller(p, fetch_from({("Job", "backup-123"): job})).kind == "CronJob"
    assert pods.top_controller(p, fetch_from({("Job", "backup-123"): obj("backup-123")})) == TopController(
        kind="Job", name="backup-123", uid="j1", api_version="batch/v1")


def test_replicaset_owned_by_a_third_party_controller_reports_that_controller():
    p = pod("r-x", owners=[ref("ReplicaSet", "r-1", "rs1")])
    rs = obj("r-1", owners=[ref("Rollout", "r", "ro1", "argoproj.io/v1alpha1")])
    assert pods.top_controller(p, fetch_from({("ReplicaSet", "r-1"): rs})).kind == "Rollout"


def test_a_vanished_replicaset_is_reported_itself():
    p = pod("web-x", owners=[ref("ReplicaSet", "web-1", "rs1")])
    assert pods.top_controller(p, fetch_from({})).kind == "ReplicaSet"


@pytest.mark.parametrize(("owner", "kind"), [
    (ref("StatefulSet", "db", "s1"), "StatefulSet"),
    (ref("DaemonSet", "agent", "ds1"), "DaemonSet"),
    (ref("VirtualMachineInstance", "vm1", "v1", "kubevirt.io/v1"), "VirtualMachineInstance"),
    (ref("CloneSet", "c", "k1", "apps.kruise.io/v1alpha1"), "CloneSet"),
])
def test_other_controllers_are_taken_as_is_without_a_read(owner, kind):
    def no_reads(*args):
        raise AssertionError(f"unexpected read {args}")

    assert pods.top_controller(pod("x", owners=[owner]), no_reads).kind == kind


def test_orphans_and_non_controller_owners_are_kind_pod():
    orphan = pod("solo", uid="u9", owners=[ref("ReplicaSet", "rs", "r", controller=False)])
    assert pods.top_controller(orphan, fetch_from({})) == TopController(kind="Pod", name="solo", uid="u9",
                                                                         api_version="v1")


# ------------------------------------------------------------------------------- StatefulSet and KubeVirt


@pytest.mark.parametrize(("name", "sts", "ordinal"), [
    ("db-0", "db", 0), ("db-10", "db", 10), ("db-01", "db", None), ("db-x", "db", None), ("dbx-1", "db", None),
    ("my-db-3", "my-db", 3),
])
def test_statefulset_ordinals(name, sts, ordinal):
    assert pods.statefulset_ordinal(name, sts) == ordinal


@pytest.mark.parametrize(("spec", "ordinal", "keeps"), [
    ({"replicas": 3}, 2, True),
    ({"replicas": 3}, 3, False),  # scaled down: ordinal 3 is gone
    ({}, 0, True),  # replicas defaults to 1
    ({"replicas": 0}, 0, False),
    ({"replicas": 2, "ordinals": {"start": 5}}, 4, False),
    ({"replicas": 2, "ordinals": {"start": 5}}, 6, True),
])
def test_statefulset_ordinal_validity(spec, ordinal, keeps):
    assert pods.statefulset_keeps_ordinal(obj("db", **spec), ordinal) is keeps


def test_a_deleted_or_terminating_statefulset_keeps_nothing():
    assert not pods.statefulset_keeps_ordinal(None, 0)
    assert not pods.statefulset_keeps_ordinal(obj("db", deleting=True, replicas=3), 0)


def test_kubevirt_validity():
    vm = obj("vm1")
    owned_dying = obj("vm1", deleting=True, owners=[ref("VirtualMachine", "vm1", "vm-uid", "kubevirt.io/v1")])
    assert pods.kubevirt_keeps_addresses(obj("vm1"), None)
    assert pods.kubevirt_keeps_addresses(None, vm)
    assert pods.kubevirt_keeps_addresses(owned_dying, vm)
    assert not pods.kubevirt_keeps_addresses(owned_dying, obj("vm1", deleting=True))
    assert not pods.kubevirt_keeps_addresses(obj("vm1", deleting=True), vm)
    assert not pods.kubevirt_keeps_addresses(None, None)


# ---------------------------------------------------------------------------------------- facts and DEL


class DictAPI:
    """Answers KubernetesFacts' reads from dicts and counts them."""

    def __init__(self, objects: dict | None = None) -> None:
        self.objects = objects or {}
        self.reads: list[tuple] = []

    def pod(self, namespace, name):
        self.reads.append(("Pod", name))
        return self.objects.get(("Pod", name))

    def namespace(self, name):
        self.reads.append(("Namespace", name))
        return self.objects.get(("Namespace", name))

    def node(self, name):
        self.reads.append(("Node", name))
        return self.objects.get(("Node", name))

    def namespaced(self, api_version, kind, namespace, name):
        self.reads.append((kind, name))
        return self.objects.get((kind, name))


def test_facts_carry_labels_owner_namespace_and_node_and_are_cached_by_uid():
    api = DictAPI({
        ("Pod", "web-1-x"): pod("web-1-x", uid="u1", labels={"app": "web"}, annotations={"a": "b"},
                                owners=[ref("ReplicaSet", "web-1", "rs1")]),
        ("ReplicaSet", "web-1"): obj("web-1", owners=[ref("Deployment", "web", "d1")]),
        ("Namespace", "ns"): {"metadata": {"labels": {"team": "a"}, "annotations": {"x": "y"}}},
        ("Node", "node-1"): {"metadata": {"labels": {"zone": "z1"}}},
    })
    source = KubernetesFacts(api, node_name="node-1")

    facts = source.facts("ns", "web-1-x", "u1")
    again = source.facts("ns", "web-1-x", "u1")

    assert facts is again
    assert (facts.labels, facts.annotations, facts.owner.kind, facts.owner.name) == (
        {"app": "web"}, {"a": "b"}, "Deployment", "web")
    assert (facts.namespace_labels, facts.namespace_annotations, facts.node_labels) == (
        {"team": "a"}, {"x": "y"}, {"zone": "z1"})
    assert [r for r in api.reads if r[0] == "Pod"] == [("Pod", "web-1-x")]


def test_namespace_node_and_owner_reads_are_shared_between_pods():
    api = DictAPI({
        ("Pod", "a"): pod("a", uid="ua", owners=[ref("ReplicaSet", "rs", "r")]),
        ("Pod", "b"): pod("b", uid="ub", owners=[ref("ReplicaSet", "rs", "r")]),
        ("ReplicaSet", "rs"): obj("rs", owners=[ref("Deployment", "d", "d1")]),
    })
    source = KubernetesFacts(api, node_name="node-1")
    source.facts("ns", "a", "ua")
    source.facts("ns", "b", "ub")
    assert sorted(api.reads) == [("Namespace", "ns"), ("Node", "node-1"), ("Pod", "a"), ("Pod", "b"),
                                 ("ReplicaSet", "rs")]


def test_a_replicaset_created_again_under_its_name_is_read_again():
    """A Deployment deleted and created again with the same template gets a ReplicaSet of the old one's name and a
    new UID: its pods are owned by the new Deployment, not by the one the cache remembers from the old pods."""
    api = DictAPI({
        ("Pod", "web-5f-a"): pod("web-5f-a", uid="ua", owners=[ref("ReplicaSet", "web-5f", "rs-old")]),
        ("ReplicaSet", "web-5f"): obj("web-5f", uid="rs-old", owners=[ref("Deployment", "web", "d-old")]),
    })
    source = KubernetesFacts(api, node_name="node-1")
    assert source.facts("ns", "web-5f-a", "ua").owner.uid == "d-old"

    api.objects[("Pod", "web-5f-b")] = pod("web-5f-b", uid="ub", owners=[ref("ReplicaSet", "web-5f", "rs-new")])
    api.objects[("ReplicaSet", "web-5f")] = obj("web-5f", uid="rs-new", owners=[ref("Deployment", "web", "d-new")])
    assert source.facts("ns", "web-5f-b", "ub").owner == TopController("Deployment", "web", "d-new", "apps/v1")

    # A pod still naming a ReplicaSet that is gone reports that ReplicaSet, not the Deployment of its namesake.
    api.objects[("Pod", "web-5f-c")] = pod("web-5f-c", uid="uc", owners=[ref("ReplicaSet", "web-5f", "rs-gone")])
    assert source.facts("ns", "web-5f-c", "uc").owner == TopController("ReplicaSet", "web-5f", "rs-gone", "apps/v1")


def test_add_for_a_missing_pod_or_another_incarnation_fails():
    source = KubernetesFacts(DictAPI({("Pod", "web"): pod("web", uid="new")}), node_name="node-1")
    with pytest.raises(NotFound):
        source.facts("ns", "gone", "u")
    with pytest.raises(Conflict, match="now has UID new"):
        source.facts("ns", "web", "old")
    assert source.facts("ns", "web", "").uid == "new"  # no UID in CNI_ARGS: the live pod


def test_kubevirt_pods_are_keyed_by_their_vmi_name():
    api = DictAPI({("Pod", "virt-launcher-vm1-abcde"): pod(
        "virt-launcher-vm1-abcde", uid="u", owners=[ref("VirtualMachineInstance", "vm1", "v", "kubevirt.io/v1")])})
    facts = KubernetesFacts(api, node_name="node-1").facts("ns", "virt-launcher-vm1-abcde", "u")
    assert (facts.name, facts.owner.kind) == ("vm1", "VirtualMachineInstance")


def decide(objects: dict, name: str, uid: str):
    return KubernetesFacts(DictAPI(objects), node_name="node-1").release_decision("ns", name, uid)


def test_del_keeps_an_alive_pod():
    decision = decide({("Pod", "web"): pod("web", uid="u")}, "web", "u")
    assert (decision.action, decision.pod_dead) == (KEEP, False)


def test_del_releases_a_terminating_pod_by_its_uid():
    decision = decide({("Pod", "web"): pod("web", uid="u", deleting=True)}, "web", "u")
    assert (decision.action, decision.name, decision.uid, decision.owner_kind) == (RELEASE, "web", "u", "Pod")
    assert decision.pod_dead  # no later ADD of its sandbox is valid: the portal may refuse a late one


def test_del_of_an_older_incarnation_releases_the_old_uid_even_if_the_new_pod_lives():
    decision = decide({("Pod", "web"): pod("web", uid="new")}, "web", "old")
    assert (decision.action, decision.uid, decision.pod_dead) == (RELEASE, "old", True)


def test_standalone_mode_releases_on_every_del_but_cannot_say_the_pod_is_dead():
    from agent.podfacts import StandaloneFacts

    decision = StandaloneFacts("node-1").release_decision("ns", "web", "u")
    assert (decision.action, decision.pod_dead) == (RELEASE, False)  # a runtime may ADD the container again


def test_del_of_a_statefulset_pod_keeps_a_wanted_ordinal_and_releases_a_removed_one():
    owners = [ref("StatefulSet", "db", "s1")]
    objects = {("Pod", "db-1"): pod("db-1", uid="u", owners=owners, deleting=True),
               ("Pod", "db-3"): pod("db-3", uid="u3", owners=owners, deleting=True),
               ("StatefulSet", "db"): obj("db", replicas=3)}
    assert decide(objects, "db-1", "u").action == KEEP
    assert decide(objects, "db-3", "u3").action == RELEASE
    del objects[("StatefulSet", "db")]
    assert decide(objects, "db-1", "u").action == RELEASE


def test_del_after_the_pod_object_is_gone():
    sts = {("StatefulSet", "db"): obj("db", replicas=2)}
    assert (decide({}, "web-abc", "u").action, decide({}, "web-abc", "u").pod_dead) == (RELEASE, True)
    assert decide({}, "web-abc", "").action == SKIP  # nothing to release by
    assert decide(sts, "db-1", "u").action == KEEP  # recognised by name; the controller re-creates it
    assert decide(sts, "db-2", "u").action == RELEASE


def test_del_of_a_kubevirt_pod_keeps_while_the_vm_exists():
    owners = [ref("VirtualMachineInstance", "vm1", "v", "kubevirt.io/v1")]
    launcher = pod("virt-launcher-vm1-x", uid="u", owners=owners, deleting=True)
    live = {("Pod", "virt-launcher-vm1-x"): launcher, ("VirtualMachineInstance", "vm1"): obj("vm1")}
    assert decide(live, "virt-launcher-vm1-x", "u").action == KEEP
    gone = decide({("Pod", "virt-launcher-vm1-x"): launcher}, "virt-launcher-vm1-x", "u")
    assert (gone.action, gone.name) == (RELEASE, "vm1")


def test_a_migration_target_skips_conflict_detection():
    annotations = {pods.ANNO_KUBEVIRT_MIGRATION_JOB: "mig-1"}
    api = DictAPI({("Pod", "p"): pod("p", uid="u", annotations=annotations),
                   ("VirtualMachineInstanceMigration", "mig-1"): obj("mig-1")})
    source = KubernetesFacts(api, node_name="node-1")
    assert source.skip_conflict_detection(source.facts("ns", "p", "u"))
    del api.objects[("VirtualMachineInstanceMigration", "mig-1")]
    assert not source.skip_conflict_detection(source.facts("ns", "p", "u"))
