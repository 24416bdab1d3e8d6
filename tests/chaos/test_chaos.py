"""Issue 7 §3: a chaos run in the Kubernetes lab loses nothing.

Given the whole system (control plane, portal, Celery worker + beat, watcher, three nodes with an agent each, the fake
kubelet running Multus → macvlan + our IPAM + coordinator) on a private PostgreSQL and Redis,
when a couple of hundred pods churn (Deployments scaling, pods deleted gracefully and with grace 0, StatefulSet pods
re-created, Jobs whose pod succeeds, a node that dies and is removed, DEL/ADD reordered) while processes are
SIGKILLed and restarted at random, the portal is stalled (SIGSTOP) and PostgreSQL and Redis restart once each,
then, once the churn stops and GC has run: no address is held twice, none is leaked, every Running pod holds exactly
its addresses and the StatefulSet's pods kept theirs.

The run is a separate process (``python -m tests.chaos``): it restarts the database server its own connection uses,
which this pytest process (pytest-django, the shared server) must not be part of.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.chaos.harness import lab_available
from tests.mirror.lab import REPO

pytestmark = [pytest.mark.lab, pytest.mark.netns, pytest.mark.slow]

PODS = int(os.environ.get("SPIDERWEB_CHAOS_PODS", "200"))
GC_INTERVAL = 10  # SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION for the test: a full scan every 10 s


def test_chaos_run_loses_no_address(tmp_path):
    why_not = lab_available()
    if why_not:
        pytest.skip(why_not)
    report_path = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.chaos", f"--pods={PODS}", f"--gc-interval={GC_INTERVAL}",
         "--reclaim-timeout=90", "--churn-timeout=150", f"--report={report_path}", f"--workdir={tmp_path / 'lab'}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    output = proc.stdout
    assert report_path.exists(), f"the run wrote no report (exit {proc.returncode}):\n{output[-6000:]}"
    report = json.loads(report_path.read_text())
    context = (f"{output.splitlines()[-1] if output else ''}\nseed {report['seed']} "
               f"(SPIDERWEB_CHAOS_SEED={report['seed']} replays its choices); logs in {report['workdir']}\n"
               f"{report['diff']}\n--- run output (tail) ---\n{output[-5000:]}")

    assert not report["error"], context
    # The chaos happened as planned.
    assert report["kills"] >= 8 and report["postgres_restarts"] == 1 and report["redis_restarts"] == 1, context
    assert report["pauses"] >= 1 and report["node_removed"], context
    assert report["pods"] >= PODS // 2, context
    # Nothing duplicated, leaked or lost; the StatefulSet kept its addresses; every wanted pod runs.
    assert report["dupes"] == 0, context
    assert report["leaks"] == 0, context
    assert report["lost"] == 0, context
    assert report["moved"] == 0, context
    assert report["unsettled"] == 0, context
    assert report["reclaim_s"] is not None, context
    assert proc.returncode == 0, context
