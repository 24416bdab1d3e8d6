from django.apps import AppConfig


class AutopoolConfig(AppConfig):
    """Application controller (spec §4): Deployments, StatefulSets, DaemonSets, Jobs, ... → their auto pools."""

    name = "spiderweb.controllers.autopool"
    label = "autopool"
    verbose_name = "SpiderSubnet auto pools"
