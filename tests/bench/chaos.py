"""`make bench-chaos`: the chaos run of `tests/chaos` at 1,000 pods, with the product's default GC settings.

The lab of `tests/e2e` on a private PostgreSQL and Redis, three nodes; Deployments scaling up and down, pods
deleted (gracefully and with grace 0), StatefulSet pods re-created, Jobs whose pod succeeds, a node that dies and
is removed, DEL/ADD reordered; meanwhile the portal, the Celery worker, the watcher and the agents are SIGKILLed and
restarted at random moments, the portal is stalled (SIGSTOP), PostgreSQL and Redis restart once each. Then it waits
(up to 700 s, beyond one default full-scan period) for GC to reclaim every leaked address and audits.

Prints progress; last line: `chaos pods=<n> kills=<k> dupes=<d> leaks=<l> reclaim_s=<s>` where reclaim_s is the
time from the end of the churn to zero leaks with the run settled, the kubelet's late DELs included (`inf` if
never). `BENCH_PODS` changes the number of pods,
`BENCH_RECLAIM_TIMEOUT` the wait for reclaim, `SPIDERWEB_CHAOS_SEED` replays a run's choices, `SPIDERPOOL_GC_*`
reach the portal, worker and watcher.
"""

import os
import sys

from tests.chaos.harness import main

PODS = int(os.environ.get("BENCH_PODS", "1000"))
RECLAIM_TIMEOUT = float(os.environ.get("BENCH_RECLAIM_TIMEOUT", "700"))

if __name__ == "__main__":
    sys.exit(main([f"--pods={PODS}"], exit_code_from_findings=False, deployments=8, max_replicas=20,
                  statefulset_replicas=5, jobs=10, kubelet_workers=8, backlog=40, churn_timeout=1800.0,
                  reclaim_timeout=RECLAIM_TIMEOUT))
