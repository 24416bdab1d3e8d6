"""REST endpoints of the IP GC, staff only: the consistency report (``calicoctl ipam check``) and "scan now"
(``spiderpoolctl gc``; Spiderpool declares ``/v1/ipam/gc_ips`` and never serves it, Appendix A16).

``GET /api/v1/gc/check/`` reports; ``POST /api/v1/gc/check/`` with ``{"releaseLeaks": true}`` also releases every
provable leak. ``POST /api/v1/gc/scan/`` queues one full scan (202); the scan's lease keeps it single.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from spiderweb.controllers.config import kube_client, kubernetes_configured
from spiderweb.controllers.gc.check import CheckReport, ipam_check
from spiderweb.controllers.gc.config import gc_config
from spiderweb.controllers.gc.services import gc_scan_request
from spiderweb.engine.errors import Unavailable

NO_KUBERNETES = "Kubernetes is not configured for the portal (no KUBECONFIG and not in a cluster): nothing to check"


class CheckRequestSerializer(serializers.Serializer):
    releaseLeaks = serializers.BooleanField(default=False, help_text="Release the addresses of provably gone pods.")


class CheckReportSerializer(serializers.Serializer):
    """Findings by category, one line each; ``problems`` counts them (``released`` is not a problem)."""

    leaked = serializers.ListField(child=serializers.CharField())
    pods_without_addresses = serializers.ListField(child=serializers.CharField())
    duplicates = serializers.ListField(child=serializers.CharField())
    outside_pool = serializers.ListField(child=serializers.CharField())
    on_reserved = serializers.ListField(child=serializers.CharField())
    crd_disagreements = serializers.ListField(child=serializers.CharField())
    released = serializers.ListField(child=serializers.CharField())
    problems = serializers.IntegerField()


class ScanResultSerializer(serializers.Serializer):
    queued = serializers.BooleanField()


def _check(release_leaks: bool) -> CheckReport:
    if not kubernetes_configured():
        raise Unavailable(NO_KUBERNETES)
    return ipam_check(client=kube_client(), release_leaks=release_leaks)


class CheckView(APIView):
    """The consistency report between the database and the cluster (leaks, duplicates, drift). Staff only."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(responses=CheckReportSerializer)
    def get(self, request):
        return Response(_check(release_leaks=False).as_dict())

    @extend_schema(request=CheckRequestSerializer, responses=CheckReportSerializer)
    def post(self, request):
        serializer = CheckRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(_check(release_leaks=serializer.validated_data["releaseLeaks"]).as_dict())


class ScanView(APIView):
    """Queue one full IP GC scan now (202). 503 when the GC is off or the broker is unreachable. Staff only."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(request=None, responses={202: ScanResultSerializer})
    def post(self, request):
        if not gc_config().enabled:
            raise Unavailable("the IP GC is disabled (SPIDERPOOL_GC_IP_ENABLED=false, or no Kubernetes configured)")
        if not gc_scan_request():
            raise Unavailable("the task broker is unreachable; the scan was not queued (the periodic scan still runs)")
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)
