"""Where the agent learns about pods: the Kubernetes API (cached) or, in standalone mode, the CNI call alone.

Two jobs, each with one method:

* ADD needs :class:`PodFacts` (labels, annotations, top controller, namespace and node labels) to send to the
  portal. Kubernetes mode reads the pod once (the hot path's only API round trip) and caches the facts by pod UID
  for a few seconds, so the second NIC of the same pod, or a retried ADD, costs nothing; namespaces, the node and
  owner chains are cached longer because they change rarely (an owner under the UID the pod names, so a
  ReplicaSet re-created under its old name is read again).
* DEL needs a decision (spec §11.3 release semantics, §5.1, §5.2): keep the addresses of a pod that is still alive
  (the runtime is only re-creating its sandbox), of a StatefulSet pod whose ordinal is still wanted, and of a
  KubeVirt VM that still exists; release otherwise. This reads the pod uncached, because a stale "alive" would
  leak the addresses of every deleted pod.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Protocol

from agent.ttl_cache import TTLCache
from spiderweb.engine.errors import Conflict, InvalidInput, NotFound
from spiderweb.engine.facts import PodFacts, TopController
from spiderweb.k8s import pods

log = logging.getLogger(__name__)

KEEP = "keep"
RELEASE = "release"
SKIP = "skip"

_STATEFULSET_POD_NAME = re.compile(r"^(?P<sts>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<ordinal>0|[1-9][0-9]*)$")


@dataclass(frozen=True)
class ReleaseDecision:
    """What a DEL should do: ``keep`` (200, nothing released), ``release`` or ``skip`` (nothing to release with).

    ``name`` and ``uid`` are what the portal keys the allocation by (``name`` is the VMI name for KubeVirt pods).
    ``pod_dead``: Kubernetes says this pod UID will never be alive again (deleted, finished, or an older
    incarnation), so no later ADD of the sandbox is valid and the portal may refuse one that the DEL overtook.
    Standalone mode cannot know that: a plain runtime may ADD the same container again after a DEL.
    """

    action: str
    reason: str
    name: str = ""
    uid: str = ""
    owner_kind: str = ""
    pod_dead: bool = False


class KubeReads(Protocol):
    """The reads :class:`KubernetesFacts` needs (``spiderweb.k8s.client.KubeClient`` provides them)."""

    def pod(self, namespace: str, name: str) -> dict | None: ...

    def namespace(self, name: str) -> dict | None: ...

    def node(self, name: str) -> dict | None: ...

    def namespaced(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None: ...


class FactsSource(Protocol):
    """What the socket API asks about pods; implemented by :class:`StandaloneFacts` and :class:`KubernetesFacts`."""

    def facts(self, namespace: str, name: str, uid: str) -> PodFacts: ...

    def release_decision(self, namespace: str, name: str, uid: str) -> ReleaseDecision: ...

    def lookup(self, namespace: str, name: str, uid: str) -> PodFacts | None: ...

    def skip_conflict_detection(self, facts: PodFacts) -> bool: ...


def _pod_owner(name: str, uid: str) -> TopController:
    return TopController(kind=pods.KIND_POD, name=name, uid=uid, api_version="v1")


class StandaloneFacts:
    """No Kubernetes: the pod is who CNI_ARGS say it is, on this node, with no labels, owned by nobody, alive.

    Every DEL releases (there is no API to say the pod lives on), which is what a plain container runtime wants.
    """

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name

    def facts(self, namespace: str, name: str, uid: str) -> PodFacts:
        if not uid:
            raise InvalidInput("podUID is required in standalone mode: pass K8S_POD_UID in CNI_ARGS")
        return PodFacts(
            namespace=namespace, name=name, uid=uid, node=self.node_name, labels={}, annotations={},
            owner=_pod_owner(name, uid), namespace_labels={}, namespace_annotations={}, node_labels={},
        )

    def release_decision(self, namespace: str, name: str, uid: str) -> ReleaseDecision:
        if not uid:
            raise InvalidInput("podUID is required in standalone mode: pass K8S_POD_UID in CNI_ARGS")
        return ReleaseDecision(RELEASE, "standalone mode releases on every DEL", name, uid, pods.KIND_POD)

    def lookup(self, namespace: str, name: str, uid: str) -> PodFacts | None:
        return self.facts(namespace, name, uid) if uid else None

    def skip_conflict_detection(self, facts: PodFacts) -> bool:
        return False


class KubernetesFacts:
    """Pod facts from the API server through ``reads``, cached per node (see the module docstring)."""

    def __init__(self, reads: KubeReads, *, node_name: str, pod_ttl: float = 5.0, object_ttl: float = 30.0,
                 keep_statefulset: bool = True, keep_kubevirt: bool = True) -> None:
        self.reads = reads
        self.node_name = node_name
        # spiderpool-conf's enableStatefulSet / enableKubevirtStaticIP: switched off, such pods are stateless (§5).
        self.keep_statefulset = keep_statefulset
        self.keep_kubevirt = keep_kubevirt
        self._facts: TTLCache[PodFacts] = TTLCache(pod_ttl)
        self._namespaces: TTLCache[dict | None] = TTLCache(object_ttl)
        self._nodes: TTLCache[dict | None] = TTLCache(object_ttl)
        self._parents: TTLCache[dict | None] = TTLCache(object_ttl * 10)

    # ------------------------------------------------------------------------------------------------ ADD

    def facts(self, namespace: str, name: str, uid: str) -> PodFacts:
        """Facts of the pod ``namespace/name`` whose UID is ``uid`` (any UID when ``uid`` is empty).

        Raises ``NotFound`` when the pod does not exist and ``Conflict`` when it exists as another incarnation
        (the ADD is for a pod that was deleted and re-created meanwhile).
        """
        if uid:
            cached = self._facts.get(uid)
            if cached is not None:
                return cached
        pod = self.reads.pod(namespace, name)
        if pod is None:
            raise NotFound(f"pod {namespace}/{name} does not exist in Kubernetes")
        live_uid = pods.pod_uid(pod)
        if uid and live_uid != uid:
            raise Conflict(f"pod {namespace}/{name} now has UID {live_uid}; this request is for UID {uid}, an "
                           "incarnation that no longer exists", details={"podUID": uid, "liveUID": live_uid})
        return self._build(pod)

    def lookup(self, namespace: str, name: str, uid: str) -> PodFacts | None:
        """Like :meth:`facts` but ``None`` when the pod is gone or is another incarnation."""
        try:
            return self.facts(namespace, name, uid)
        except (NotFound, Conflict):
            return None

    def _build(self, pod: dict) -> PodFacts:
        meta = pod.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        node_name = str((pod.get("spec") or {}).get("nodeName") or self.node_name)
        facts = pods.pod_facts(
            pod,
            owner=pods.top_controller(pod, self._parent_reader(pod)),
            namespace=self._namespaces.get_or_load(namespace, lambda: _labels_only(self.reads.namespace(namespace))),
            node=self._nodes.get_or_load(node_name, lambda: _labels_only(self.reads.node(node_name))),
            default_node=self.node_name,
        )
        if facts.uid:
            self._facts.put(facts.uid, facts)
        return facts

    def _parent_reader(self, pod: dict) -> pods.OwnerFetch:
        """The reader of ``pod``'s ReplicaSet/Job as far as ``top_controller`` needs it: its controller reference
        only, cached under the UID the pod names.

        A Deployment deleted and created again with the same template makes a ReplicaSet of the same name with a
        new UID. Cached by name alone, the old ReplicaSet would answer for the new pods for minutes, naming the
        deleted Deployment as their owner (and their auto pools, which follow the new one, as "not ready"). An
        object read under the name that is not the one the pod names is not its parent: the pod's controller is
        then reported itself, as when it is gone."""
        named = str((pods.controller_of(pod) or {}).get("uid") or "")

        def read(kind: str, api_version: str, namespace: str, name: str) -> dict | None:
            def load() -> dict | None:
                obj = self.reads.namespaced(api_version, kind, namespace, name)
                found = str(((obj or {}).get("metadata") or {}).get("uid") or "")
                if obj is None or (named and found and found != named):
                    return None
                ref = pods.controller_of(obj)
                return {"metadata": {"ownerReferences": [ref] if ref else []}}

            return self._parents.get_or_load((api_version, kind, namespace, name, named), load)

        return read

    def skip_conflict_detection(self, facts: PodFacts) -> bool:
        """Spec §5.2: the target pod of a KubeVirt live migration shares its address with the source pod."""
        job = facts.annotations.get(pods.ANNO_KUBEVIRT_MIGRATION_JOB)
        if not job:
            return False
        return self.reads.namespaced("kubevirt.io/v1", "VirtualMachineInstanceMigration", facts.namespace,
                                     job) is not None

    # ------------------------------------------------------------------------------------------------ DEL

    def release_decision(self, namespace: str, name: str, uid: str) -> ReleaseDecision:
        """Decide a DEL from the pod as it is *now* (uncached read)."""
        pod = self.reads.pod(namespace, name)
        if pod is None:
            return self._decide_without_pod(namespace, name, uid)
        live_uid = pods.pod_uid(pod)
        target = uid or live_uid
        self._facts.invalidate(target)
        if target == live_uid and pods.pod_is_alive(pod):
            return ReleaseDecision(KEEP, f"pod {namespace}/{name} is still alive (sandbox re-creation)")
        owner = pods.top_controller(pod, self._parent_reader(pod))
        if owner.kind == pods.KIND_STATEFULSET and self.keep_statefulset:
            sts = self.reads.namespaced("apps/v1", pods.KIND_STATEFULSET, namespace, owner.name)
            ordinal = pods.statefulset_ordinal(name, owner.name)
            if pods.statefulset_keeps_ordinal(sts, ordinal):
                return ReleaseDecision(KEEP, f"StatefulSet {namespace}/{owner.name} still wants ordinal {ordinal}")
        elif pods.is_kubevirt_vmi(owner) and self.keep_kubevirt and self._kubevirt_keeps(namespace, owner.name):
            return ReleaseDecision(KEEP, f"KubeVirt VM {namespace}/{owner.name} still exists")
        reason = "pod is terminating or finished" if target == live_uid else "an older incarnation of the pod"
        return ReleaseDecision(RELEASE, reason, pods.endpoint_name(name, owner), target, owner.kind, pod_dead=True)

    def _decide_without_pod(self, namespace: str, name: str, uid: str) -> ReleaseDecision:
        """The pod object is gone (force-deleted, or the DEL came late): release by the request's UID.

        A StatefulSet pod is recognised by name: ``<sts>-<ordinal>`` with StatefulSet ``<sts>`` present. No other
        pod can carry that name while the StatefulSet exists (the names would collide), so this is safe, and it
        keeps the address for the pod the StatefulSet controller is about to re-create.
        """
        if not uid:
            return ReleaseDecision(SKIP, f"pod {namespace}/{name} is gone and the request has no UID; left to GC")
        match = _STATEFULSET_POD_NAME.match(name) if self.keep_statefulset else None
        if match:
            sts = self.reads.namespaced("apps/v1", pods.KIND_STATEFULSET, namespace, match["sts"])
            if pods.statefulset_keeps_ordinal(sts, int(match["ordinal"])):
                return ReleaseDecision(KEEP, f"StatefulSet {namespace}/{match['sts']} still wants "
                                             f"ordinal {match['ordinal']}")
        return ReleaseDecision(RELEASE, "pod no longer exists", name, uid, "", pod_dead=True)

    def _kubevirt_keeps(self, namespace: str, vmi_name: str) -> bool:
        vmi = self.reads.namespaced("kubevirt.io/v1", pods.KIND_VMI, namespace, vmi_name)
        vm = None
        if vmi is None or (vmi.get("metadata") or {}).get("deletionTimestamp"):
            vm = self.reads.namespaced("kubevirt.io/v1", pods.KIND_VM, namespace, vmi_name)
        return pods.kubevirt_keeps_addresses(vmi, vm)


def _labels_only(obj: dict | None) -> dict | None:
    """Keep what pod facts use from a namespace or node, so the cache holds a few strings, not whole objects."""
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    return {"metadata": {"labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}}
