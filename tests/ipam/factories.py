"""Small builders for IPAM tests (plain functions; no factory library needed)."""

import uuid

from spiderweb.engine.facts import PodFacts, TopController
from spiderweb.ipam import allocation, services
from spiderweb.tenancy.models import Tenant


def tenant(name="acme") -> Tenant:
    return Tenant.objects.get_or_create(name=name)[0]


def pool(name, subnet, ips, *, owner=None, **spec):
    owner = owner or tenant()
    return services.ippool_create(tenant=owner, name=name, spec={"subnet": subnet, "ips": ips, **spec})


def facts(name="pod-0", *, namespace="default", uid=None, node="node-1", annotations=None, labels=None,
          owner_kind="Pod", owner_name=None, namespace_labels=None, namespace_annotations=None, node_labels=None):
    uid = uid or str(uuid.uuid4())
    owner_api = {"Pod": "v1", "StatefulSet": "apps/v1", "Deployment": "apps/v1"}.get(owner_kind, "v1")
    return PodFacts(
        namespace=namespace,
        name=name,
        uid=uid,
        node=node,
        labels=labels or {},
        annotations=annotations or {},
        owner=TopController(
            kind=owner_kind,
            name=owner_name or name,
            uid=str(uuid.uuid5(uuid.NAMESPACE_DNS, owner_name or name)),
            api_version=owner_api,
        ),
        namespace_labels=namespace_labels or {},
        namespace_annotations=namespace_annotations or {},
        node_labels=node_labels or {},
    )


def allocate(pod_facts, if_name="eth0", pod_reader=None, **kwargs):
    return allocation.ippool_allocate(request=allocation.AllocateRequest(facts=pod_facts, if_name=if_name, **kwargs),
                                      pod_reader=pod_reader)


def release(pod_facts, reason="test", dead_sandbox_id=""):
    return allocation.ippool_release(namespace=pod_facts.namespace, name=pod_facts.name, pod_uid=pod_facts.uid,
                                     reason=reason, dead_sandbox_id=dead_sandbox_id)


def pool_get(name):
    from spiderweb.ipam.models import IPPool

    return IPPool.objects.get(name=name)


def coordinator(document: dict, *, owner=None):
    """A SpiderCoordinator for tests without a Kubernetes API server, taken in the way production takes it: the spec
    of a CRD-shaped ``document`` through the mirror's document mapping and ``services.coordinator_create`` (the
    webhook's defaults and rules), its ``status`` through ``services.coordinator_status_set`` (what the coordinator
    controller writes). Never a raw row: a test cannot hold a coordinator the webhook would refuse.

    ``document`` is ``{"metadata": {"name": ...}, "spec": {...}, "status": {...}}`` as ``kubectl get -o json`` shows.
    """
    from spiderweb.controllers.mirror.documents import MIRROR_KINDS, model_spec_for_create

    mk = MIRROR_KINDS["SpiderCoordinator"]
    name = document["metadata"]["name"]
    created = services.coordinator_create(tenant=owner or tenant(), name=name, spec=model_spec_for_create(mk, document))
    status = document.get("status")
    return services.coordinator_status_set(name=name, status=status) if status else created


def coordinator_document(name="default", *, status_phase="Synced", service_cidr=("10.96.0.0/12",),
                         overlay_pod_cidr=(), **spec) -> dict:
    """``kubectl get scc default -o json`` of a synced coordinator: ``spec`` keys as in the CRD (camelCase)."""
    return {"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderCoordinator", "metadata": {"name": name},
            "spec": {"podCIDRType": "none", "hijackCIDR": ["169.254.0.0/16"], **spec},
            "status": {"phase": status_phase, "overlayPodCIDR": list(overlay_pod_cidr),
                       "serviceCIDR": list(service_cidr)}}
