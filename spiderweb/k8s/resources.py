"""Where every kind Spiderweb touches lives in the Kubernetes API: group, version, plural, scope.

One descriptor type for core kinds, workloads, Multus' NetworkAttachmentDefinitions, KubeVirt and the Spiderpool
CRDs, so one client (:mod:`spiderweb.k8s.client`) and one watch loop (:mod:`spiderweb.k8s.watch`) serve them all.
Never imports Django.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    """One kind: how it is named on the wire and where it lives in the API (``group`` is ``""`` for core)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    status_subresource: bool = False

    @property
    def api_version(self) -> str:
        """``v1`` for core kinds, ``<group>/<version>`` otherwise.

        >>> POD.api_version, DEPLOYMENT.api_version
        ('v1', 'apps/v1')
        """
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def webhook_name(self) -> str:
        """The lower-case singular used in Spiderpool's webhook paths, e.g. ``spiderippool``."""
        return self.kind.lower()

    def path(self, name: str | None = None, *, namespace: str | None = None, subresource: str | None = None) -> str:
        """API path of the collection (all namespaces when ``namespace`` is None), one object, or a subresource.

        >>> POD.path("web-0", namespace="default")
        '/api/v1/namespaces/default/pods/web-0'
        >>> NODE.path("n1", subresource="status")
        '/api/v1/nodes/n1/status'
        >>> STATEFULSET.path()
        '/apis/apps/v1/statefulsets'
        """
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        if subresource:
            base += f"/{subresource}"
        return base


POD = Resource("", "v1", "Pod", "pods", status_subresource=True)
NODE = Resource("", "v1", "Node", "nodes", namespaced=False, status_subresource=True)
NAMESPACE = Resource("", "v1", "Namespace", "namespaces", namespaced=False)
EVENT = Resource("", "v1", "Event", "events")
CONFIGMAP = Resource("", "v1", "ConfigMap", "configmaps")
DEPLOYMENT = Resource("apps", "v1", "Deployment", "deployments", status_subresource=True)
REPLICASET = Resource("apps", "v1", "ReplicaSet", "replicasets", status_subresource=True)
STATEFULSET = Resource("apps", "v1", "StatefulSet", "statefulsets", status_subresource=True)
DAEMONSET = Resource("apps", "v1", "DaemonSet", "daemonsets", status_subresource=True)
JOB = Resource("batch", "v1", "Job", "jobs", status_subresource=True)
CRONJOB = Resource("batch", "v1", "CronJob", "cronjobs", status_subresource=True)
NETWORK_ATTACHMENT_DEFINITION = Resource("k8s.cni.cncf.io", "v1", "NetworkAttachmentDefinition",
                                         "network-attachment-definitions")
VIRTUAL_MACHINE_INSTANCE = Resource("kubevirt.io", "v1", "VirtualMachineInstance", "virtualmachineinstances",
                                    status_subresource=True)
VIRTUAL_MACHINE = Resource("kubevirt.io", "v1", "VirtualMachine", "virtualmachines", status_subresource=True)
VIRTUAL_MACHINE_INSTANCE_MIGRATION = Resource("kubevirt.io", "v1", "VirtualMachineInstanceMigration",
                                              "virtualmachineinstancemigrations", status_subresource=True)
SERVICE_CIDR = Resource("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", namespaced=False,
                        status_subresource=True)

BUILTIN: tuple[Resource, ...] = (
    POD, NODE, NAMESPACE, EVENT, CONFIGMAP, DEPLOYMENT, REPLICASET, STATEFULSET, DAEMONSET, JOB, CRONJOB,
    NETWORK_ATTACHMENT_DEFINITION, VIRTUAL_MACHINE_INSTANCE, VIRTUAL_MACHINE, VIRTUAL_MACHINE_INSTANCE_MIGRATION,
    SERVICE_CIDR,
)
