from django.apps import AppConfig


class ControllersConfig(AppConfig):
    """The controllers' shared kit: leases, watch cursors, the watcher command (``manage.py k8s_watch``)."""

    name = "spiderweb.controllers"
    label = "controllers"
    verbose_name = "Kubernetes controllers"
