"""SpiderMultusConfig → NetworkAttachmentDefinition (spec §10.3): one level-based reconcile per SMC.

``multusconfig_reconcile(namespace, name)`` reads the SMC and its NAD fresh, computes the NAD the SMC stands for
(:mod:`spiderweb.k8s.nad`) and creates or replaces it when annotations, ``spec.config`` or the owner differ. The NAD
carries a controller ownerReference to its SMC, so deleting the SMC deletes the NAD through Kubernetes' garbage
collector; nothing here deletes NADs. A NAD controlled by another SMC is never taken over (Warning Event); a NAD
being deleted is waited for (retried) before it is created again. Safe to run twice and concurrently: writes carry
the resourceVersion they are based on.
"""

from __future__ import annotations

import logging

from spiderweb.controllers.config import kube_client
from spiderweb.controllers.enqueue import task_send
from spiderweb.engine.errors import Unavailable
from spiderweb.k8s import crd, nad, netconf
from spiderweb.k8s.client import KubeClient, KubeConflict
from spiderweb.k8s.crd import meta
from spiderweb.k8s.resources import NETWORK_ATTACHMENT_DEFINITION

log = logging.getLogger(__name__)

RECONCILE_TASK = "workers.multus.multusconfig_reconcile_task"
EVENT_REFUSED = "SpiderMultusConfigRefused"
EVENT_SYNCED = "NetworkAttachmentDefinitionSynced"


class NadRetry(Unavailable):
    """The NAD is being deleted or changed under us: retried with backoff."""


def multusconfig_enqueue(namespace: str, name: str) -> None:
    """Ask a worker to reconcile SpiderMultusConfig ``namespace/name``."""
    task_send(RECONCILE_TASK, namespace, name)


def multusconfig_reconcile(namespace: str, name: str, *, client: KubeClient | None = None) -> str:
    """Bring the NAD of SpiderMultusConfig ``namespace/name`` in line with it; returns what was done."""
    client = client or kube_client()
    smc = client.get(crd.SPIDER_MULTUSCONFIG, name, namespace=namespace)
    if smc is None:
        return "absent"  # its NAD goes with it (ownerReference)
    if crd.is_terminating(smc):
        return "terminating"
    problems = netconf.multusconfig_problems(smc)
    if problems:  # created while the webhook was off: say so where kubectl describe shows it, do not retry
        message = "not rendered into a NetworkAttachmentDefinition: " + "; ".join(problems)
        client.event_best_effort(smc, reason=EVENT_REFUSED, message=message)
        log.warning("SpiderMultusConfig %s/%s %s", namespace, name, message)
        return "refused"
    target = nad.nad_name(smc)
    existing = client.get(NETWORK_ATTACHMENT_DEFINITION, target, namespace=namespace)
    try:
        if existing is None:
            client.create(NETWORK_ATTACHMENT_DEFINITION, nad.nad_desired(smc))
            return "created"
        if crd.is_terminating(existing):
            raise NadRetry(f"NetworkAttachmentDefinition {namespace}/{target} is being deleted; waiting to recreate")
        other = nad.owned_by_other(existing, smc)
        if other is not None:
            message = (f"NetworkAttachmentDefinition {namespace}/{target} belongs to SpiderMultusConfig {other}; "
                       f"it is left alone")
            client.event_best_effort(smc, reason=EVENT_REFUSED, message=message)
            log.warning("SpiderMultusConfig %s/%s: %s", namespace, name, message)
            return "refused"
        desired = nad.nad_desired(smc, existing)
        if not nad.nad_differs(existing, desired):
            return "unchanged"
        client.replace(NETWORK_ATTACHMENT_DEFINITION, desired)
        return "updated"
    except KubeConflict as exc:
        raise NadRetry(f"NetworkAttachmentDefinition {namespace}/{target} changed meanwhile: {exc.message}") from exc


def multusconfigs_resync(*, client: KubeClient | None = None) -> int:
    """Beat: enqueue every SpiderMultusConfig (a lost event or a hand-edited NAD is repaired by level)."""
    client = client or kube_client()
    items, _ = client.list(crd.SPIDER_MULTUSCONFIG)
    for smc in items:
        multusconfig_enqueue(meta(smc)["namespace"], meta(smc)["name"])
    return len(items)


def nad_ownership_problem(smc: dict, *, client: KubeClient) -> str | None:
    """Spec §10.2 for the admission webhook: the SMC's NAD may pre-exist (it is adopted) unless another SMC
    controls it. A message for the denial, or ``None``."""
    existing = client.get(NETWORK_ATTACHMENT_DEFINITION, nad.nad_name(smc), namespace=meta(smc).get("namespace"))
    other = nad.owned_by_other(existing, smc) if existing is not None else None
    if other is None:
        return None
    return (f"NetworkAttachmentDefinition {meta(smc).get('namespace')}/{nad.nad_name(smc)} already belongs to "
            f"SpiderMultusConfig {other}")
