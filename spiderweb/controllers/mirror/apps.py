from django.apps import AppConfig


class MirrorConfig(AppConfig):
    """Two-way mirror between the IPAM tables and the Spiderpool CRDs, and the admission webhooks."""

    name = "spiderweb.controllers.mirror"
    label = "mirror"
    verbose_name = "Kubernetes mirror"

    def ready(self):
        from spiderweb.controllers.mirror import signals

        signals.connect()
