"""The pod resource-injection webhook on Spiderpool's path (spec §12.4), at the root of the portal."""

from django.urls import path

from spiderweb.controllers.multus import webhooks

urlpatterns = [path("mutate--v1-pod", webhooks.pod_mutate, name="mutate-pod")]
