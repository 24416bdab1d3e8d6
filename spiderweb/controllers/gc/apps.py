from django.apps import AppConfig


class GcConfig(AppConfig):
    """IP GC: pod-event tracing, the periodic full scan and ``manage.py ipam_check``."""

    name = "spiderweb.controllers.gc"
    label = "gc"
    verbose_name = "IP garbage collection"
