from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from spiderweb.ipam.api.urls import internal_urlpatterns, public_urlpatterns

admin.site.site_header = "Spiderweb IPAM"
admin.site.site_title = "Spiderweb"
admin.site.index_title = "Underlay IPAM"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/", include(public_urlpatterns)),
    path("api/v1/", include("spiderweb.controllers.gc.urls")),
    path("api/internal/v1/", include(internal_urlpatterns)),
    path("", include("spiderweb.controllers.mirror.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/schema/swagger-ui/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]
