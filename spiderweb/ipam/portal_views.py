"""The portal's own admin pages: global search and the capacity dashboard.

Both are staff pages (`admin_site.admin_view`) and read through `selectors`, so a user sees exactly what the REST
API shows them: every tenant's objects with the model's view permission, else only their tenants' objects.
"""

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from spiderweb.ipam import selectors
from spiderweb.ipam.admin import utilization_bar

SEARCH_SECTIONS = ("subnets", "pools", "allocations", "history", "reserved", "tenants")


def _change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def search(request):
    """Find what an address, a CIDR, a pod, a namespace or a name refers to; a single hit opens its page."""
    query = request.GET.get("q", "").strip()
    found = selectors.portal_search(request.user, query)
    hits = [obj for section in SEARCH_SECTIONS for obj in found[section]]
    if len(hits) == 1 and found["kind"] != "empty":
        return HttpResponseRedirect(_change_url(hits[0]))
    for obj in found["pools"]:
        obj.usage = selectors.ippool_utilization(obj)
        obj.bar = utilization_bar(obj.usage)
    rows = {section: [(obj, _change_url(obj)) for obj in found[section]] for section in SEARCH_SECTIONS}
    context = {
        **admin.site.each_context(request),
        "title": f"Search: {query}" if query else "Search",
        "query": query,
        "kind": found["kind"],
        "rows": rows,
        "hit_count": len(hits),
        "history_url": reverse("admin:ipam_addresshistory_changelist"),
    }
    return TemplateResponse(request, "admin/ipam/portal_search.html", context)


def dashboard(request):
    """Capacity at a glance: per tenant, per subnet and per pool, addresses held over the last two weeks (an SVG
    drawn here, no script), and the pools nearest exhaustion with a forecast of when each runs out."""
    summary = selectors.capacity_summary(request.user)
    for obj in (*summary["pools"], *summary["subnets"]):
        obj.bar = utilization_bar(obj.usage)
    for row in summary["tenants"]:
        row["bar"] = utilization_bar({"utilization": row["utilization"], "allocatedIPCount": row["allocated"],
                                      "totalIPCount": row["usable"], "reservedIPCount": 0})
    peak = max((point["count"] for point in summary["timeline"]), default=0) or 1
    chart = [{"x": 10 + index * 40, "height": round(100 * point["count"] / peak), "y": 110 - round(
        100 * point["count"] / peak), "count": point["count"], "day": point["at"].strftime("%m-%d")}
        for index, point in enumerate(summary["timeline"])]
    context = {
        **admin.site.each_context(request),
        "title": "Capacity",
        "summary": summary,
        "chart": chart,
        "chart_width": 20 + 40 * len(chart),
        "pool_url": reverse("admin:ipam_ippool_changelist"),
    }
    return TemplateResponse(request, "admin/ipam/portal_dashboard.html", context)
