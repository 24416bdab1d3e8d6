"""`make bench-cni`: pods through the full CNI chain on a real kernel, at several concurrencies.

Each pod: a network namespace (made before the clock starts, as the runtime does) → the conflist run as a
runtime runs it: macvlan (real plugin) → our `spiderpool` IPAM executable → the node agent → the portal
(gunicorn) → PostgreSQL, then the `coordinator` (veth pair, routes, rules, neighbours). Then DEL for every pod.
Two nodes in network namespaces behind a bridge, one agent each. Prints p50/p99 ADD latency per concurrency,
the executables' start-up time (median wall time of a VERSION call, next to a bare `python3 -I -S` measured the
same way in the same run, and the import time `python3 -X importtime` reports for the plugin module), the agents'
RSS after each run and, for the concurrency-16 run, the RSS as the pods accumulate (the plateau); last line
(concurrency 16): cni_adds_per_s=<n> dupes=<n> leaks=<n> rss_mb=<max agent RSS after it> start_ms=<start-up>

BENCH_PODS (default 1000) pods per run, BENCH_CONCURRENCY (default 1,16,64) the runs. The RSS goal is stated for
3,000 pods at concurrency 16: `BENCH_PODS=3000 BENCH_CONCURRENCY=16 make bench-cni`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.bench.common import percentile, setup_django_on_bench_db

PODS = int(os.environ.get("BENCH_PODS", "1000"))
CONCURRENCY = [int(c) for c in os.environ.get("BENCH_CONCURRENCY", "1,16,64").split(",")]
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _portal(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPIDERWEB_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    log = open(workdir / "portal.log", "w")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        # The chart's portal command (helm/spiderweb/templates/portal.yaml): its config module (threads, keep-alive)
        # and its default worker count.
        [sys.executable, "-m", "gunicorn", "spiderweb.wsgi:application", "--config=python:spiderweb.gunicorn_conf",
         "--bind", f"127.0.0.1:{port}", "--workers", "3", "--no-control-socket"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("portal did not start: " + (workdir / "portal.log").read_text())


def _median_wall_seconds(command: list[str], runs: int = 41) -> float:
    """Median wall time of `command` (VERSION on stdin): the median, so other work on the machine weighs less."""
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": "VERSION"}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, input=b'{"cniVersion":"1.0.0"}', env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _import_seconds(plugin: str, module: str, runs: int = 11) -> float:
    """Median cumulative import time of `module` as `python3 -X importtime` reports it when running `plugin`."""
    interpreter = Path(plugin).read_text(encoding="utf-8", errors="replace").splitlines()[0][2:].split()
    values = []
    for _ in range(runs):
        done = subprocess.run([*interpreter, "-X", "importtime", plugin], input=b'{"cniVersion":"1.0.0"}',
                              env={"CNI_COMMAND": "VERSION"}, capture_output=True, check=True)
        for line in done.stderr.decode().splitlines():
            fields = line.split("|")
            if len(fields) == 3 and fields[2].strip() == module:
                values.append(int(fields[1]) / 1e6)
    return statistics.median(values) if values else float("nan")


class _RssSampler(threading.Thread):
    """Agent RSS (max over the agents) each time another `step` pods have been added: the growth curve."""

    def __init__(self, agents, step: int) -> None:
        super().__init__(daemon=True)
        self.agents, self.step = agents, step
        self.added = 0
        self.lock = threading.Lock()
        self.samples: list[tuple[int, float]] = []
        self.done = threading.Event()

    def count(self) -> None:
        with self.lock:
            self.added += 1

    def run(self) -> None:
        next_mark = self.step
        while not self.done.wait(0.2):
            if self.added >= next_mark:
                self.samples.append((self.added, max(a.rss_kib() for a in self.agents) / 1024))
                next_mark += self.step


def main() -> None:
    setup_django_on_bench_db()
    from spiderweb.ipam import services
    from spiderweb.ipam.models import Allocation
    from spiderweb.tenancy.models import Tenant
    from tests.ipam import factories
    from tests.netlab.conftest import AgentProcess, conflist, main_plugin_dir
    from tests.netlab.runtime import Runtime, pod_args
    from tests.netlab.topology import Topology, sh

    tenant = Tenant.objects.create(name="bench")
    services.ippool_create(tenant=tenant, name="bench-v4", spec={
        "subnet": "10.77.0.0/16", "ips": ["10.77.16.1-10.77.63.254"], "gateway": "10.77.0.1"})
    factories.coordinator(factories.coordinator_document(hijackCIDR=[], service_cidr=["10.96.0.0/12"]), owner=tenant)
    workdir = Path(tempfile.mkdtemp(prefix="swbench-", dir="/tmp"))
    topology = Topology().build()
    portal, url = _portal(workdir)
    agents = []
    try:
        from cni.package import build

        bin_dir = workdir / "bin"
        bin_dir.mkdir()
        build(bin_dir)
        cni_path = [str(bin_dir), main_plugin_dir()]
        for name, node in topology.nodes.items():
            _, token = services.node_credential_issue(node_name=name)
            agents.append(AgentProcess(node, url, token, workdir))
        runtimes = [Runtime(cni_path=cni_path, node_netns=n.netns) for n in topology.nodes.values()]
        confs = [conflist("1.0.0", a.socket, v4=("bench-v4",), v6=()) for a in agents]
        plugin = str(bin_dir / "spiderpool")
        interpreter = Path(plugin).read_text(encoding="utf-8", errors="replace").splitlines()[0][2:].split()
        startup = _median_wall_seconds([plugin])
        bare = _median_wall_seconds([interpreter[0], "-I", "-S", "-c", "pass"])
        imports = _import_seconds(plugin, "cni.spiderpool")
        print(f"bench-cni: {PODS} pods per run, 2 nodes, macvlan + spiderpool + coordinator, CNI 1.0.0")
        print(f"executable start-up (spiderpool VERSION, median of 41): {startup * 1e3:.1f} ms; bare "
              f"`{interpreter[0]} -I -S -c pass`: {bare * 1e3:.1f} ms; import of cni.spiderpool "
              f"(-X importtime, median of 11): {imports * 1e3:.1f} ms")
        print(f"{'conc':>4} {'ADD/s':>7} {'ADD p50 ms':>11} {'ADD p99 ms':>11} {'DEL/s':>7} {'dupes':>6} "
              f"{'leaks':>6} {'agent RSS MB':>13}")
        headline = None
        for concurrency in CONCURRENCY:
            pods = []
            for i in range(PODS):
                netns = f"{topology.prefix}-p{i}"
                sh("ip", "netns", "add", netns)
                pods.append({"i": i, "netns": netns, "uid": str(uuid.uuid4()), "cid": uuid.uuid4().hex,
                             "name": f"bench-{concurrency}-{i}"})

            sampler = _RssSampler(agents, max(PODS // 10, 1))

            def add(pod, sampler=sampler):
                node = pod["i"] % len(runtimes)
                start = time.perf_counter()
                result = runtimes[node].add(confs[node], container_id=pod["cid"],
                                            netns=f"/var/run/netns/{pod['netns']}", ifname="eth0",
                                            args=pod_args("bench", pod["name"], pod["uid"], pod["cid"]))
                pod["result"] = result
                sampler.count()
                return time.perf_counter() - start

            def delete(pod):
                node = pod["i"] % len(runtimes)
                runtimes[node].delete(confs[node], container_id=pod["cid"], netns=f"/var/run/netns/{pod['netns']}",
                                      ifname="eth0", args=pod_args("bench", pod["name"], pod["uid"], pod["cid"]),
                                      cached=pod.get("result"))

            with ThreadPoolExecutor(concurrency) as pool:
                sampler.start()
                start = time.perf_counter()
                latencies = list(pool.map(add, pods))
                add_rate = PODS / (time.perf_counter() - start)
                sampler.done.set()
                sampler.join()
                addresses = [ip["address"] for pod in pods for ip in pod["result"]["ips"]]
                dupes = len(addresses) - len(set(addresses))
                dupes += Allocation.objects.count() - len(set(Allocation.objects.values_list("address", flat=True)))
                rss = max(a.rss_kib() for a in agents) / 1024
                start = time.perf_counter()
                list(pool.map(delete, pods))
                del_rate = PODS / (time.perf_counter() - start)
            leaks = Allocation.objects.count()
            for node in topology.nodes.values():
                links = json.loads(sh("ip", "-j", "link", netns=node.netns).stdout)
                leaks += sum(1 for link in links if link["ifname"].startswith("veth"))
                table500 = sh("ip", "route", "show", "table", "500", netns=node.netns, check=False).stdout
                leaks += len(table500.strip().splitlines())
            for pod in pods:
                sh("ip", "netns", "del", pod["netns"], check=False)
            print(f"{concurrency:>4} {add_rate:>7.1f} {percentile(latencies, 0.5) * 1e3:>11.0f} "
                  f"{percentile(latencies, 0.99) * 1e3:>11.0f} {del_rate:>7.1f} {dupes:>6} {leaks:>6} {rss:>13.1f}")
            if concurrency == 16:
                curve = " ".join(f"{added}:{rss:.1f}" for added, rss in sampler.samples)
                print(f"     agent RSS MB as pods were added (pods:MB): {curve}")
            sys.stdout.flush()
            if concurrency == 16 or headline is None:
                headline = (add_rate, dupes, leaks, rss)
        print("where an ADD/DEL spends its time (median per plugin call, all runs):")
        merged: dict = {}
        for runtime in runtimes:
            for key, values in runtime.timings.items():
                merged.setdefault(key, []).extend(values)
        for key in sorted(merged):
            print(f"  {key:<18} {percentile(merged[key], 0.5) * 1e3:7.1f} ms  ({len(merged[key])} calls)")
        print(f"cni_adds_per_s={headline[0]:.1f} dupes={headline[1]} leaks={headline[2]} rss_mb={headline[3]:.1f} "
              f"start_ms={startup * 1e3:.1f}")
    finally:
        for agent in agents:
            agent.stop()
        portal.terminate()
        portal.wait(timeout=30)
        topology.teardown()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
