"""The Celery application. Redis in production; kombu's filesystem transport in the embedded demo."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spiderweb.settings")

app = Celery("spiderweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"], related_name="tasks")
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
}
