from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "spiderweb.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"
