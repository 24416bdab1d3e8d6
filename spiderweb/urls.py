from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from spiderweb.ipam import portal_views
from spiderweb.ipam.api.throttles import login_throttled
from spiderweb.ipam.api.urls import internal_urlpatterns, public_urlpatterns

admin.site.site_header = "Spiderweb IPAM"
admin.site.site_title = "Spiderweb"
admin.site.index_title = "Underlay IPAM"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/dashboard/", permanent=False)),
    path("admin/login/", login_throttled(admin.site.login), name="admin-login-throttled"),
    path("admin/search/", admin.site.admin_view(portal_views.search), name="portal-search"),
    path("admin/dashboard/", admin.site.admin_view(portal_views.dashboard), name="portal-dashboard"),
    path("admin/explain/", admin.site.admin_view(portal_views.explain), name="portal-explain"),
    path("admin/tokens/", admin.site.admin_view(portal_views.my_api_tokens), name="portal-api-tokens"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(public_urlpatterns)),
    path("api/v1/", include("spiderweb.controllers.gc.urls")),
    path("api/internal/v1/", include(internal_urlpatterns)),
    path("", include("spiderweb.controllers.mirror.urls")),
    path("", include("spiderweb.controllers.multus.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # A browser without a session goes to the login page first (the schema itself answers 401/403).
    path("api/schema/swagger-ui/", login_required(SpectacularSwaggerView.as_view(url_name="schema")),
         name="swagger-ui"),
]
