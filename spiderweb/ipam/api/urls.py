from django.urls import path
from rest_framework.routers import DefaultRouter

from spiderweb.ipam.api import internal, tokens, views

router = DefaultRouter()
router.register("tenants", views.TenantViewSet, basename="tenant")
router.register("subnets", views.SubnetViewSet, basename="subnet")
router.register("pools", views.IPPoolViewSet, basename="ippool")
router.register("reserved-ips", views.ReservedIPViewSet, basename="reservedip")
router.register("endpoints", views.EndpointViewSet, basename="endpoint")
router.register("allocations", views.AllocationViewSet, basename="allocation")
router.register("address-history", views.AddressHistoryViewSet, basename="addresshistory")
router.register("changes", views.ObjectChangeViewSet, basename="objectchange")

public_urlpatterns = [
    path("settings/", views.ClusterSettingsView.as_view(), name="cluster-settings"),
    path("explain/", views.ExplainView.as_view(), name="explain"),
    path("auth/token/", tokens.TokenIssueView.as_view(), name="token-issue"),
    path("auth/token/rotate/", tokens.TokenRotateView.as_view(), name="token-rotate"),
    path("auth/token/logout/", tokens.TokenLogoutView.as_view(), name="token-logout"),
    path("auth/token/logout-all/", tokens.TokenLogoutAllView.as_view(), name="token-logout-all"),
    *router.urls,
]

internal_urlpatterns = [
    path("ipam/allocate", internal.AllocateView.as_view(), name="internal-allocate"),
    path("ipam/release", internal.ReleaseView.as_view(), name="internal-release"),
    path("ipam/release-pod", internal.ReleasePodView.as_view(), name="internal-release-pod"),
    path("ipam/gc", internal.GarbageCollectView.as_view(), name="internal-gc"),
    path("workloadendpoint", internal.WorkloadEndpointView.as_view(), name="internal-workloadendpoint"),
    path("coordinator/config", internal.CoordinatorConfigView.as_view(), name="internal-coordinator-config"),
]
