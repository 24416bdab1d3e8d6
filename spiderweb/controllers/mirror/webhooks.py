"""Admission webhooks for the Spiderpool kinds, served by the portal on Spiderpool's paths (AdmissionReview v1).

Mutating: Spiderpool's defaults as a JSONPatch (pure functions in ``spiderweb.k8s.admission`` / ``netconf``; the
owning subnet is looked up here). Validating: pools, subnets and reservations are written to the database by
``controllers/mirror/admission.py`` with the same validation functions as the REST API (coordinators too: the row is
the CRD's mirror); multus configs are checked by the pure rules. Views only translate: no rules and no locks here.

The webhooks change the database, so they answer only over TLS (the listener the API server calls: gunicorn with
``--certfile/--keyfile``); over plain HTTP they answer 403 unless ``SPIDERWEB_WEBHOOK_ALLOW_HTTP`` is true.
"""

from __future__ import annotations

import ipaddress
import logging
import os

from django.db import IntegrityError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from spiderweb.controllers.config import kube_client, kubernetes_configured
from spiderweb.controllers.mirror import admission as mirror_admission
from spiderweb.controllers.mirror.documents import MIRROR_KINDS
from spiderweb.controllers.multus import services as multus_services
from spiderweb.engine.errors import Conflict, InvalidInput, IPAMError
from spiderweb.ipam.models import ClusterSettings, Subnet
from spiderweb.ipam.validation import SpecInvalid
from spiderweb.k8s import admission, netconf
from spiderweb.k8s.client import KubeUnavailable
from spiderweb.k8s.crd import WEBHOOK_KINDS

log = logging.getLogger(__name__)

MUTATORS = {
    "SpiderSubnet": admission.subnet_mutate,
    "SpiderReservedIP": admission.reservedip_mutate,
    "SpiderCoordinator": netconf.coordinator_mutate,
    "SpiderMultusConfig": netconf.multusconfig_mutate,
}


def _http_allowed() -> bool:
    return os.environ.get("SPIDERWEB_WEBHOOK_ALLOW_HTTP", "").lower() in ("1", "true", "yes", "on")


def review_parse(request: HttpRequest) -> admission.AdmissionRequest | JsonResponse:
    """The AdmissionReview of a webhook call, or the answer refusing it (plain HTTP, a malformed body)."""
    if not request.is_secure() and not _http_allowed():
        return JsonResponse({"message": "admission webhooks are served over TLS only"}, status=403)
    try:
        return admission.AdmissionRequest.parse(request.body)
    except InvalidInput as exc:
        return JsonResponse({"message": exc.message}, status=400)


def owner_subnet_for(obj: dict) -> admission.OwnerSubnet | None:
    """The SpiderSubnet a pool belongs to: same CIDR, not terminating, while the subnet feature is on."""
    if not ClusterSettings.load().enable_spider_subnet:
        return None
    try:
        network = ipaddress.ip_network(str(((obj or {}).get("spec") or {}).get("subnet")), strict=False)
    except ValueError:
        return None
    subnet = Subnet.objects.filter(ip_version=network.version, subnet=str(network), terminating=False).first()
    if subnet is None:
        return None
    return admission.OwnerSubnet(name=subnet.name, uid=subnet.k8s_uid, gateway=subnet.gateway,
                                 routes=list(subnet.routes or []))


@csrf_exempt
@require_POST
def mutate(request: HttpRequest, kind: str) -> JsonResponse:
    """``/mutate-spiderpool-spidernet-io-v2beta1-<kind>``: defaults as a JSONPatch; terminating objects unchanged."""
    req = review_parse(request)
    if isinstance(req, JsonResponse):
        return req
    if req.operation not in (admission.CREATE, admission.UPDATE) or req.object is None:
        return JsonResponse(admission.review_allowed(req.uid))
    try:
        if kind == "SpiderIPPool":
            mutated = admission.ippool_mutate(req.object, owner=owner_subnet_for(req.object))
        else:
            mutated = MUTATORS[kind](req.object)
    except InvalidInput as exc:
        return JsonResponse(admission.review_denied(req.uid, f"{kind} {req.name}: {exc.message}", code=422))
    return JsonResponse(admission.review_allowed(req.uid, patch=admission.json_patch(req.object, mutated)))


@csrf_exempt
@require_POST
def validate(request: HttpRequest, kind: str) -> JsonResponse:
    """``/validate-spiderpool-spidernet-io-v2beta1-<kind>``: allow or deny, writing pools, subnets and reservations
    to the database (except with dryRun)."""
    req = review_parse(request)
    if isinstance(req, JsonResponse):
        return req
    try:
        warnings = _validate(kind, req)
    except SpecInvalid as exc:
        return JsonResponse(admission.review_denied(req.uid, f'{kind} "{req.name}" is invalid: {exc.message}',
                                                    code=422))
    except IPAMError as exc:
        code = 422 if isinstance(exc, InvalidInput) else 403
        return JsonResponse(admission.review_denied(req.uid, f'{kind} "{req.name}": {exc.message}', code=code))
    except IntegrityError as exc:
        log.warning("admission of %s %s hit a constraint: %s", kind, req.name, exc)
        return JsonResponse(admission.review_denied(
            req.uid, f'{kind} "{req.name}" conflicts with a concurrent change; retry', code=409))
    return JsonResponse(admission.review_allowed(req.uid, warnings=warnings))


def _validate(kind: str, req: admission.AdmissionRequest) -> list[str]:
    if kind in MIRROR_KINDS:
        if req.operation in (admission.CREATE, admission.UPDATE):
            return mirror_admission.admission_apply(kind=kind, request=req)
        if req.operation == admission.DELETE:
            mirror_admission.admission_delete(kind=kind, request=req)
        return []
    if req.operation not in (admission.CREATE, admission.UPDATE):
        return []
    problems = netconf.multusconfig_problems(req.object or {}, req.old_object)
    if problems:
        raise InvalidInput("is invalid: " + "; ".join(problems))
    return multusconfig_nad_check(req)


def multusconfig_nad_check(req: admission.AdmissionRequest) -> list[str]:
    """Spec §10.2: refuse an SMC whose NAD another SMC controls. Needs the API server; when it cannot be asked, the
    SMC is admitted with a warning (the controller still never takes the NAD over)."""
    if not kubernetes_configured():
        return []
    obj = dict(req.object or {})
    obj["metadata"] = {"namespace": req.namespace, **(obj.get("metadata") or {})}
    try:
        problem = multus_services.nad_ownership_problem(obj, client=kube_client())
    except KubeUnavailable as exc:
        return [f"the NetworkAttachmentDefinition it writes could not be checked: {exc.message}"]
    if problem:
        raise Conflict(problem)
    return []


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """``/webhook-health-check``: the listener is up (Spiderpool's liveness path)."""
    return JsonResponse({"status": "ok"})


WEBHOOK_PATH_KINDS = {name: kind.kind for name, kind in WEBHOOK_KINDS.items()}
