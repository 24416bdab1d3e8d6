"""``/api/v1/gc/…``: the IP GC's REST endpoints (``api.py``)."""

from django.urls import path

from spiderweb.controllers.gc import api

urlpatterns = [
    path("gc/check/", api.CheckView.as_view(), name="gc-check"),
    path("gc/scan/", api.ScanView.as_view(), name="gc-scan"),
]
