"""A fake kubelet for the e2e lab: it plays the kubelet (and the scheduler) for the netns lab's nodes.

What it does, as a kubelet with a CRI runtime would (see /work/shared/notes/k8s-lab.md §4-§5):

* registers one Node per lab node (Ready, allocatable, InternalIP) and renews a Lease in ``kube-node-lease``
  every ``lease_interval`` seconds;
* binds unscheduled pods to its nodes round-robin (there is no kube-scheduler in the lab), except a pod whose
  required node affinity names its node by ``metadata.name`` (how the DaemonSet controller pins its pods): that
  pod goes to that node, or stays Pending when the node is not one of ours;
* realizes each pod bound to one of its nodes: a network namespace (the sandbox) and CNI ADD through the real
  **Multus thin plugin**, whose cluster network is a NetworkAttachmentDefinition holding the
  macvlan + spiderpool + coordinator conflist; then patches the pod status (Running, Ready, podIP/podIPs);
* on a CNI failure records a Warning Event ``FailedCreatePodSandBox`` carrying the CNI error, leaves the pod
  Pending and retries with exponential backoff;
* on ``deletionTimestamp`` runs CNI DEL, removes the sandbox and force-deletes the pod (grace 0, UID precondition);
* a pod annotated ``e2e.spiderweb.io/run-seconds: "N"`` finishes N seconds after it started (a Job's pod): its
  containers terminate with exit code 0, the pod becomes ``Succeeded`` and its sandbox is torn down (CNI DEL), as a
  kubelet does once every container of a ``restartPolicy: Never/OnFailure`` pod has exited.
* runs up to ``workers`` pods at once (a pod is never synced by two workers at once), as the kubelet's pod workers;
* after a failed ADD runs a best-effort CNI DEL before removing the netns, as containerd's sandbox clean-up does;
* :meth:`FakeKubelet.crash_node` plays a node that died: from then on nothing happens on it (no lease renewal, no
  CNI call, not even DEL), and no pod is bound to it any more;
* with ``reorder_del_add`` > 0, when a pod is re-created under the same name (a StatefulSet pod) the kubelet runs
  the new incarnation's ADD first and the old one's DEL a moment later, with that probability: the real kubelet
  keys its pod workers by UID, so nothing orders the two.

Two things make one machine look like several nodes to the CNI plugins:

* the plugins run inside the node's netns (``ip netns exec``), where ``127.0.0.1`` is the node's own loopback,
  so :class:`LoopbackForwarder` makes the API server's loopback port answer there too (Multus talks to it);
* every node has its own agent socket, but the NetworkAttachmentDefinition is cluster-wide and names one socket
  path; ``ip netns exec`` runs the command in a private mount namespace, where the node's run directory is
  bind-mounted over the shared path, so each node's plugins reach that node's agent (as on real, separate hosts).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import itertools
import json
import logging
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from tests.netlab.runtime import pod_args

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 15.0
CNI_TIMEOUT = 120
# A pod whose containers exit by themselves after this many seconds (there are no real containers to exit).
ANNO_RUN_SECONDS = "e2e.spiderweb.io/run-seconds"
FINISHED = ("Succeeded", "Failed")


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def discard(response) -> None:
    """Read and drop an unparsed reply, so its connection goes back to the pool clean (reusable)."""
    response.read()
    response.release_conn()


class LoopbackForwarder:
    """Accept TCP on 127.0.0.1:``port`` inside a network namespace and relay each connection to 127.0.0.1:``port``
    of the namespace this process runs in (TLS passes through untouched, so certificates still match).

    The listening socket is made by a short-lived thread that first joins the target netns (``setns`` changes the
    calling thread only); a socket stays in the namespace it was created in.
    """

    def __init__(self, netns_path: str, port: int):
        self.netns_path, self.port = netns_path, port
        self.listener: socket.socket | None = None
        self._closing = False
        error: list[BaseException] = []

        def make_listener():
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open(netns_path, os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns({netns_path})")
                finally:
                    os.close(fd)
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
                sock.listen(64)
                self.listener = sock
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                error.append(exc)

        maker = threading.Thread(target=make_listener)
        maker.start()
        maker.join()
        if error:
            raise error[0]
        threading.Thread(target=self._accept, name=f"fwd-{port}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                inside, _ = self.listener.accept()
            except OSError:
                return
            try:
                outside = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError:
                inside.close()
                continue
            outside.settimeout(None)
            for src, dst in ((inside, outside), (outside, inside)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            # The second pump to finish closes both ends.
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

    def close(self) -> None:
        self._closing = True
        if self.listener is not None:
            self.listener.close()


class ForwarderProcess:
    """A :class:`LoopbackForwarder` in a process of its own (``python -m tests.e2e.fake_kubelet NETNS PORT``).

    In the kubelet's process the relay's threads compete with its pod workers for one GIL: with hundreds of pods
    starting at once (every Multus call reads the pod and the NAD through the relay) they took half of that
    process's CPU and Multus' API calls timed out. The child exits when its stdin closes, so it dies with us.
    """

    def __init__(self, netns_path: str, port: int):
        self.process = subprocess.Popen([sys.executable, "-m", "tests.e2e.fake_kubelet", netns_path, str(port)],
                                        cwd=Path(__file__).resolve().parents[2], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)
        line = self.process.stdout.readline()
        if line.strip() != b"ready":
            self.close()
            raise RuntimeError(f"the relay into {netns_path} did not start (exit {self.process.returncode})")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()


@dataclass
class KubeletNode:
    """A lab node as the kubelet sees it: its netns, address, and files (its own 'host filesystem')."""

    name: str
    netns: str  # the name under /var/run/netns
    ip: str
    run_dir: Path  # this node's agent socket directory, bind-mounted over the shared path for CNI calls
    multus_conf: dict  # the node's /etc/cni/net.d/00-multus.conf

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.netns}"


@dataclass
class Sandbox:
    """A realized pod: its netns, the container ID CNI saw, and the CNI result."""

    uid: str
    namespace: str
    name: str
    node: str
    netns: str
    container_id: str
    result: dict | None = None
    finish_at: float | None = None  # monotonic time its containers exit (``ANNO_RUN_SECONDS``), else never


class CniError(Exception):
    """The CNI entry point (Multus) exited non-zero; ``msg`` is the CNI error's message."""

    def __init__(self, command: str, code, msg: str, stderr: str):
        super().__init__(f"CNI {command} failed (code {code}): {msg}")
        self.code, self.msg, self.stderr = code, msg, stderr


class FakeKubelet:
    """The kubelet of every node in ``nodes``. ``start()`` registers them and serves; ``stop()`` tears down."""

    def __init__(self, api: k8s.ApiClient, topology, nodes: list[KubeletNode], *, multus_bin: str,
                 cni_path: list[str], shared_run_dir: Path, api_port: int, workers: int = 3,
                 lease_interval: float = 10.0, watch_timeout: int = 5, reorder_del_add: float = 0.0,
                 seed: int | None = None, forwarder_processes: bool = False):
        self.core = k8s.CoreV1Api(api)
        self.leases = k8s.CoordinationV1Api(api)
        self.topology = topology
        self.nodes = {n.name: n for n in nodes}
        self.multus_bin = multus_bin
        self.cni_path = cni_path
        self.shared_run_dir = shared_run_dir
        self.api_port = api_port
        self.workers = workers
        self.lease_interval = lease_interval
        self.watch_timeout = watch_timeout
        self.sandboxes: dict[tuple[str, str], Sandbox] = {}
        self.failures: dict[str, int] = {}  # pod UID -> failed ADDs so far (for the backoff)
        self.not_before: dict[str, float] = {}  # pod UID -> monotonic time of the next ADD attempt
        self.crashed: set[str] = set()  # nodes that died (crash_node): nothing runs there any more
        self.reorder_del_add = reorder_del_add
        self.stats: Counter = Counter()  # adds, add_failures, dels, del_failures, reordered, completed, binds
        self._detached: dict[str, Sandbox] = {}  # old incarnations whose DEL runs after the new one's ADD
        self._rng = random.Random(seed)
        self._round_robin = itertools.cycle(sorted(self.nodes))
        self._queue: queue.Queue = queue.Queue()
        self._pending: set = set()
        self._active: set = set()
        # The pods as the watch last showed them, as a kubelet's informer cache holds them: a sync reads here, not
        # the API server (a storm's 1,000 pods cost the lab's API server a GET per pod event otherwise).
        self._seen: dict[tuple[str, str], k8s.V1Pod] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._forwarders: list[LoopbackForwarder | ForwarderProcess] = []
        self._forwarder = ForwarderProcess if forwarder_processes else LoopbackForwarder

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> FakeKubelet:
        for node in self.nodes.values():
            self._forwarders.append(self._forwarder(node.netns_path, self.api_port))
            self._register(node)
            self._renew_lease(node)
        self._spawn("lease", self._lease_loop)
        self._spawn("watch", self._watch_loop)
        for i in range(self.workers):
            self._spawn(f"worker-{i}", self._worker_loop)
        return self

    def stop(self, *, cni_del: bool = True) -> None:
        """Stop serving, then tear down every sandbox still there (``workers`` at a time): CNI DEL (unless
        ``cni_del`` is false, for a lab that is thrown away with its database) and netns removal."""
        self._stop.set()
        for _ in range(self.workers):
            self._queue.put(None)
        for thread in self._threads:
            # Not the watch: it ends by itself when its current request does (watch_timeout) and acts on nothing.
            if thread.name != "kubelet-watch":
                thread.join(timeout=30)

        def teardown(sandbox: Sandbox) -> None:
            try:
                if not cni_del or sandbox.node in self.crashed:
                    raise RuntimeError("no CNI DEL")
                self._teardown(sandbox)
            except Exception as exc:  # noqa: BLE001 - best effort at shutdown, reported in the log
                if cni_del:
                    log.warning("teardown of %s/%s at stop failed: %s", sandbox.namespace, sandbox.name, exc)
                self.topology.remove_netns(sandbox.netns)

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(teardown, [*self.sandboxes.values(), *self._detached.values()]))
        self.sandboxes.clear()
        self._detached.clear()
        for forwarder in self._forwarders:
            forwarder.close()

    def crash_node(self, name: str) -> None:
        """The node dies: its kubelet stops (no lease renewal, no CNI call, not even DEL) and its pods stay bound to
        it; the scheduler binds no new pod there. Its sandboxes stay as a powered-off machine leaves them."""
        with self._lock:
            self.crashed.add(name)
            self._round_robin = itertools.cycle(sorted(set(self.nodes) - self.crashed))

    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=f"kubelet-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------------------------------------ nodes

    def _register(self, node: KubeletNode) -> None:
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name,
                                                       "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        }
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        stamp = now_rfc3339()
        capacity = {"cpu": "4", "memory": "8Gi", "pods": "110"}
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname", "address": node.name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "fake kubelet is posting ready status", "lastHeartbeatTime": stamp,
                            "lastTransitionTime": stamp}],
            "nodeInfo": {"kubeletVersion": "v1.37.2-fake", "containerRuntimeVersion": "fake://0",
                         "operatingSystem": "linux", "architecture": "amd64", "machineID": "", "systemUUID": "",
                         "bootID": "", "kernelVersion": "", "osImage": "", "kubeProxyVersion": ""},
        }
        self.core.patch_node_status(node.name, {"status": status})

    def _renew_lease(self, node: KubeletNode) -> None:
        spec = {"holderIdentity": node.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro()}
        try:
            self.leases.patch_namespaced_lease(node.name, LEASE_NAMESPACE, {"spec": spec})
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.leases.create_namespaced_lease(LEASE_NAMESPACE, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE},
                "spec": spec})

    def _lease_loop(self) -> None:
        while not self._stop.wait(self.lease_interval):
            for node in self.nodes.values():
                if node.name in self.crashed:
                    continue
                try:
                    self._renew_lease(node)
                except Exception as exc:  # noqa: BLE001 - a missed heartbeat is retried next round
                    log.warning("lease of %s not renewed: %s", node.name, exc)

    # ------------------------------------------------------------------------------------------ work queue

    def enqueue(self, key: tuple[str, str]) -> None:
        """Queue a pod for sync; a pod is never synced by two workers at once (as client-go's workqueue)."""
        if self._stop.is_set():
            return
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
            if key not in self._active:
                self._queue.put(key)

    def _worker_loop(self) -> None:
        while True:
            key = self._queue.get()
            if key is None or self._stop.is_set():
                return
            with self._lock:
                self._pending.discard(key)
                self._active.add(key)
            try:
                self.sync(*key)
            except Exception:  # noqa: BLE001 - one pod's trouble must not stop the kubelet
                log.exception("sync of pod %s/%s failed; retrying", *key)
                self._retry_later(key, BACKOFF_FIRST)
            finally:
                with self._lock:
                    self._active.discard(key)
                    if key in self._pending:
                        self._queue.put(key)

    def _retry_later(self, key: tuple[str, str], delay: float) -> None:
        timer = threading.Timer(delay, self.enqueue, args=(key,))
        timer.daemon = True
        timer.start()

    def _watch_loop(self) -> None:
        """List once, then watch from the last event seen; each time a watch request ends (``watch_timeout``),
        every known pod is synced again from the cache (level-based, as a kubelet's periodic sync). Any watch error
        (410 Gone included) lists again."""
        resource_version = ""
        while not self._stop.is_set():
            try:
                if resource_version:
                    for key in list(self._seen):
                        self.enqueue(key)
                else:
                    resource_version = self._relist()
                stream = k8s_watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, resource_version=resource_version,
                    timeout_seconds=self.watch_timeout, _request_timeout=self.watch_timeout + 10)
                for event in stream:
                    if self._stop.is_set():
                        return
                    pod = event["object"]
                    key = (pod.metadata.namespace, pod.metadata.name)
                    if event["type"] == "DELETED":
                        self._seen.pop(key, None)
                    else:
                        self._seen[key] = pod
                    resource_version = pod.metadata.resource_version
                    self.enqueue(key)
            except Exception as exc:  # noqa: BLE001 - relist after any watch error (410 Gone included)
                resource_version = ""
                if not self._stop.is_set():
                    log.info("pod watch ended (%s); relisting", exc)
                    time.sleep(0.5)

    def _relist(self) -> str:
        """Replace the cache with a full list; sync every pod listed and every pod that vanished meanwhile."""
        listed = self.core.list_pod_for_all_namespaces()
        seen = {(pod.metadata.namespace, pod.metadata.name): pod for pod in listed.items}
        vanished = set(self._seen) - set(seen)
        self._seen = seen
        for key in [*seen, *vanished]:
            self.enqueue(key)
        return listed.metadata.resource_version

    # ------------------------------------------------------------------------------------------ pods

    def sync(self, namespace: str, name: str) -> None:
        """Bring one pod to where it should be: bound, running with a network, or gone."""
        key = (namespace, name)
        pod = self._seen.get(key)
        if pod is not None and pod.spec.node_name in self.crashed:
            return  # a dead node's kubelet does nothing
        sandbox = self.sandboxes.get(key)
        if sandbox is not None and sandbox.node in self.crashed and (pod is None or pod.metadata.uid != sandbox.uid):
            # The node died with this sandbox on it and the pod has left it (deleted, or re-created elsewhere).
            self.sandboxes.pop(key, None)
            self.topology.remove_netns(sandbox.netns)
            sandbox = None
        if sandbox is not None and (pod is None or pod.metadata.uid != sandbox.uid):
            # The pod (this incarnation of it) is gone.
            if (pod is not None and not pod.metadata.deletion_timestamp and self.reorder_del_add
                    and self._rng.random() < self.reorder_del_add):
                self.sandboxes.pop(key, None)
                self._detach(sandbox)  # the new incarnation's ADD goes first
            else:
                self._teardown(sandbox)
        if pod is None:
            return
        uid = pod.metadata.uid
        if pod.metadata.deletion_timestamp:
            if key in self.sandboxes:
                self._teardown(self.sandboxes[key])
            self._force_delete(pod)
            return
        if not pod.spec.node_name:
            with self._lock:
                node_name = self._node_for(pod)
            if node_name is not None:
                self._bind(pod, node_name)
            return
        if pod.spec.node_name not in self.nodes:
            return
        if pod.status.phase in FINISHED:
            if key in self.sandboxes:  # finished (by us or by someone else): its sandbox goes, as a kubelet does
                self._teardown(self.sandboxes[key])
            return
        if key in self.sandboxes:
            self._finish_when_due(pod, self.sandboxes[key])
            return
        if pod.spec.node_name not in self.nodes:
            return
        wait = self.not_before.get(uid, 0) - time.monotonic()
        if wait > 0:
            self._retry_later(key, wait)
            return
        self._realize(pod)

    def _node_for(self, pod) -> str | None:
        """Where an unscheduled pod goes: the node its required node affinity names by ``metadata.name`` (a
        DaemonSet's pod), ``None`` when that node is not ours; round-robin for every other pod."""
        affinity = pod.spec.affinity.node_affinity if pod.spec.affinity else None
        required = affinity.required_during_scheduling_ignored_during_execution if affinity else None
        named = [value for term in (required.node_selector_terms if required else None) or []
                 for field in term.match_fields or [] if field.key == "metadata.name" and field.operator == "In"
                 for value in field.values or []]
        if not named:
            return next(self._round_robin)
        return next((name for name in named if name in self.nodes and name not in self.crashed), None)

    def _bind(self, pod, node_name: str) -> None:
        body = k8s.V1Binding(metadata=k8s.V1ObjectMeta(name=pod.metadata.name, uid=pod.metadata.uid),
                             target=k8s.V1ObjectReference(api_version="v1", kind="Node", name=node_name))
        # The generated client cannot parse the reply (kubernetes-client/python#547): skip the parsing.
        discard(self.core.create_namespaced_pod_binding(pod.metadata.name, pod.metadata.namespace, body,
                                                        _preload_content=False))
        self.stats["binds"] += 1
        log.info("bound %s/%s to %s", pod.metadata.namespace, pod.metadata.name, node_name)

    def _realize(self, pod) -> None:
        meta = pod.metadata
        node = self.nodes[pod.spec.node_name]
        sandbox = Sandbox(uid=meta.uid, namespace=meta.namespace, name=meta.name, node=node.name,
                          netns=self.topology.pod_netns(f"pod-{meta.uid[:8]}"), container_id=uuid.uuid4().hex)
        try:
            sandbox.result = self.cni(node, "ADD", sandbox)
        except CniError as exc:
            self.stats["add_failures"] += 1
            try:  # containerd's clean-up of a failed sandbox: DEL (best effort), then the netns goes
                self.cni(node, "DEL", sandbox)
            except (CniError, subprocess.TimeoutExpired) as del_exc:
                log.info("DEL after the failed ADD of %s/%s failed too: %s", meta.namespace, meta.name, del_exc)
            self.topology.remove_netns(sandbox.netns)
            failures = self.failures[meta.uid] = self.failures.get(meta.uid, 0) + 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
            self.not_before[meta.uid] = time.monotonic() + delay
            message = (f'Failed to create pod sandbox: plugin type="multus" name="multus-cni-network" failed (add): '
                       f"{exc.msg}")
            self._event(pod, node.name, "FailedCreatePodSandBox", message)
            log.info("CNI ADD of %s/%s failed (retry in %.0fs): %s", meta.namespace, meta.name, delay, exc.msg)
            self._retry_later((meta.namespace, meta.name), delay)
            return
        self.stats["adds"] += 1
        self.sandboxes[(meta.namespace, meta.name)] = sandbox
        self.failures.pop(meta.uid, None)
        self.not_before.pop(meta.uid, None)
        self._patch_running(pod, node, sandbox)
        run_seconds = (meta.annotations or {}).get(ANNO_RUN_SECONDS)
        if run_seconds is not None:
            sandbox.finish_at = time.monotonic() + float(run_seconds)
            self._retry_later((meta.namespace, meta.name), float(run_seconds))

    def _finish_when_due(self, pod, sandbox: Sandbox) -> None:
        """A running pod whose containers exit by themselves: ``Succeeded`` once due, then its sandbox goes."""
        if sandbox.finish_at is None:
            return
        wait = sandbox.finish_at - time.monotonic()
        if wait > 0:
            self._retry_later((sandbox.namespace, sandbox.name), wait)
            return
        stamp = now_rfc3339()
        containers = [{"name": c.name, "image": c.image, "imageID": f"fake://{c.image}", "ready": False,
                       "started": False, "restartCount": 0,
                       "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": stamp}}}
                      for c in pod.spec.containers]
        conditions = [{"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": stamp}
                      for t in ("Ready", "ContainersReady")]
        self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": {
            "phase": "Succeeded", "conditions": conditions, "containerStatuses": containers}})
        log.info("pod %s/%s finished", pod.metadata.namespace, pod.metadata.name)
        self._teardown(sandbox)

    def _teardown(self, sandbox: Sandbox) -> None:
        """CNI DEL, then remove the netns; the sandbox is forgotten only once DEL succeeded (else retried)."""
        try:
            self.cni(self.nodes[sandbox.node], "DEL", sandbox)
        except Exception:
            self.stats["del_failures"] += 1
            raise
        self.stats["dels"] += 1
        self.topology.remove_netns(sandbox.netns)
        self.sandboxes.pop((sandbox.namespace, sandbox.name), None)

    def late_dels_pending(self) -> int:
        """Old incarnations' sandboxes still waiting for their (reordered or retried) DEL: until it runs, such a
        sandbox keeps its addresses in the kernel, so a run is not settled."""
        return len(self._detached)

    def _detach(self, sandbox: Sandbox, delay: float | None = None) -> None:
        """Tear down an old incarnation's sandbox later, off the pod's key (retried until DEL succeeds)."""
        if delay is None:
            self.stats["reordered"] += 1
            delay = self._rng.uniform(0.5, 3.0)
        self._detached[sandbox.container_id] = sandbox

        def teardown():
            if self._stop.is_set() or sandbox.container_id not in self._detached:
                return
            if sandbox.node in self.crashed:
                self._detached.pop(sandbox.container_id, None)
                self.topology.remove_netns(sandbox.netns)
                return
            try:
                self.cni(self.nodes[sandbox.node], "DEL", sandbox)
            except Exception as exc:  # noqa: BLE001 - retried, as the kubelet retries a failed StopPodSandbox
                self.stats["del_failures"] += 1
                log.info("late DEL of %s/%s (uid %s) failed; retrying: %s", sandbox.namespace, sandbox.name,
                         sandbox.uid, exc)
                self._detach(sandbox, min(BACKOFF_MAX, 2 * delay))
                return
            self.stats["dels"] += 1
            self._detached.pop(sandbox.container_id, None)
            self.topology.remove_netns(sandbox.netns)

        timer = threading.Timer(delay, teardown)
        timer.daemon = True
        timer.start()

    def _force_delete(self, pod) -> None:
        meta = pod.metadata
        options = k8s.V1DeleteOptions(grace_period_seconds=0, preconditions=k8s.V1Preconditions(uid=meta.uid))
        try:
            self.core.delete_namespaced_pod(meta.name, meta.namespace, body=options, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone already, or another incarnation now
                raise
        self.failures.pop(meta.uid, None)
        self.not_before.pop(meta.uid, None)

    def _patch_running(self, pod, node: KubeletNode, sandbox: Sandbox) -> None:
        ips = [ip["address"].split("/")[0] for ip in (sandbox.result or {}).get("ips", [])]
        ips.sort(key=lambda ip: ":" in ip)  # IPv4 first, as the kubelet reports dual-stack pods
        stamp = now_rfc3339()
        conditions = [{"type": t, "status": "True", "lastTransitionTime": stamp}
                      for t in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready",
                                "PodScheduled")]
        containers = [{"name": c.name, "image": c.image, "imageID": f"fake://{c.image}",
                       "containerID": f"fake://{uuid.uuid4().hex}", "ready": True, "started": True,
                       "restartCount": 0, "state": {"running": {"startedAt": stamp}}}
                      for c in pod.spec.containers]
        status = {"phase": "Running", "hostIP": node.ip, "hostIPs": [{"ip": node.ip}], "startTime": stamp,
                  "conditions": conditions, "containerStatuses": containers}
        if ips:
            status["podIP"] = ips[0]
            status["podIPs"] = [{"ip": ip} for ip in ips]
        self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})
        log.info("pod %s/%s running on %s with %s", pod.metadata.namespace, pod.metadata.name, node.name, ips)

    def _event(self, pod, node_name: str, reason: str, message: str) -> None:
        meta = pod.metadata
        stamp = now_rfc3339()
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.name}.", "namespace": meta.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": meta.namespace, "name": meta.name,
                               "uid": meta.uid, "resourceVersion": meta.resource_version},
            "reason": reason, "message": message, "type": "Warning", "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": "kubelet", "host": node_name},
            "reportingComponent": "kubelet", "reportingInstance": node_name,
        }
        discard(self.core.create_namespaced_event(meta.namespace, body, _preload_content=False))

    # ------------------------------------------------------------------------------------------ CNI

    def cni(self, node: KubeletNode, command: str, sandbox: Sandbox) -> dict | None:
        """Run the Multus thin plugin in the node's netns as a runtime runs its CNI config; return its result."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": sandbox.container_id,
            "CNI_NETNS": f"/var/run/netns/{sandbox.netns}",
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": pod_args(sandbox.namespace, sandbox.name, sandbox.uid, sandbox.container_id),
            "CNI_PATH": ":".join(self.cni_path),
        }
        # A private mount namespace (ip netns exec makes one) where this node's run directory is the shared path.
        script = 'mount --bind "$1" "$2" && exec "$3"'
        proc = subprocess.run(
            ["ip", "netns", "exec", node.netns, "sh", "-c", script, "sh", str(node.run_dir),
             str(self.shared_run_dir), self.multus_bin],
            input=json.dumps(node.multus_conf).encode(), env=env, capture_output=True, timeout=CNI_TIMEOUT,
        )
        out = proc.stdout.decode().strip()
        if proc.returncode != 0:
            try:
                error = json.loads(out)
            except ValueError:
                error = {"msg": out or proc.stderr.decode()[-2000:]}
            raise CniError(command, error.get("code"), str(error.get("msg", error)), proc.stderr.decode())
        return json.loads(out) if out else None


if __name__ == "__main__":  # ForwarderProcess: relay NETNS_PATH's 127.0.0.1:PORT here until stdin closes
    LoopbackForwarder(sys.argv[1], int(sys.argv[2]))
    print("ready", flush=True)
    sys.stdin.buffer.read()
