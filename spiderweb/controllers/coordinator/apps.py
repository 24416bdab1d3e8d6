from django.apps import AppConfig


class CoordinatorConfig(AppConfig):
    """SpiderCoordinator status (spec §8.7): podCIDRType, overlay pod CIDRs and service CIDRs, Synced/NotReady."""

    name = "spiderweb.controllers.coordinator"
    label = "coordinator"
    verbose_name = "SpiderCoordinator status"
