"""What a chaos run checks once the churn has stopped: nothing duplicated, nothing leaked, nothing lost.

Three views of who holds an address are compared:

* the API server: ``status.podIPs`` of every live pod (a pod is live while it exists and has not finished);
* the database: every :class:`~spiderweb.ipam.models.Allocation` row (pod namespace/name from its endpoint, pod UID);
* the kernel: the addresses on ``eth0`` in the network namespace of every sandbox the fake kubelet holds for a live
  pod (and of old incarnations whose DEL has not run yet).

From them:

* **dupes**: addresses held by more than one pod (namespace, name, UID) in any view or across views;
* **leaks**: allocations whose pod (namespace/name *and* UID) is not a live pod, except a StatefulSet pod whose
  ordinal is still wanted (its addresses wait for the re-created pod, spec §5.1);
* **lost**: Running pods whose ``podIPs`` differ from their allocations (an address freed under a live pod is a
  duplicate waiting to happen);
* **moved**: StatefulSet pods whose addresses differ from the ones recorded before the churn;
* **unsettled**: live pods not Running with an address, or still terminating.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

STATEFULSET_POD = re.compile(r"^(?P<sts>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<ordinal>0|[1-9][0-9]*)$")
FINISHED = ("Succeeded", "Failed")


@dataclass
class Findings:
    """The result of one audit; each list holds one readable line per problem."""

    dupes: dict[str, list[str]] = field(default_factory=dict)  # address -> its holders
    leaks: list[str] = field(default_factory=list)
    leak_kinds: Counter = field(default_factory=Counter)  # "<why>, <node>" -> leaked allocations
    lost: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    live_pods: int = 0
    allocations: int = 0

    @property
    def clean(self) -> bool:
        return not (self.dupes or self.leaks or self.lost or self.moved)

    def summary(self) -> str:
        return (f"live_pods={self.live_pods} allocations={self.allocations} dupes={len(self.dupes)} "
                f"leaks={len(self.leaks)} lost={len(self.lost)} moved={len(self.moved)} "
                f"unsettled={len(self.unsettled)}"
                + (f" leak kinds {dict(self.leak_kinds)}" if self.leak_kinds else ""))

    def diff(self, limit: int = 40) -> str:
        """Every problem, grouped, at most ``limit`` lines per group."""
        lines = []
        groups = (("duplicate addresses (address: holders)", [f"{a}: {', '.join(h)}" for a, h in
                                                               sorted(self.dupes.items())]),
                  ("leaked allocations (no live pod with that namespace/name and UID)", self.leaks),
                  ("Running pods whose podIPs differ from their allocations", self.lost),
                  ("StatefulSet pods whose addresses changed", self.moved),
                  ("pods not settled (not Running with an address, or terminating)", self.unsettled))
        for title, items in groups:
            if items:
                lines.append(f"{title}: {len(items)}")
                lines += [f"  {item}" for item in items[:limit]]
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")
        return "\n".join(lines) or "no findings"

    def to_dict(self) -> dict:
        return {"dupes": self.dupes, "leaks": self.leaks, "leak_kinds": dict(self.leak_kinds), "lost": self.lost,
                "moved": self.moved,
                "unsettled": self.unsettled, "live_pods": self.live_pods, "allocations": self.allocations}


def allocation_rows() -> list[tuple[str, str, str, str, str]]:
    """(namespace, pod name, pod UID, address, node) of every allocation in the database."""
    from spiderweb.ipam.models import Allocation

    return list(Allocation.objects.values_list("endpoint__namespace", "endpoint__name", "pod_uid", "address",
                                               "node"))


def eth0_addresses(netns: str) -> list[str]:
    """The addresses on ``eth0`` in a network namespace (none if it or the link is gone)."""
    proc = subprocess.run(["ip", "netns", "exec", netns, "ip", "-j", "addr", "show", "dev", "eth0"],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return [a["local"] for link in json.loads(proc.stdout) for a in link.get("addr_info", [])
            if a.get("scope") == "global"]


def statefulset_wants(apps: k8s.AppsV1Api, namespace: str, name: str, cache: dict) -> bool:
    """Whether ``name`` is ``<sts>-<ordinal>`` of a StatefulSet that still wants that ordinal (spec §5.1)."""
    match = STATEFULSET_POD.match(name)
    if not match:
        return False
    key = (namespace, match["sts"])
    if key not in cache:
        try:
            cache[key] = apps.read_namespaced_stateful_set(match["sts"], namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            cache[key] = None
    sts = cache[key]
    if sts is None or sts.metadata.deletion_timestamp:
        return False
    start = (sts.spec.ordinals.start or 0) if sts.spec.ordinals else 0
    return start <= int(match["ordinal"]) < start + (sts.spec.replicas if sts.spec.replicas is not None else 1)


def audit(api: k8s.ApiClient, namespace: str, *, kubelet=None, statefulset_before: dict[str, list[str]] | None = None,
          with_netns: bool = True) -> Findings:
    """Compare the three views (see the module docstring) for the pods of ``namespace`` and every allocation."""
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    pods = core.list_namespaced_pod(namespace).items
    rows = allocation_rows()
    findings = Findings(allocations=len(rows))
    live = {(p.metadata.namespace, p.metadata.name, p.metadata.uid): p for p in pods if p.status.phase not in FINISHED}
    findings.live_pods = len(live)

    holders: dict[str, set[str]] = defaultdict(set)

    def who(ns: str, name: str, uid: str) -> str:
        return f"{ns}/{name} ({uid[:8]})"

    by_name = {(p.metadata.namespace, p.metadata.name): p for p in pods}

    def gone(ns: str, name: str, uid: str) -> tuple[str, str]:
        """(kind, explanation) of a pod that is not live."""
        pod = by_name.get((ns, name))
        if pod is None:
            return "pod gone", "no such pod"
        if pod.metadata.uid != uid:
            return "pod re-created", f"the pod is another incarnation now ({pod.metadata.uid[:8]})"
        return "pod finished", f"the pod has finished ({pod.status.phase})"

    for (ns, name, uid), pod in live.items():
        for ip in pod.status.pod_ips or []:
            holders[ip.ip].add(who(ns, name, uid))
    per_address = defaultdict(list)
    for ns, name, uid, address, _node in rows:
        holders[address].add(who(ns, name, uid))
        per_address[address].append(who(ns, name, uid))
    if with_netns and kubelet is not None:
        sandboxes = [s for s in list(kubelet.sandboxes.values()) if (s.namespace, s.name, s.uid) in live]
        sandboxes += list(kubelet._detached.values())
        for sandbox in sandboxes:
            for address in eth0_addresses(sandbox.netns):
                holders[address].add(who(sandbox.namespace, sandbox.name, sandbox.uid))
    for address, owners in holders.items():
        rows_here = len(per_address.get(address, []))
        if len(owners) > 1 or rows_here > 1:
            findings.dupes[address] = sorted(owners) + ([f"{rows_here} database rows"] if rows_here > 1 else [])

    sts_cache: dict = {}
    by_pod = defaultdict(set)
    for ns, name, uid, address, node in rows:
        by_pod[(ns, name, uid)].add(address)
        if (ns, name, uid) not in live and not statefulset_wants(apps, ns, name, sts_cache):
            kind, why = gone(ns, name, uid)
            findings.leaks.append(f"{address} held by {who(ns, name, uid)} on {node}: {why}")
            findings.leak_kinds[f"{kind}, {node}"] += 1

    for (ns, name, uid), pod in sorted(live.items()):
        ips = {ip.ip for ip in pod.status.pod_ips or []}
        running = pod.status.phase == "Running" and not pod.metadata.deletion_timestamp
        if running and ips != by_pod.get((ns, name, uid), set()):
            findings.lost.append(f"{who(ns, name, uid)} on {pod.spec.node_name}: podIPs {sorted(ips)}, "
                                 f"allocations {sorted(by_pod.get((ns, name, uid), set()))}")
        if not running or not ips:
            findings.unsettled.append(f"{who(ns, name, uid)} phase={pod.status.phase} node={pod.spec.node_name} "
                                      f"terminating={bool(pod.metadata.deletion_timestamp)} podIPs={sorted(ips)}")

    current = {p.metadata.name: sorted(ip.ip for ip in p.status.pod_ips or []) for p in pods
               if p.status.phase not in FINISHED}
    for name, before in sorted((statefulset_before or {}).items()):
        if current.get(name) != before:
            findings.moved.append(f"{namespace}/{name}: before {before}, now {current.get(name, 'no live pod')}")
    return findings
