from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class IpamConfig(AppConfig):
    name = "spiderweb.ipam"
    label = "ipam"
    verbose_name = "IPAM"

    def ready(self) -> None:
        """Read the chart's spiderpool-conf (``SPIDERWEB_CONFIG_PATH``) now: a bad value stops the portal, a worker or
        the watcher at start-up with the file and every problem named, not on the first pod."""
        from spiderweb.k8s import spiderpool_conf

        try:
            spiderpool_conf.configured()
        except spiderpool_conf.ConfError as exc:
            raise ImproperlyConfigured(str(exc)) from None
