"""The Celery application. Redis in production; kombu's filesystem transport in the embedded demo."""

import os

from celery import Celery

from spiderweb.mirror.config import mirror_config

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spiderweb.settings")

app = Celery("spiderweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")
app.autodiscover_tasks(["workers"], related_name="mirror")
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
