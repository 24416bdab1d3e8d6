"""The Celery application. Redis in production; kombu's filesystem transport in the embedded demo."""

import os

from celery import Celery

from spiderweb.controllers.config import kubernetes_configured
from spiderweb.controllers.coordinator.config import coordinator_config
from spiderweb.controllers.gc.config import gc_config
from spiderweb.controllers.mirror.config import mirror_config
from spiderweb.controllers.multus.config import multus_config
from workers import metrics  # noqa: F401 - connects the task and worker signals that count task runs
from workers.database import connections_reused

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spiderweb.settings")

# Level-based safety net of the application controller (spec §4.7): every workload re-derived once a minute.
AUTOPOOL_RESYNC_SECONDS = 60.0

app = Celery("spiderweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
connections_reused(app)
app.autodiscover_tasks(["workers"], related_name="tasks")
app.autodiscover_tasks(["workers"], related_name="mirror")
app.autodiscover_tasks(["workers"], related_name="gc")
app.autodiscover_tasks(["workers"], related_name="autopool")
app.autodiscover_tasks(["workers"], related_name="coordinator")
app.autodiscover_tasks(["workers"], related_name="multus")
app.conf.beat_schedule = {
    "verify-allocation-integrity": {
        "task": "workers.tasks.verify_allocation_integrity_task",
        "schedule": 300.0,
        "options": {"expires": 240},
    },
    "prune-change-log": {
        "task": "workers.tasks.prune_change_log_task",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
    "prune-pod-tombstones": {
        "task": "workers.tasks.prune_pod_tombstones_task",
        "schedule": 600.0,
        "options": {"expires": 540},
    },
}
if mirror_config().enabled:  # no Kubernetes mirror, no idle status batches writing a lease every few seconds
    app.conf.beat_schedule |= {
        # Kubernetes mirror (workers/mirror.py): status batches every few seconds, a level-based resync every minute.
        "mirror-status": {
            "task": "workers.mirror.mirror_status_task",
            "schedule": mirror_config().status_interval,
            "options": {"expires": 5},
        },
        "mirror-resync": {
            "task": "workers.mirror.mirror_resync_task",
            "schedule": mirror_config().resync_interval,
            "options": {"expires": 50},
        },
    }
if gc_config().enabled:  # the GC needs Kubernetes; without it there is nothing to schedule
    app.conf.beat_schedule |= {
        # IP GC (workers/gc.py): due traces every few seconds, the full scan every gc_config().scan_interval.
        "gc-trace-sweep": {
            "task": "workers.gc.gc_trace_sweep_task",
            "schedule": gc_config().trace_interval,
            "options": {"expires": gc_config().trace_interval},
        },
        "gc-scan": {
            "task": "workers.gc.gc_scan_task",
            "schedule": gc_config().scan_interval,
            "options": {"expires": gc_config().scan_interval},
        },
    }
if kubernetes_configured():  # auto pools follow workloads; without a cluster there are none
    app.conf.beat_schedule |= {
        "autopool-resync": {
            "task": "workers.autopool.applications_resync_task",
            "schedule": AUTOPOOL_RESYNC_SECONDS,
            "options": {"expires": AUTOPOOL_RESYNC_SECONDS},
        },
    }
if coordinator_config().enabled:  # SpiderCoordinator status (workers/coordinator.py): a level-based resync
    app.conf.beat_schedule |= {
        "coordinator-resync": {
            "task": "workers.coordinator.coordinators_resync_task",
            "schedule": coordinator_config().resync_interval,
            "options": {"expires": coordinator_config().resync_interval},
        },
    }
if multus_config().enabled:  # SpiderMultusConfig → NAD (workers/multus.py): a level-based resync
    app.conf.beat_schedule |= {
        "multus-resync": {
            "task": "workers.multus.multusconfigs_resync_task",
            "schedule": multus_config().resync_interval,
            "options": {"expires": multus_config().resync_interval},
        },
    }
