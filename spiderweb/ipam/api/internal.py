"""Internal API for node agents (`/api/internal/v1/`): node-scoped credentials, never tenant tokens.

A node token (`Authorization: Bearer swn_…`) is bound to one node. The portal refuses to allocate for a pod
whose facts say it runs elsewhere, and releases only allocations made on that node.
"""

from functools import lru_cache

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.response import Response
from rest_framework.views import APIView

from spiderweb.changelog.context import Actor, acting_as
from spiderweb.engine.errors import Conflict, Forbidden, InvalidInput, IPAMError, NotFound
from spiderweb.engine.facts import PodFacts
from spiderweb.engine.selection import CniDefaults
from spiderweb.ipam import allocation, services
from spiderweb.ipam.api.errors import ipam_error_response
from spiderweb.ipam.api.throttles import NodeRateThrottle
from spiderweb.ipam.models import ClusterSettings, Coordinator, NodeCredential
from spiderweb.k8s.client import KubeClient, api_client


class NodePrincipal:
    """The authenticated node agent (DRF's request.user for internal views)."""

    is_authenticated = True
    is_staff = False

    def __init__(self, credential: NodeCredential):
        self.credential = credential
        self.node_name = credential.node_name

    def __str__(self):
        return f"node:{self.node_name}"


class NodeTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization: Bearer <node token>")
        try:
            credential = services.node_credential_authenticate(header[1])
        except NotFound as exc:
            raise exceptions.AuthenticationFailed("invalid node token") from exc
        if credential.last_used_at is None or (timezone.now() - credential.last_used_at).total_seconds() > 60:
            NodeCredential.objects.filter(pk=credential.pk).update(last_used_at=timezone.now())
        return NodePrincipal(credential), credential

    def authenticate_header(self, request):
        return self.keyword


class IsNode(permissions.BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.user, NodePrincipal)


class NodeView(APIView):
    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsNode]
    throttle_classes = [NodeRateThrottle]
    schema = None  # internal: documented in agent/README.md, not in the public OpenAPI document

    def handle_exception(self, exc):
        if isinstance(exc, IPAMError):
            return ipam_error_response(exc)
        return super().handle_exception(exc)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.actor = Actor(name=str(request.user))

    def body(self, *names: str) -> dict:
        data = self.request.data
        if not isinstance(data, dict):
            raise InvalidInput("the request body must be a JSON object")
        missing = [n for n in names if not data.get(n)]
        if missing:
            raise InvalidInput(f"missing required field(s): {', '.join(missing)}")
        return data


def _string_list(value, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{name} must be a list of pool names")
    return tuple(value)


@lru_cache(maxsize=1)
def pod_reader():
    """Reads one pod from the API server, for the rare re-creation of a pod across nodes (None: not configured).

    Only that path calls it (a pod name recorded on another node under another UID), so Kubernetes is never on the
    usual allocation path; `SPIDERWEB_PORTAL_READS_PODS` (default: on when KUBECONFIG or the in-cluster service
    account is there) turns it off, and such a re-creation then waits for the owning node or the GC (503, retried).
    """
    if not settings.SPIDERWEB_PORTAL_READS_PODS:
        return None
    client = KubeClient(api_client(settings.SPIDERWEB_KUBECONFIG or None, pool_size=2), timeout=5.0)
    return client.pod


class AllocateView(NodeView):
    def post(self, request):
        data = self.body("facts", "ifName")
        facts = PodFacts.from_dict(data["facts"])
        if facts.node != request.user.node_name:
            raise Forbidden(f"node {request.user.node_name} may not allocate for a pod on node {facts.node!r}")
        cni = data.get("cni") or {}
        if not isinstance(cni, dict):
            raise InvalidInput("cni must be an object")
        req = allocation.AllocateRequest(
            facts=facts,
            if_name=str(data["ifName"]),
            container_id=str(data.get("containerID") or ""),
            cni=CniDefaults(
                v4=_string_list(cni.get("default_ipv4_ippool"), "default_ipv4_ippool"),
                v6=_string_list(cni.get("default_ipv6_ippool"), "default_ipv6_ippool"),
                clean_gateway=bool(cni.get("clean_gateway", False)),
            ),
            cluster_network=str(data.get("clusterNetwork") or ""),
            network=str(data.get("network") or ""),
        )
        with acting_as(self.actor):
            return Response(allocation.ippool_allocate(request=req, pod_reader=pod_reader()))


class ReleaseView(NodeView):
    """A CNI DEL the agent decided to release.

    With `podDead` (the agent knows from Kubernetes that the pod will never be alive again) the sandbox is
    remembered, so an ADD of it still on its way is refused when it arrives. Without it (standalone mode, where a
    runtime may ADD the same container again after a DEL) nothing is remembered.
    """

    def post(self, request):
        data = self.body("podNamespace", "podName", "podUID")
        dead_sandbox_id = str(data.get("containerID") or "") if data.get("podDead") is True else ""
        with acting_as(self.actor):
            released = allocation.ippool_release(
                namespace=data["podNamespace"],
                name=data["podName"],
                pod_uid=data["podUID"],
                reason=str(data.get("reason") or "cni-del"),
                node=request.user.node_name,
                dead_sandbox_id=dead_sandbox_id,
            )
        return Response({"released": released})


class ReleasePodView(NodeView):
    """Batch release after an IP conflict (Spiderpool's DELETE /v1/ipam/ips, with A10 fixed)."""

    def post(self, request):
        data = self.body("podNamespace", "podName", "podUID")
        if data.get("isReleaseConflictIPs") and allocation.is_static_owner(
            str(data.get("ownerKind") or ""), ClusterSettings.load()
        ):
            return Response(
                {"code": "forbid_stateful", "message": "conflict IPs of StatefulSet/KubeVirt pods are kept"},
                status=409,
            )
        with acting_as(self.actor):
            released = allocation.ippool_release(
                namespace=data["podNamespace"],
                name=data["podName"],
                pod_uid=data["podUID"],
                reason="ip-conflict" if data.get("isReleaseConflictIPs") else "batch-release",
                node=request.user.node_name,
            )
        return Response({"released": released})


class WorkloadEndpointView(NodeView):
    def get(self, request):
        namespace, name = request.query_params.get("podNamespace"), request.query_params.get("podName")
        if not namespace or not name:
            raise InvalidInput("podNamespace and podName are required")
        endpoint = allocation.endpoint_get(namespace=namespace, name=name)
        if endpoint.node != request.user.node_name:
            # A node reads the endpoints of its own pods only; another node's pod looks exactly like a missing one.
            raise NotFound(f"no SpiderEndpoint {namespace}/{name} on node {request.user.node_name}")
        interfaces: dict[str, dict] = {}
        for row in endpoint.allocations.select_related("pool").order_by("interface", "ip_version"):
            entry = interfaces.setdefault(row.interface, {"interface": row.interface, "routes": []})
            family = f"ipv{row.ip_version}"
            entry[family] = row.cidr
            entry[f"{family}Pool"] = row.pool.name
            if row.gateway:
                entry[f"{family}Gateway"] = row.gateway
            if row.vlan:
                entry["vlan"] = row.vlan
            if row.mac:
                entry["mac"] = row.mac
            entry["routes"] += row.routes or []
        return Response(
            {
                "podNamespace": endpoint.namespace,
                "podName": endpoint.name,
                "podUID": endpoint.uid,
                "node": endpoint.node,
                "interfaces": list(interfaces.values()),
            }
        )


class CoordinatorConfigView(NodeView):
    """The cluster's SpiderCoordinator as Spiderpool's `CoordinatorConfig` (spec §11.3)."""

    def get(self, request):
        name = settings.SPIDERPOOL_COORDINATOR_NAME
        coordinator = Coordinator.objects.filter(name=name).first()
        if coordinator is None:
            raise NotFound(f"no SpiderCoordinator {name!r} exists: apply one (the chart's install job creates it "
                           f"from the coordinator.* values)")
        if coordinator.phase != Coordinator.Phase.SYNCED:
            # As Spiderpool's agent: no coordinator work until the controller has discovered the cluster's CIDRs.
            # Not "unavailable": retrying within this CNI call cannot help; the runtime retries the pod.
            raise Conflict(f"SpiderCoordinator {name} is {coordinator.phase}: "
                           f"{coordinator.reason or 'its status has not been synced yet'}",
                           details={"coordinator": name, "phase": coordinator.phase})
        return Response(
            {
                "mode": coordinator.mode,
                "overlayPodCIDR": coordinator.overlay_pod_cidr,
                "serviceCIDR": coordinator.service_cidr,
                "hijackCIDR": coordinator.hijack_cidr,
                "policyRoutes": coordinator.policy_routes,
                "podMACPrefix": coordinator.pod_mac_prefix,
                "tunePodRoutes": coordinator.tune_pod_routes,
                "podDefaultRouteNIC": coordinator.pod_default_route_nic,
                "hostRuleTable": coordinator.host_rule_table,
                "podRPFilter": coordinator.pod_rp_filter,
                "txQueueLen": coordinator.tx_queue_len,
                "vethLinkAddress": coordinator.veth_link_address,
                "vethMTU": coordinator.veth_mtu,
            }
        )


class GarbageCollectView(NodeView):
    """CNI 1.1 GC for this node: release allocations whose container the runtime no longer has."""

    def post(self, request):
        data = self.body()
        attachments = data.get("validAttachments") or []
        if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
            raise InvalidInput("validAttachments must be a list of {containerID, ifname}")
        pairs = [(str(a.get("containerID") or ""), str(a.get("ifname") or "")) for a in attachments]
        with acting_as(self.actor):
            released = allocation.node_gc(
                node=request.user.node_name, network=str(data.get("network") or ""), valid_attachments=pairs
            )
        return Response({"released": released})
