from django.apps import AppConfig


class ChangelogConfig(AppConfig):
    name = "spiderweb.changelog"
    label = "changelog"
    verbose_name = "Change log"
