"""The beat schedule holds only what can run: no idle mirror or GC work without Kubernetes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ALWAYS = ["prune-change-log", "prune-pod-tombstones", "verify-allocation-integrity"]


def schedule(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("SPIDERPOOL_GC_", "SPIDERWEB_MIRROR_", "KUBE"))}
    code = ("import json; from workers.celery import app; "
            "print(json.dumps({k: v['schedule'] for k, v in app.conf.beat_schedule.items()}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**clean, **env, "SPIDERWEB_SECRET_KEY": "x"},
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_without_kubernetes_only_the_database_jobs_are_scheduled():
    assert sorted(schedule()) == ALWAYS


def test_with_kubernetes_the_mirror_and_the_gc_are_scheduled_at_their_intervals():
    got = schedule(KUBECONFIG="/k", SPIDERWEB_MIRROR_ENABLED="true", SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION="42",
                   SPIDERPOOL_GC_TRACE_POD_GAP_DURATION="3")
    assert got["gc-scan"] == 42 and got["gc-trace-sweep"] == 3
    assert {"mirror-status", "mirror-resync"} <= set(got)


@pytest.mark.parametrize("switch", ["SPIDERPOOL_GC_IP_ENABLED", "SPIDERWEB_MIRROR_ENABLED"])
def test_a_switched_off_controller_schedules_nothing(switch):
    got = schedule(**{"KUBECONFIG": "/k", "SPIDERWEB_MIRROR_ENABLED": "true", switch: "false"})
    prefix = "gc-" if switch.startswith("SPIDERPOOL_GC") else "mirror-"
    assert not [name for name in got if name.startswith(prefix)]
