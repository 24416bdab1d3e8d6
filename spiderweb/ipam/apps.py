from django.apps import AppConfig


class IpamConfig(AppConfig):
    name = "spiderweb.ipam"
    label = "ipam"
    verbose_name = "IPAM"
