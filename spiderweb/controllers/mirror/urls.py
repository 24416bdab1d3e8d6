"""Webhook URLs on Spiderpool's paths, at the root of the portal (the API server is configured with these)."""

from django.urls import path

from spiderweb.controllers.mirror import webhooks

urlpatterns = [path("webhook-health-check", webhooks.health, name="webhook-health-check")]
for _name, _kind in webhooks.WEBHOOK_PATH_KINDS.items():
    urlpatterns += [
        path(f"mutate-spiderpool-spidernet-io-v2beta1-{_name}", webhooks.mutate, {"kind": _kind},
             name=f"mutate-{_name}"),
        path(f"validate-spiderpool-spidernet-io-v2beta1-{_name}", webhooks.validate, {"kind": _kind},
             name=f"validate-{_name}"),
    ]
