"""The portal's own admin pages: global search, the capacity dashboard, explain and "My API tokens".

They sit behind `admin_site.admin_view` (staff and tenant members, `tenancy.admin_site`) and read through
`selectors`, so a user sees exactly what the REST API shows them: every tenant's objects with the model's view
permission, else only their tenants' objects.
"""

import json
import uuid

from django import forms
from django.contrib import admin
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods

from spiderweb.engine.errors import IPAMError
from spiderweb.engine.facts import PodFacts
from spiderweb.engine.selection import CniDefaults
from spiderweb.ipam import allocation, selectors
from spiderweb.ipam.admin import utilization_bar
from spiderweb.tenancy import api_tokens

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
    drawn here, no script), the pools nearest exhaustion with a forecast of when each runs out, and what the IP GC
    and the auto-pool controller did."""
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
        "activity": selectors.controller_activity(request.user),
        "chart": chart,
        "chart_width": 20 + 40 * len(chart),
        "pool_url": reverse("admin:ipam_ippool_changelist"),
    }
    return TemplateResponse(request, "admin/ipam/portal_dashboard.html", context)


class KeyValueField(forms.CharField):
    """``key=value`` one per line (labels or annotations as a pod would carry them)."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 70})

    def to_python(self, value):
        pairs = {}
        for number, line in enumerate((super().to_python(value) or "").splitlines(), 1):
            if not line.strip():
                continue
            key, sep, item = line.partition("=")
            if not sep or not key.strip():
                raise forms.ValidationError(f"Line {number}: write key=value, got {line.strip()!r}")
            pairs[key.strip()] = item.strip()
        return pairs


class NameListField(forms.CharField):
    def to_python(self, value):
        return [name.strip() for name in (super().to_python(value) or "").split(",") if name.strip()]


class ExplainForm(forms.Form):
    """The pod, namespace and node facts a dry run needs, as the node agent would send them."""

    namespace = forms.CharField(initial="default")
    name = forms.CharField(label="pod name")
    node = forms.CharField(required=False, initial="node-1")
    interface = forms.CharField(initial="eth0")
    pod_labels = KeyValueField(required=False)
    pod_annotations = KeyValueField(required=False, help_text="e.g. ipam.spidernet.io/ippool={\"ipv4\": [\"pool\"]}")
    namespace_labels = KeyValueField(required=False)
    namespace_annotations = KeyValueField(required=False)
    node_labels = KeyValueField(required=False)
    default_ipv4_ippool = NameListField(required=False, help_text="The CNI configuration's defaults, comma-separated.")
    default_ipv6_ippool = NameListField(required=False)


def explain(request):
    """Run explain from a form: which pool would serve this pod and NIC, and why the others were rejected. Considers
    only the pools the user may see (`selectors.ippool_names_visible_to`, as the REST API does); writes nothing."""
    form = ExplainForm(request.POST or None)
    result = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        uid = f"explain-{uuid.uuid4()}"
        try:
            facts = PodFacts.from_dict({
                "namespace": data["namespace"], "name": data["name"], "uid": uid, "node": data["node"],
                "labels": data["pod_labels"], "annotations": data["pod_annotations"],
                "namespace_labels": data["namespace_labels"], "namespace_annotations": data["namespace_annotations"],
                "node_labels": data["node_labels"],
                "owner": {"kind": "Pod", "name": data["name"], "uid": uid, "api_version": "v1"}})
        except IPAMError as exc:
            form.add_error(None, exc.message)
        else:
            defaults = CniDefaults(v4=tuple(data["default_ipv4_ippool"]), v6=tuple(data["default_ipv6_ippool"]))
            result = allocation.ippool_explain(
                request=allocation.AllocateRequest(facts=facts, if_name=data["interface"], cni=defaults),
                visible=selectors.ippool_names_visible_to(request.user))
    context = {
        **admin.site.each_context(request),
        "title": "Explain: which pool would a pod get?",
        "form": form,
        "result": result,
        "result_json": json.dumps(result, indent=2, sort_keys=True, default=str) if result is not None else "",
    }
    return TemplateResponse(request, "admin/ipam/portal_explain.html", context)


TOKEN_ACTIONS = ("create", "rotate", "revoke")


@require_http_methods(["GET", "POST"])
def my_api_tokens(request):
    """The user's own REST API tokens: list (the first characters only), create, rotate, revoke.

    Through `tenancy.api_tokens`, the functions behind ``/api/v1/auth/token/``. A new token is rendered in this one
    response, never put in a message (messages may travel in a cookie), in the admin log or in a redirect, and the
    response is not cached. A POST answers with the page itself, not a redirect, for the same reason.
    """
    issued = None
    error = ""
    if request.method == "POST":
        action = request.POST.get("action", "")
        token_key = request.POST.get("token_key", "")
        try:
            if action == "create":
                _, issued = api_tokens.api_token_issue(user=request.user, request=request)
            elif action == "rotate":
                _, issued = api_tokens.api_token_rotate(user=request.user, token_key=token_key, request=request)
            elif action == "revoke":
                api_tokens.api_token_revoke(user=request.user, token_key=token_key)
            else:
                error = f"Unknown action {action!r}: use one of {', '.join(TOKEN_ACTIONS)}."
        except api_tokens.TokenNotFound:
            error = "No such token of yours (it may have expired or been revoked already)."
    context = {
        **admin.site.each_context(request),
        "title": "My API tokens",
        "tokens": api_tokens.api_token_list(request.user),
        "issued": issued,
        "error": error,
    }
    response = TemplateResponse(request, "admin/ipam/portal_api_tokens.html", context, status=400 if error else 200)
    add_never_cache_headers(response)
    response["Cache-Control"] = "no-store, " + response["Cache-Control"]
    return response
