from django.apps import AppConfig


class MultusConfig(AppConfig):
    """SpiderMultusConfig → NetworkAttachmentDefinition (spec §10), and the pod resource-injection webhook."""

    name = "spiderweb.controllers.multus"
    label = "multus"
    verbose_name = "SpiderMultusConfig"
