"""``/mutate--v1-pod`` (spec §10.5): the pod resource-injection webhook, served when spiderpool-conf's
``podResourceInject.enabled`` is on (the chart registers it then, for the namespaces the same settings name).

The view only translates: the rules are :mod:`spiderweb.k8s.podinject`, the SMCs and the namespace come from the API
server. A pod that asks for nothing, a namespace the settings leave out, or injection switched off: admitted
unchanged. A pod whose networks cannot be found or break the rules: refused with the reason (``failurePolicy: Fail``
would refuse it anyway; this says why).
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from spiderweb.controllers.config import kube_client
from spiderweb.controllers.mirror.webhooks import review_parse
from spiderweb.engine.errors import InvalidInput
from spiderweb.k8s import admission, crd, podinject, resources, spiderpool_conf
from spiderweb.k8s.client import KubeError, KubeUnavailable

log = logging.getLogger(__name__)


def pod_inject_settings() -> spiderpool_conf.PodResourceInject:
    """``podResourceInject`` of this process's spiderpool-conf (off without one)."""
    conf = spiderpool_conf.configured()
    return conf.pod_resource_inject if conf is not None else spiderpool_conf.PodResourceInject()


@csrf_exempt
@require_POST
def pod_mutate(request: HttpRequest) -> JsonResponse:
    """Add the networks and device-plugin limits a new pod asks for with an inject annotation."""
    req = review_parse(request)
    if isinstance(req, JsonResponse):
        return req
    settings = pod_inject_settings()
    pod = dict(req.object or {})
    if req.operation != admission.CREATE or not pod or not settings.serves(req.namespace):
        return JsonResponse(admission.review_allowed(req.uid))
    pod["metadata"] = {"namespace": req.namespace, **(pod.get("metadata") or {})}
    name = pod["metadata"].get("name") or pod["metadata"].get("generateName") or "pod"
    try:
        client = kube_client()
        namespace = None if podinject.inject_request(pod, None) else client.get(resources.NAMESPACE, req.namespace)
        if podinject.inject_request(pod, namespace) is None:
            return JsonResponse(admission.review_allowed(req.uid))
        mutated = podinject.pod_inject(pod, namespace, client.list(crd.SPIDER_MULTUSCONFIG)[0])
    except InvalidInput as exc:
        return JsonResponse(admission.review_denied(req.uid, f"pod {req.namespace}/{name}: {exc.message}", code=422))
    except (KubeUnavailable, KubeError) as exc:
        log.warning("pod resource injection for %s/%s failed: %s", req.namespace, name, exc.message)
        return JsonResponse(admission.review_denied(
            req.uid, f"pod {req.namespace}/{name}: cannot read SpiderMultusConfigs: {exc.message}", code=503))
    return JsonResponse(admission.review_allowed(req.uid, patch=admission.json_patch(pod, mutated)))
