"""The chaos run: the e2e lab (``tests/e2e/stack.py``) with every process killable, a churn of pods, and an audit.

:class:`ChaosLab` builds the lab on a private PostgreSQL and Redis (``services.py``) and three nodes, and keeps it
running: a :class:`Supervisor` restarts any process that exits by itself (as Kubernetes restarts a crashed
container) and records the crash. :class:`Monkey` SIGKILLs the portal, the Celery worker, the watcher and the
node agents at random moments and restarts them, stalls the portal with SIGSTOP/SIGCONT, and restarts Redis and
PostgreSQL once each. :class:`Churn` drives the workload: Deployments scaling up and down, pods deleted (gracefully
and with ``--grace-period=0 --force``), StatefulSet pods deleted, Jobs whose pod succeeds, and a node that dies and
is removed. :func:`run` does it all and returns a :class:`Report`; ``python -m tests.chaos`` prints it.

Every random choice comes from one seeded RNG per actor (the seed is printed; ``SPIDERWEB_CHAOS_SEED`` replays
the choices, though not the machine's timing).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from tests.chaos.services import PrivatePostgres, PrivateRedis

log = logging.getLogger("chaos")

NAMESPACE = "chaos"
POOL = "chaos"
POOL_SUBNET, POOL_GATEWAY, POOL_RANGE = "10.77.0.0/16", "10.77.0.1", "10.77.16.1-10.77.31.254"
NODES = ("node-a", "node-b", "node-c")
CRASHING_NODE = "node-c"
STATEFULSET = "db"
DATABASE = "spiderweb_chaos"
ANNO_NS_DEFAULT_V4 = "ipam.spidernet.io/default-ipv4-ippool"


@dataclass
class Settings:
    """One run's size and pace. ``gc_env`` goes to the portal, worker and watcher (``SPIDERPOOL_GC_*``)."""

    pods: int = 200  # pod incarnations to create (the churn goes on until that many were seen)
    seed: int = 0
    deployments: int = 4
    max_replicas: int = 10  # each Deployment scales between 0 and this
    statefulset_replicas: int = 3
    jobs: int = 3
    kubelet_workers: int = 6
    reorder_del_add: float = 0.5  # chance that a re-created pod's ADD runs before its old incarnation's DEL
    backlog: int = 20  # the churn waits while more pods than this are pending or terminating
    kill_every: tuple[float, float] = (2.0, 6.0)  # seconds between two chaos events
    downtime: tuple[float, float] = (0.2, 3.0)  # seconds a killed process stays down
    pause: tuple[float, float] = (2.0, 5.0)  # seconds the portal stays stopped (SIGSTOP)
    pauses: int = 2
    min_kills: int = 8  # the churn does not end before the monkey has killed this many processes
    churn_timeout: float = 240.0  # the churn stops here even short of ``pods``
    reclaim_timeout: float = 120.0  # after the churn: how long to wait for zero leaks and settled pods
    gc_env: dict = field(default_factory=dict)
    workdir: Path | None = None


@dataclass
class Report:
    seed: int
    pods: int = 0
    kills: int = 0
    pauses: int = 0
    postgres_restarts: int = 0
    redis_restarts: int = 0
    node_removed: bool = False
    crashes: list = field(default_factory=list)  # (process, exit code, seconds into the run)
    kubelet: dict = field(default_factory=dict)
    churn_s: float = 0.0
    reclaim_s: float = float("inf")
    dupes: int = -1
    leaks: int = -1
    lost: int = -1
    moved: int = -1
    unsettled: int = -1
    statefulset_before: dict = field(default_factory=dict)
    findings: dict = field(default_factory=dict)
    diff: str = ""
    events: list = field(default_factory=list)
    workdir: str = ""
    error: str = ""

    @property
    def passed(self) -> bool:
        return (not self.error and self.dupes == 0 and self.leaks == 0 and self.lost == 0 and self.moved == 0
                and self.unsettled == 0)

    def last_line(self) -> str:
        reclaim = "inf" if self.reclaim_s == float("inf") else f"{self.reclaim_s:.1f}"
        return (f"chaos pods={self.pods} kills={self.kills} dupes={self.dupes} leaks={self.leaks} "
                f"reclaim_s={reclaim}")

    def to_json(self) -> str:
        data = asdict(self)
        data["reclaim_s"] = None if self.reclaim_s == float("inf") else self.reclaim_s
        data["passed"] = self.passed
        return json.dumps(data, indent=1, default=str)


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------- database


def django_on_private_database(postgres: PrivatePostgres, broker_url: str) -> str:
    """Create the run's database on the private server, point Django at it and migrate; return its URL."""
    import psycopg

    with psycopg.connect(postgres.url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DATABASE}")
    url = postgres.database_url(DATABASE)
    os.environ["DATABASE_URL"] = url
    os.environ["CELERY_BROKER_URL"] = broker_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["SPIDERWEB_DB_CONN_MAX_AGE"] = "0"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return url


def db_retry(fn, attempts: int = 30):
    """Run ``fn`` (ORM reads); after PostgreSQL restarted, drop the dead connection and try again."""
    from django.db import connections
    from django.db.utils import InterfaceError, OperationalError

    for attempt in range(attempts):
        try:
            return fn()
        except (OperationalError, InterfaceError):
            connections.close_all()
            if attempt == attempts - 1:
                raise
            time.sleep(1)


# --------------------------------------------------------------------------------------------- processes


class Supervisor(threading.Thread):
    """Restart a process that exited by itself, as the kubelet restarts a crashed container; record the crash.

    A process the :class:`Monkey` is working on (its lock held) is left alone."""

    def __init__(self, lab: ChaosLab, started: float):
        super().__init__(name="chaos-supervisor", daemon=True)
        self.lab, self.started = lab, started
        self.crashes: list[tuple[str, int, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            for name in sorted(self.lab.victims()):
                service, lock = self.lab.services[name], self.lab.locks[name]
                if not lock.acquire(blocking=False):
                    continue
                try:
                    if name in self.lab.victims() and service.process is not None \
                            and service.process.poll() is not None:
                        code = service.process.returncode
                        self.crashes.append((name, code, round(time.monotonic() - self.started, 1)))
                        say(f"{name} exited by itself (code {code}); restarting it. Its log ends with:\n"
                            + "\n".join("    " + line for line in service.log_tail(1200).splitlines()[-12:]))
                        try:
                            service.start()
                        except Exception as exc:  # noqa: BLE001 - tried again next round
                            say(f"{name} did not come back yet: {str(exc)[:300]}")
                finally:
                    lock.release()


class Monkey(threading.Thread):
    """Chaos at random moments until stopped: SIGKILL + restart of a random process, SIGSTOP/SIGCONT of the portal,
    and one restart each of PostgreSQL and Redis at a random point of the churn's progress."""

    def __init__(self, lab: ChaosLab, settings: Settings, progress, started: float):
        super().__init__(name="chaos-monkey", daemon=True)
        self.lab, self.settings, self.progress, self.started = lab, settings, progress, started
        self.rng = random.Random(f"{settings.seed}-monkey")
        self.stopped = threading.Event()
        self.kills = Counter()
        self.pauses = 0
        self.events: list[tuple[float, str]] = []
        self.postgres_at = self.rng.uniform(0.2, 0.7)
        self.redis_at = self.rng.uniform(0.2, 0.7)
        self.pause_at = sorted(self.rng.uniform(0.1, 0.9) for _ in range(settings.pauses))
        self.error: str = ""

    @property
    def musts_done(self) -> bool:
        """Both restarts, every pause and ``min_kills`` kills happened (the churn does not end before)."""
        return (self.lab.postgres.restarts >= 1 and self.lab.redis.restarts >= 1 and not self.pause_at
                and sum(self.kills.values()) >= self.settings.min_kills)

    def event(self, what: str) -> None:
        self.events.append((round(time.monotonic() - self.started, 1), what))
        say(what)

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.rng.uniform(*self.settings.kill_every)):
                self.strike()
        except Exception:  # noqa: BLE001 - reported, and the run fails
            self.error = traceback.format_exc()
            say(f"the monkey failed:\n{self.error}")

    def strike(self) -> None:
        progress = self.progress()
        if self.lab.postgres.restarts == 0 and progress >= self.postgres_at:
            t0 = time.monotonic()
            self.lab.postgres.restart()
            self.event(f"PostgreSQL restarted ({time.monotonic() - t0:.1f} s)")
        elif self.lab.redis.restarts == 0 and progress >= self.redis_at:
            t0 = time.monotonic()
            self.lab.redis.restart()
            self.event(f"Redis restarted ({time.monotonic() - t0:.1f} s); its queues are lost")
        elif self.pause_at and progress >= self.pause_at[0]:
            self.pause_at.pop(0)
            portal, seconds = self.lab.services["portal"], self.rng.uniform(*self.settings.pause)
            with self.lab.locks["portal"]:
                portal.pause()
                self.event(f"portal stopped (SIGSTOP) for {seconds:.1f} s")
                time.sleep(seconds)
                portal.resume()
            self.pauses += 1
        else:
            name = self.rng.choice(sorted(self.lab.victims()))
            down = self.rng.uniform(*self.settings.downtime)
            service = self.lab.services[name]
            with self.lab.locks[name]:
                if name not in self.lab.victims():
                    return
                service.kill()
                self.kills[name] += 1
                self.event(f"SIGKILL {name} (down {down:.1f} s)")
                time.sleep(down)
                for attempt in range(5):
                    try:
                        service.start()
                        break
                    except RuntimeError as exc:
                        say(f"{name} did not restart (attempt {attempt + 1}): {str(exc)[:300]}")
                        service.kill()
                        time.sleep(2)


# --------------------------------------------------------------------------------------------- the lab


class ChaosLab:
    """The e2e lab on private services with three nodes; every process is restartable. A context manager."""

    def __init__(self, settings: Settings, workdir: Path):
        self.settings, self.workdir = settings, workdir
        self.services: dict = {}  # name -> ServiceProcess (portal, worker, watcher, agent-<node>)
        self.locks: dict[str, threading.Lock] = {}
        self.retired: set[str] = set()  # processes of a node that died: not restarted, not killed again
        self._cleanups: list = []

    def victims(self) -> set[str]:
        return set(self.services) - self.retired

    def __enter__(self) -> ChaosLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _add(self, service) -> None:
        self.services[service.name] = service
        self.locks[service.name] = threading.Lock()
        self._cleanups.append(service.stop)

    def _build(self) -> None:
        from tests.e2e.stack import (
            AgentProcess,
            PortalProcess,
            WebhookProcess,
            agent_identity,
            cluster_rows_create,
            cni_bin_dirs,
            crds_apply,
            kubelet_start,
            lab_env,
            spider_coordinator_apply,
            watcher_process,
            worker_process,
        )
        from tests.lab.controlplane import ControlPlane, ensure_built, find_bin_dir
        from tests.netlab.topology import Topology

        t0 = time.monotonic()
        kubelet_log = logging.FileHandler(self.workdir / "kubelet.log")
        kubelet_log.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(levelname)s %(message)s"))
        for name in ("tests.e2e.fake_kubelet", "kubernetes"):
            logger = logging.getLogger(name)
            logger.handlers[:] = [kubelet_log]
            logger.propagate = False
            logger.setLevel(logging.INFO if name == "tests.e2e.fake_kubelet" else logging.WARNING)
        self.postgres = PrivatePostgres(self.workdir).start()
        self._cleanups.append(self.postgres.stop)
        self.redis = PrivateRedis(self.workdir).start()
        self._cleanups.append(self.redis.stop)
        database_url = django_on_private_database(self.postgres, self.redis.url(0))
        say(f"private PostgreSQL on :{self.postgres.port}, Redis on :{self.redis.port}, database migrated "
            f"({time.monotonic() - t0:.0f} s)")

        bin_dir = find_bin_dir() or ensure_built()
        self.plane = ControlPlane(self.workdir / "plane", bin_dir).start()
        self._cleanups.append(self.plane.stop)
        from spiderweb.k8s.client import api_client

        self.api = api_client(str(self.plane.kubeconfig))
        self._cleanups.append(self.api.close)
        crds_apply(self.api)

        env = lab_env(database_url=database_url, kubeconfig=self.plane.kubeconfig, broker_url=self.redis.url(0),
                      extra=self.settings.gc_env)
        portal = PortalProcess(self.workdir, env)
        self._add(portal)
        portal.start()
        webhooks = WebhookProcess(self.workdir, env, portal=portal, plane=self.plane)
        self._add(webhooks)
        webhooks.start()
        portal.register_webhooks(self.api, webhooks.url)
        self._add(worker_process(self.workdir, env).start())
        self._add(watcher_process(self.workdir, env).start())

        kubeconfig = agent_identity(self.plane, self.api)
        self.topology = Topology().build(node_names=NODES)
        self._cleanups.append(self.topology.teardown)
        tokens = cluster_rows_create(NODES)
        spider_coordinator_apply(self.plane, self.api)
        cni_bin = cni_bin_dirs(self.workdir, bin_dir)
        for name, node in self.topology.nodes.items():
            self._add(AgentProcess(node, portal=portal, token=tokens[name], kubeconfig=kubeconfig,
                                   run_dir=self.workdir / name / "run", log=self.workdir / f"agent-{name}.log")
                      .start())
        self.kubelet = kubelet_start(self.plane, self.api, self.topology, self.workdir, cni_bin,
                                     workers=self.settings.kubelet_workers,
                                     reorder_del_add=self.settings.reorder_del_add, seed=self.settings.seed)
        self._cleanups.append(lambda: self.kubelet.stop(cni_del=False))
        say(f"lab up: control plane, portal, worker + beat, watcher, {len(NODES)} nodes with an agent each, "
            f"fake kubelet ({time.monotonic() - t0:.0f} s)")

    def close(self) -> None:
        """Tear everything down in reverse order; every step is attempted."""
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                say(f"teardown step failed: {exc}")

    def crash_node(self, name: str) -> None:
        """The node dies (kubelet and agent gone, no DEL for its pods) and an admin removes it: its Node is marked
        NotReady, then deleted, and its pods are force-deleted, as the pod GC does with orphans."""
        agent = f"agent-{name}"
        with self.locks[agent]:
            self.retired.add(agent)
            self.services[agent].kill()
        self.kubelet.crash_node(name)
        core = k8s.CoreV1Api(self.api)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        core.patch_node_status(name, {"status": {"conditions": [{
            "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
            "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp}]}})
        core.delete_node(name)
        pods = core.list_namespaced_pod(NAMESPACE, field_selector=f"spec.nodeName={name}").items
        for pod in pods:
            force_delete(core, pod)
        say(f"node {name} died and was removed; {len(pods)} of its pods force-deleted")


def force_delete(core: k8s.CoreV1Api, pod) -> None:
    """``kubectl delete pod --grace-period=0 --force`` (gone already is fine)."""
    try:
        core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0,
                                   body=k8s.V1DeleteOptions(grace_period_seconds=0))
    except ApiException as exc:
        if exc.status != 404:
            raise


# --------------------------------------------------------------------------------------------- the churn


class PodRecorder(threading.Thread):
    """Watches the namespace's pods: every UID ever seen, and the current pods by UID."""

    def __init__(self, api: k8s.ApiClient):
        super().__init__(name="chaos-pods", daemon=True)
        self.core = k8s.CoreV1Api(api)
        self.uids: set[str] = set()
        self.current: dict[str, object] = {}
        self.stopped = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                listed = self.core.list_namespaced_pod(NAMESPACE)
                with self._lock:
                    self.current = {p.metadata.uid: p for p in listed.items}
                    self.uids.update(self.current)
                for event in k8s_watch.Watch().stream(self.core.list_namespaced_pod, NAMESPACE,
                                                      resource_version=listed.metadata.resource_version,
                                                      timeout_seconds=10, _request_timeout=20):
                    pod = event["object"]
                    with self._lock:
                        self.uids.add(pod.metadata.uid)
                        if event["type"] == "DELETED":
                            self.current.pop(pod.metadata.uid, None)
                        else:
                            self.current[pod.metadata.uid] = pod
                    if self.stopped.is_set():
                        return
            except Exception:  # noqa: BLE001 - relist
                time.sleep(0.5)

    def counts(self) -> Counter:
        """running (with an address), pending, terminating, finished."""
        counts = Counter()
        with self._lock:
            pods = list(self.current.values())
        for pod in pods:
            if pod.metadata.deletion_timestamp:
                counts["terminating"] += 1
            elif pod.status.phase in ("Succeeded", "Failed"):
                counts["finished"] += 1
            elif pod.status.phase == "Running" and pod.status.pod_ip:
                counts["running"] += 1
            else:
                counts["pending"] += 1
        return counts

    def pods(self) -> list:
        with self._lock:
            return list(self.current.values())


def deployment(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "strategy": {"rollingUpdate": {"maxUnavailable": "100%", "maxSurge": "100%"}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "registry.invalid/pause:3.10"}],
                                           "terminationGracePeriodSeconds": 10}}}}


def statefulset(name: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "db", "image": "registry.invalid/pause:3.10"}],
                                           "terminationGracePeriodSeconds": 10}}}}


def job(name: str, exit_after: float) -> dict:
    from tests.e2e.fake_kubelet import ANNO_RUN_SECONDS

    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "completions": 1, "parallelism": 1,
                     "template": {"metadata": {"labels": {"job": name},
                                               "annotations": {ANNO_RUN_SECONDS: str(exit_after)}},
                                  "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                                           "containers": [{"name": "task",
                                                           "image": "registry.invalid/busybox:1.36"}]}}}}


class Churn:
    """The workload: set up, then random changes until enough pods were created (see :class:`Settings`)."""

    def __init__(self, lab: ChaosLab, settings: Settings, recorder: PodRecorder):
        self.lab, self.settings, self.recorder = lab, settings, recorder
        self.core, self.apps = k8s.CoreV1Api(lab.api), k8s.AppsV1Api(lab.api)
        self.batch, self.custom = k8s.BatchV1Api(lab.api), k8s.CustomObjectsApi(lab.api)
        self.rng = random.Random(f"{settings.seed}-churn")
        self.actions = Counter()
        self.jobs_created = 0
        self.node_crash_at = self.rng.uniform(0.3, 0.6)
        self.node_crashed = False
        self.deployments = [f"web{i}" for i in range(settings.deployments)]

    def progress(self) -> float:
        return len(self.recorder.uids) / self.settings.pods

    def setup(self) -> dict[str, list[str]]:
        """Pool, namespace, workloads; returns each StatefulSet pod's addresses once all run."""
        from spiderweb.k8s.crd import GROUP, VERSION

        self.custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": POOL},
            "spec": {"subnet": POOL_SUBNET, "gateway": POOL_GATEWAY, "ips": [POOL_RANGE]}})
        self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(
            name=NAMESPACE, annotations={ANNO_NS_DEFAULT_V4: json.dumps([POOL])})))
        self.core.create_namespaced_service(NAMESPACE, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": STATEFULSET},
            "spec": {"clusterIP": "None", "selector": {"app": STATEFULSET}, "ports": [{"port": 5432}]}})
        self.apps.create_namespaced_stateful_set(NAMESPACE, statefulset(STATEFULSET,
                                                                        self.settings.statefulset_replicas))
        for name in self.deployments:
            self.apps.create_namespaced_deployment(NAMESPACE, deployment(name, self.rng.randint(
                1, self.settings.max_replicas)))
        names = {f"{STATEFULSET}-{i}" for i in range(self.settings.statefulset_replicas)}

        def statefulset_running():
            pods = {p.metadata.name: p for p in self.core.list_namespaced_pod(
                NAMESPACE, label_selector=f"app={STATEFULSET}").items}
            if set(pods) != names or not all(p.status.phase == "Running" and p.status.pod_ips
                                             for p in pods.values()):
                return None
            return {name: sorted(ip.ip for ip in pod.status.pod_ips) for name, pod in pods.items()}

        from tests.mirror.lab import wait_for

        before = wait_for("the StatefulSet's pods running", statefulset_running, timeout=120, interval=0.5)
        say(f"StatefulSet addresses before the churn: {before}")
        return before

    def step(self) -> None:
        """One random change."""
        if not self.node_crashed and self.progress() >= self.node_crash_at:
            self.node_crashed = True
            self.lab.crash_node(CRASHING_NODE)
            self.actions["node removed"] += 1
            return
        due_jobs = int(min(1.0, self.progress() / 0.8) * self.settings.jobs + 0.5)
        if self.jobs_created < min(due_jobs, self.settings.jobs):
            name = f"task{self.jobs_created}"
            self.batch.create_namespaced_job(NAMESPACE, job(name, exit_after=self.rng.uniform(1, 4)))
            self.jobs_created += 1
            self.actions["job created"] += 1
            return
        roll = self.rng.random()
        pods = [p for p in self.recorder.pods() if not p.metadata.deletion_timestamp
                and p.status.phase not in ("Succeeded", "Failed")]
        stateless = [p for p in pods if (p.metadata.labels or {}).get("app", "").startswith("web")]
        stateful = [p for p in pods if (p.metadata.labels or {}).get("app") == STATEFULSET]
        if roll < 0.5 or not stateless:
            name = self.rng.choice(self.deployments)
            replicas = self.rng.randint(0, self.settings.max_replicas)
            self.apps.patch_namespaced_deployment_scale(name, NAMESPACE, {"spec": {"replicas": replicas}})
            self.actions["scale"] += 1
        elif roll < 0.68:
            for pod in self.rng.sample(stateless, min(len(stateless), self.rng.randint(1, 3))):
                force_delete(self.core, pod)
                self.actions["pod force-deleted"] += 1
        elif roll < 0.8:
            for pod in self.rng.sample(stateless, min(len(stateless), self.rng.randint(1, 3))):
                try:
                    self.core.delete_namespaced_pod(pod.metadata.name, NAMESPACE)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                self.actions["pod deleted"] += 1
        elif stateful:
            pod = self.rng.choice(stateful)
            if self.rng.random() < 0.5:
                force_delete(self.core, pod)
                self.actions["StatefulSet pod force-deleted"] += 1
            else:
                try:
                    self.core.delete_namespaced_pod(pod.metadata.name, NAMESPACE)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                self.actions["StatefulSet pod deleted"] += 1

    def settled(self) -> bool:
        """Every wanted pod runs with an address and nothing is terminating or pending."""
        counts = self.recorder.counts()
        wanted = self.settings.statefulset_replicas + sum(
            self.apps.read_namespaced_deployment_scale(name, NAMESPACE).spec.replicas or 0
            for name in self.deployments)
        return counts["terminating"] == 0 and counts["pending"] == 0 and counts["running"] == wanted


# --------------------------------------------------------------------------------------------- the run


def run(settings: Settings) -> Report:
    """Build the lab, churn under chaos, wait for GC, audit; never raises for a finding (see ``Report``)."""
    report = Report(seed=settings.seed)
    workdir = settings.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / f"spiderweb-chaos-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    report.workdir = str(workdir)
    say(f"seed={settings.seed} (set SPIDERWEB_CHAOS_SEED={settings.seed} to replay its choices); "
        f"target {settings.pods} pods; work directory {workdir}; GC env {settings.gc_env or 'defaults'}")
    started = time.monotonic()
    try:
        with ChaosLab(settings, workdir) as lab:
            _churn_and_audit(lab, settings, report, started)
    except Exception:  # noqa: BLE001 - the report carries it
        report.error = traceback.format_exc()
        say(f"the run failed:\n{report.error}")
    return report


def _churn_and_audit(lab: ChaosLab, settings: Settings, report: Report, started: float) -> None:
    from tests.chaos.audit import allocation_rows, audit

    recorder = PodRecorder(lab.api)
    recorder.start()
    churn = Churn(lab, settings, recorder)
    report.statefulset_before = churn.setup()
    supervisor = Supervisor(lab, started)
    monkey = Monkey(lab, settings, churn.progress, started)
    supervisor.start()
    monkey.start()

    def status_line() -> str:
        counts = recorder.counts()
        allocations = db_retry(lambda: len(allocation_rows()))
        stats = lab.kubelet.stats
        return (f"pods={len(recorder.uids)}/{settings.pods} running={counts['running']} pending={counts['pending']} "
                f"terminating={counts['terminating']} finished={counts['finished']} allocations={allocations} "
                f"kills={sum(monkey.kills.values())} crashes={len(supervisor.crashes)} | kubelet adds={stats['adds']} "
                f"add_failures={stats['add_failures']} dels={stats['dels']} del_failures={stats['del_failures']} "
                f"reordered={stats['reordered']}")

    churn_started = time.monotonic()
    last_status = 0.0
    try:
        while time.monotonic() - churn_started < settings.churn_timeout:
            if churn.progress() >= 1.0 and monkey.musts_done and churn.node_crashed:
                break
            counts = recorder.counts()
            if counts["pending"] + counts["terminating"] <= settings.backlog:
                churn.step()
            time.sleep(churn.rng.uniform(0.3, 1.5))
            if time.monotonic() - last_status > 10:
                say(status_line())
                last_status = time.monotonic()
        else:
            say(f"churn stopped by its time limit ({settings.churn_timeout:.0f} s) short of its goals")
    finally:
        monkey.stopped.set()
        monkey.join()
    # Every process back: the supervisor keeps restarting what the chaos left dead.
    for name in lab.victims():
        with lab.locks[name]:
            service = lab.services[name]
            service.resume()
            if not service.alive:
                service.start()
    end = time.monotonic()
    report.churn_s = round(end - churn_started, 1)
    say(f"churn over after {report.churn_s} s: {dict(churn.actions)}; {status_line()}")

    findings = None
    deadline = end + settings.reclaim_timeout
    zero_at = None
    while time.monotonic() < deadline:
        findings = db_retry(lambda: audit(lab.api, NAMESPACE, kubelet=lab.kubelet, with_netns=False))
        # A StatefulSet pod force-deleted at the churn's end is running again with its address while its old
        # sandbox, whose DEL the kubelet reorders after the new ADD, still holds it: wait for that DEL too.
        settled = churn.settled() and not lab.kubelet.late_dels_pending()
        if not findings.leaks and settled:
            zero_at = time.monotonic()
            break
        say(f"waiting for GC: {findings.summary()} settled={settled} ({time.monotonic() - end:.0f} s after the "
            f"churn)")
        time.sleep(2)
    if zero_at is not None:
        report.reclaim_s = round(zero_at - end, 1)
    supervisor.stopped.set()
    supervisor.join()

    findings = db_retry(lambda: audit(lab.api, NAMESPACE, kubelet=lab.kubelet,
                                      statefulset_before=report.statefulset_before))
    report.pods = len(recorder.uids)
    report.kills = sum(monkey.kills.values())
    report.pauses = monkey.pauses
    report.postgres_restarts, report.redis_restarts = lab.postgres.restarts, lab.redis.restarts
    report.node_removed = churn.node_crashed
    report.crashes = supervisor.crashes
    report.kubelet = dict(lab.kubelet.stats)
    report.events = monkey.events
    report.dupes, report.leaks, report.lost = len(findings.dupes), len(findings.leaks), len(findings.lost)
    report.moved, report.unsettled = len(findings.moved), len(findings.unsettled)
    report.findings = findings.to_dict()
    report.diff = findings.diff()
    if monkey.error:
        report.error = f"the monkey failed:\n{monkey.error}"
    recorder.stopped.set()
    say(f"kills by process: {dict(monkey.kills)}; portal pauses {monkey.pauses}; PostgreSQL restarts "
        f"{lab.postgres.restarts}; Redis restarts {lab.redis.restarts}; crashes (exited by themselves) "
        f"{supervisor.crashes or 'none'}; kubelet {dict(lab.kubelet.stats)}")
    say(f"final audit: {findings.summary()}\n{report.diff}")


def lab_available() -> str | None:
    """Why this machine cannot run the lab (None if it can)."""
    from tests.lab.controlplane import find_bin_dir

    if os.geteuid() != 0:
        return "the chaos lab needs root (network namespaces, veth, macvlan, bind mounts)"
    for tool in ("ip", "runuser", "redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (run tests/infra/services.sh)"
    if find_bin_dir() is None and not os.environ.get("SPIDERWEB_REQUIRE_LAB"):
        return "lab binaries not built (run `make lab-build`, or set SPIDERWEB_REQUIRE_LAB=1)"
    return None


def main(argv: list[str] | None = None, *, exit_code_from_findings: bool = True, **defaults) -> int:
    """``python -m tests.chaos [--pods N] [--gc-interval S] [--report FILE] ...``: one run, its summary printed last.

    ``defaults`` are :class:`Settings` fields (the command line wins). Exit 0 if the run is clean (or, with
    ``exit_code_from_findings`` false, if it ran at all), 1 otherwise, 2 if this machine cannot run it."""
    import argparse

    base = Settings(**{k: v for k, v in defaults.items() if k in Settings.__dataclass_fields__})
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=base.pods)
    parser.add_argument("--seed", type=int, default=None, help="default: $SPIDERWEB_CHAOS_SEED, else random")
    parser.add_argument("--gc-interval", type=int, default=None,
                        help="SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION for the run (default: the product's)")
    parser.add_argument("--reclaim-timeout", type=float, default=base.reclaim_timeout)
    parser.add_argument("--churn-timeout", type=float, default=base.churn_timeout)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    why_not = lab_available()
    if why_not:
        print(f"chaos: cannot run: {why_not}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    base.gc_env = {k: v for k, v in os.environ.items() if k.startswith("SPIDERPOOL_GC_")}
    if args.gc_interval is not None:
        base.gc_env["SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION"] = str(args.gc_interval)
    base.pods, base.reclaim_timeout, base.churn_timeout = args.pods, args.reclaim_timeout, args.churn_timeout
    base.workdir = args.workdir
    seed = args.seed if args.seed is not None else os.environ.get("SPIDERWEB_CHAOS_SEED")
    base.seed = int(seed) if seed else random.SystemRandom().randrange(1, 10**6)
    report = run(base)
    if args.report:
        args.report.write_text(report.to_json())
    print(report.last_line(), flush=True)
    if report.error:
        return 1
    return 0 if report.passed or not exit_code_from_findings else 1
