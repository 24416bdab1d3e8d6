"""Django admin for IPAM: every write goes through `services`, so the admin obeys the webhook rules.

A rule broken on an add or change form shows as an error on the offending field; a delete the service refuses
(a pool that still holds allocations, a subnet that still controls pools) shows the service's message and keeps
the object. Allocation records are read-only; addresses are released with the "Release" action, which keeps the
address history and the least-recently-released order.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, OuterRef, ProtectedError, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from import_export.admin import ImportExportMixin
from import_export.formats import base_formats
from knox.models import AuthToken

from spiderweb.changelog.admin import ObjectChangeAdmin, ReadOnlyAdminMixin
from spiderweb.changelog.models import ObjectChange
from spiderweb.engine import keys
from spiderweb.engine import selector as selector_text
from spiderweb.engine.errors import IPAMError
from spiderweb.ipam import allocation, resources, selectors, services, validation
from spiderweb.ipam.models import (
    AddressHistory,
    Allocation,
    ClusterSettings,
    Coordinator,
    Endpoint,
    IPPool,
    NodeCredential,
    PodTombstone,
    ReleasedAddress,
    ReservedIP,
    Subnet,
)
from spiderweb.tenancy.selectors import (
    confined_to_own_tenants,
    model_perm,
    tenant_list_for_user,
    tenant_object_permission,
)


def utilization_bar(usage: dict) -> str:
    """A coloured bar (green below 70 %, orange below 90 %, red above) with its figure beside it, never inside,
    so a nearly empty bar stays readable. `usage` is a `selectors.range_usage` dict: the one definition."""
    percent = usage["utilization"]
    colour = "#c0392b" if percent >= 90 else "#e67e22" if percent >= 70 else "#27ae60"
    return format_html(
        '<span class="sw-usage" title="{} of {} usable addresses allocated" style="white-space:nowrap">'
        '<span style="display:inline-block;vertical-align:middle;width:80px;height:10px;border:1px solid #999;'
        'background:#fff"><span style="display:block;height:10px;width:{}%;background:{}"></span></span> {}%</span>',
        usage["allocatedIPCount"], usage["totalIPCount"] - usage["reservedIPCount"],
        f"{min(percent, 100):.0f}", colour, f"{percent:.1f}",
    )


def usage_cell(usage: dict) -> str:
    """A list cell: the bar and "allocated of usable", in one column so the list fits a 1400-pixel window."""
    return format_html("{} <small>{} of {}</small>", utilization_bar(usage), usage["allocatedIPCount"],
                       usage["totalIPCount"] - usage["reservedIPCount"])


class UsageChangeList(ChangeList):
    """A changelist whose rows carry `.usage` (`selectors.range_usage`), the reserved ranges read once per page."""

    allocated_attr = "n_alloc"

    def get_results(self, request):
        super().get_results(request)
        self.result_list = selectors.attach_usage(self.result_list, allocated_attr=self.allocated_attr)


def change_history_link(obj) -> str:
    """A link to the change log of one object."""
    if obj is None or obj.pk is None:
        return "-"
    query = urlencode({"object_type": obj._meta.label_lower, "object_id": obj.pk})
    return format_html('<a href="{}?{}">Change history</a>', reverse("admin:changelog_objectchange_changelist"), query)


class ChangeLogHistoryMixin:
    """The HISTORY button opens the object's change log (every create, update and delete, from the admin, the REST
    API, the mirror or a task); Django's own history would list only admin edits, which the services do not log."""

    def history_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return super().history_view(request, object_id, extra_context)
        query = urlencode({"object_type": obj._meta.label_lower, "object_id": obj.pk})
        return HttpResponseRedirect(f"{reverse('admin:changelog_objectchange_changelist')}?{query}")


class StringListField(forms.CharField):
    """A list of strings typed one per line (or comma-separated), stored as a JSON list."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        return [item.strip() for line in text.splitlines() for item in line.split(",") if item.strip()]


def _json_or(text: str, opening: str, what: str):
    """Text that starts like JSON (`opening`) is read as JSON, so a value copied from kubectl or the API still works."""
    if not text.startswith(opening):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"{what} in JSON could not be read: {exc.msg} (line {exc.lineno})") from None


class RoutesField(forms.CharField):
    """Routes typed one per line as ``DST via GW`` (JSON is accepted too); the pool/subnet rules check them after."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60, "placeholder": "10.7.0.0/16 via 10.6.0.1"})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(f"{route.get('dst', '')} via {route.get('gw', '')}" if isinstance(route, dict)
                             else json.dumps(route) for route in value)
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        text = (super().to_python(value) or "").strip()
        loaded = _json_or(text, "[", "Routes")
        if loaded is not None:
            return loaded
        routes = []
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split()
            if not words:
                continue
            if len(words) == 3 and words[1] == "via":
                words = [words[0], words[2]]
            if len(words) != 2:
                raise forms.ValidationError(f"Line {number}: write a route as 'DST via GW' "
                                            f"(e.g. 10.7.0.0/16 via 10.6.0.1), got {line.strip()!r}")
            routes.append({"dst": words[0], "gw": words[1]})
        return routes


class LabelsField(forms.CharField):
    """Labels typed one per line as ``key=value`` (JSON is accepted too), checked with Kubernetes' label rules."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60, "placeholder": "team=network"})

    def prepare_value(self, value):
        if isinstance(value, dict):
            return "\n".join(f"{key}={item}" for key, item in value.items())
        return value

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        text = (super().to_python(value) or "").strip()
        loaded = _json_or(text, "{", "Labels")
        labels = loaded if loaded is not None else {}
        if loaded is None:
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                key, sep, item = line.strip().partition("=")
                if not sep:
                    raise forms.ValidationError(f"Line {number}: write a label as key=value, got {line.strip()!r}")
                labels[key.strip()] = item.strip()
        try:
            return validation.labels_clean(labels)
        except validation.SpecInvalid as exc:
            raise forms.ValidationError([msg for msgs in exc.fields.values() for msg in msgs]) from None


class LabelSelectorField(forms.CharField):
    """A label selector typed as kubectl's ``-l`` (``app=web, tier in (db, cache), !legacy``; JSON accepted too).
    Empty means no selector; the pool rules (the REST API's) check the result."""

    widget = forms.Textarea(attrs={"rows": 2, "cols": 60, "placeholder": "app=web, tier in (db, cache)"})

    def prepare_value(self, value):
        if isinstance(value, dict) or value is None:
            return selector_text.format_selector_text(value)
        return value

    def to_python(self, value):
        if isinstance(value, dict):
            return value
        text = (super().to_python(value) or "").strip()
        if text == "null":
            return None
        loaded = _json_or(text, "{", "The selector")
        if loaded is not None:
            return loaded
        try:
            return selector_text.parse_selector_text(text)
        except IPAMError as exc:
            raise forms.ValidationError(exc.message) from None


class ServiceDeleteMixin:
    """Deletes through the service; a refusal becomes an error message on the object's page, never a 500.

    The service decides what blocks a delete and says why (naming the holders), the same message the REST API
    returns with its 409; Django's own collector is not consulted, so the confirmation page lists only the object.
    """

    def delete_service_call(self, obj):
        raise NotImplementedError

    def delete_model(self, request, obj):
        self.delete_service_call(obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            try:
                self.delete_service_call(obj)
            except (IPAMError, ProtectedError) as exc:
                self.message_user(request, _refusal(obj, exc), level=messages.ERROR)

    def get_deleted_objects(self, objs, request):
        objs = list(objs)
        return [str(obj) for obj in objs], {self.opts.verbose_name_plural: len(objs)}, set(), []

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except (IPAMError, ProtectedError) as exc:
            obj = self.get_object(request, unquote(object_id))
            self.message_user(request, _refusal(obj, exc), level=messages.ERROR)
            opts = self.opts
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))


def _refusal(obj, exc) -> str:
    if isinstance(exc, IPAMError):
        return f"{obj} was not deleted: {exc.message}"
    holders = ", ".join(sorted({f"{o._meta.verbose_name} {o}" for o in exc.protected_objects})[:10])
    return f"{obj} was not deleted: still referenced by {holders}"


class TenantScopedAdmin:
    """Tenant members in the admin: the REST API's rules, asked of the same functions.

    Rows come through `selectors.scoped_for_user` (the REST querysets' filter), rights through
    `tenant_object_permission` (the REST permission class's rule), and the tenant of a new object is offered from
    `tenant_list_for_user` (the REST serializer's choice). Another tenant's object is a 404, as in the API.
    Read-only admins put `ReadOnlyAdminMixin` before it, so that its ``has_add/change/delete_permission`` win.
    """

    def get_queryset(self, request):
        return selectors.scoped_for_user(super().get_queryset(request), request.user)

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.model._meta.verbose_name} with this id that you may see.")
        return obj

    def has_module_permission(self, request):
        return tenant_object_permission(request.user, "view", self.model)

    def has_view_permission(self, request, obj=None):
        return tenant_object_permission(request.user, "view", self.model)  # which rows: get_queryset

    def has_add_permission(self, request):
        return tenant_object_permission(request.user, "add", self.model)

    def has_change_permission(self, request, obj=None):
        return tenant_object_permission(request.user, "change", self.model, getattr(obj, "tenant_id", None))

    def has_delete_permission(self, request, obj=None):
        return tenant_object_permission(request.user, "delete", self.model, getattr(obj, "tenant_id", None))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = tenant_list_for_user(request.user, model_perm(self.model, "add"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ServiceBackedAdmin(ChangeLogHistoryMixin, ServiceDeleteMixin, admin.ModelAdmin):
    """Routes saves and deletes through the service layer and shows rule violations on the form.

    Subclasses name the services, the spec fields, the list-of-strings fields and the validation function.
    """

    create_service = update_service = delete_service = None
    clean_spec = None
    # A tenant member's writes are confined to their tenant's address space (`validation.*_confine`, as in REST):
    # the rule, checked on the form for its message and again by the service.
    confine_spec = None
    confine_on_update = False
    spec_fields: tuple[str, ...] = ()
    list_fields: tuple[str, ...] = ()
    instance_kwarg = ""

    def get_readonly_fields(self, request, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj)) + ("history",)
        return readonly + ("name", "tenant") if obj is not None else readonly

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name in self.list_fields:
            return StringListField(required=False, label=db_field.verbose_name, help_text=db_field.help_text)
        if db_field.name == "routes":
            return RoutesField(required=False, label="routes",
                               help_text="One route per line: DST via GW, e.g. 10.7.0.0/16 via 10.6.0.1.")
        if db_field.name == "labels":
            return LabelsField(required=False, label="labels", help_text="One label per line: key=value.")
        if db_field.name in ("pod_affinity", "namespace_affinity", "node_affinity"):
            return LabelSelectorField(
                required=False, label=db_field.verbose_name,
                help_text="kubectl's selector syntax: app=web, tier in (db, cache), zone notin (a), gpu, !legacy. "
                          "Empty: no affinity.")
        if db_field.name == "ip_version":
            kwargs["required"] = False
            field = super().formfield_for_dbfield(db_field, request, **kwargs)
            field.help_text = "Leave empty to derive it from the addresses."
            return field
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        admin_self = self

        class ValidatingForm(form):
            def clean(self):
                cleaned = super().clean()
                for name, empty in (("labels", {}), ("routes", [])):
                    if name in cleaned and cleaned[name] is None:
                        cleaned[name] = empty
                if self.errors:
                    return cleaned
                instance = self.instance if self.instance.pk else None
                try:
                    normalised = admin_self.validate(cleaned, instance)
                    admin_self.confine(request, cleaned, instance, normalised)
                except validation.SpecInvalid as exc:
                    for field, msgs in exc.fields.items():
                        target = field if field in self.fields else None
                        label = validation.WIRE_NAMES.get(field, field)
                        for msg in msgs:
                            self.add_error(target, msg if target else f"{label}: {msg}")
                except IPAMError as exc:
                    self.add_error(None, exc.message)
                else:
                    if "ip_version" in normalised and not cleaned.get("ip_version"):
                        cleaned["ip_version"] = normalised["ip_version"]
                return cleaned

        return ValidatingForm

    def validate(self, cleaned: dict, instance) -> dict:
        """Run the shared validation on the form's values merged over the stored spec; returns the clean spec."""
        spec = {name: cleaned[name] for name in self.spec_fields if name in cleaned}
        if instance is not None:
            spec = {name: getattr(instance, name) for name in self.spec_fields} | spec
        if "ip_version" in self.spec_fields:
            spec["ip_version"] = spec.get("ip_version") or None
        return type(self).clean_spec(spec, instance=instance)

    def confined(self, request, change: bool) -> bool:
        """Whether this write is confined, exactly as the REST API decides it (`confined_to_own_tenants`)."""
        if type(self).confine_spec is None or (change and not self.confine_on_update):
            return False
        return confined_to_own_tenants(request.user, model_perm(self.model, "change" if change else "add"))

    def confine(self, request, cleaned: dict, instance, normalised: dict) -> None:
        if self.confined(request, instance is not None):
            tenant = instance.tenant if instance is not None else cleaned["tenant"]
            type(self).confine_spec(tenant=tenant, spec=normalised)

    def spec_from(self, obj):
        return {name: getattr(obj, name) for name in self.spec_fields}

    def save_model(self, request, obj, form, change):
        confined = {"confined": True} if self.confined(request, change) else {}
        if change:
            saved = type(self).update_service(**{self.instance_kwarg: obj}, spec=self.spec_from(obj), labels=obj.labels,
                                              **confined)
        else:
            saved = type(self).create_service(
                tenant=obj.tenant, name=obj.name, spec=self.spec_from(obj), labels=obj.labels, **confined
            )
        obj.pk = saved.pk

    def delete_service_call(self, obj):
        type(self).delete_service(**{self.instance_kwarg: obj})

    @admin.display(description="history")
    def history(self, obj):
        return change_history_link(obj)


class PortableMixin(ImportExportMixin):
    """Import and export buttons (CSV, JSON, YAML); the rows go through the services (`ipam.resources`).

    By the tenant rules, like every other page: a tenant member exports the rows they see (the scoped changelist)
    and imports into their tenants, each row checked by the resource against the importing user's rights.
    """

    formats = [base_formats.CSV, base_formats.JSON, base_formats.YAML]

    def has_import_permission(self, request):
        return tenant_object_permission(request.user, "add", self.model)

    def has_export_permission(self, request):
        return tenant_object_permission(request.user, "view", self.model)


class EndpointAllocationInline(admin.TabularInline):
    """A pod's addresses (a handful per pod); pools list theirs on the paginated allocation changelist instead."""

    model = Allocation
    fields = ("address", "prefix_length", "interface", "endpoint", "node", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    max_num = 0

    def get_queryset(self, request):
        """Only the addresses the user may see (a pod may hold addresses of two tenants' pools)."""
        return selectors.scoped_for_user(super().get_queryset(request).select_related("endpoint"), request.user)

    def has_view_permission(self, request, obj=None):
        return tenant_object_permission(request.user, "view", Allocation)


@admin.register(IPPool)
class IPPoolAdmin(TenantScopedAdmin, PortableMixin, ServiceBackedAdmin):
    list_display = (
        "name", "tenant", "subnet", "utilization", "default", "disable", "owner_subnet",
    )
    list_filter = ("ip_version", "default", "disable", "terminating", ("tenant", admin.RelatedOnlyFieldListFilter),
                   ("owner_subnet", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "subnet", "ips")
    readonly_fields = ("address_space", "owner_subnet", "application", "generation", "created_at", "updated_at")
    exclude = ("scan_from", "fresh_exhausted", "k8s_uid", "k8s_resource_version", "synced_generation", "terminating",
               "auto_app_uid", "auto_interface", "auto_desired", "annotations")
    spec_fields = tuple(services.POOL_FIELDS)
    list_fields = ("ips", "exclude_ips", "namespace_name", "node_name", "multus_name")
    instance_kwarg = "pool"
    resource_classes = [resources.IPPoolResource]
    create_service = staticmethod(services.ippool_create)
    update_service = staticmethod(services.ippool_update)
    delete_service = staticmethod(services.ippool_delete)
    clean_spec = staticmethod(validation.ippool_clean)
    confine_spec = staticmethod(validation.ippool_confine)

    def get_queryset(self, request):
        # A correlated count (an index-only scan per pool row), not a join grouped by every pool column: the change
        # page of a pool with 60,000 allocations would spend a second in that GROUP BY.
        allocated = Allocation.objects.filter(pool=OuterRef("pk")).order_by().values("pool").annotate(
            n=Count("*")).values("n")
        return super().get_queryset(request).annotate(n_alloc=Coalesce(Subquery(allocated), 0)).select_related(
            "tenant", "owner_subnet"
        )

    def get_changelist(self, request, **kwargs):
        return UsageChangeList

    def get_fields(self, request, obj=None):
        """The address space first: it is what an admin opens a pool for."""
        fields = [name for name in super().get_fields(request, obj) if name != "address_space"]
        return ["address_space", *fields] if obj is not None else fields

    @admin.display(description="address space")
    def address_space(self, obj):
        """Usage, free ranges, the next free addresses and links to the pool's allocations and address history.

        The allocations are not inlined (a pool may hold 60,000): they are one click away on the allocation list,
        filtered by this pool and paginated.
        """
        if obj is None or obj.pk is None:
            return "—"
        obj = IPPool.objects.get(pk=obj.pk)  # the stored pool, not a form's unsaved edits
        space = selectors.ippool_address_space(obj)
        usage = space["usage"]
        allocations = reverse("admin:ipam_allocation_changelist") + "?" + urlencode({"pool__id__exact": obj.pk})
        history = reverse("admin:ipam_addresshistory_changelist") + "?" + urlencode({"pool_name": obj.name})
        more = space["free_range_count"] - len(space["free_ranges"])
        return format_html(
            '<div class="sw-address-space">{} <b>{}</b> allocated, <b>{}</b> free, {} reserved, {} in total<br>'
            '<a href="{}" id="sw-pool-allocations">Allocations of this pool ({})</a> · '
            '<a href="{}" id="sw-pool-history">Address history of this pool</a><br>'
            'Next free: <code id="sw-next-free">{}</code><br>'
            'Free ranges ({}): <code id="sw-free-ranges">{}</code>{}</div>',
            utilization_bar(usage), usage["allocatedIPCount"], usage["freeIPCount"], usage["reservedIPCount"],
            usage["totalIPCount"], allocations, usage["allocatedIPCount"], history,
            ", ".join(space["next_free"]) or "none", space["free_range_count"],
            ", ".join(space["free_ranges"]) or "none", f" and {more} more" if more > 0 else "",
        )

    @admin.display(description="allocated", ordering="n_alloc")
    def allocated(self, obj):
        return obj.n_alloc

    @admin.display(description="total")
    def total(self, obj):
        return obj.total_ip_count

    actions = ["disable_selected", "enable_selected"]

    @admin.action(description="Disable selected pools (no new allocations; release still works)",
                  permissions=["change"])
    def disable_selected(self, request, queryset):
        self._set_disable(request, queryset, True)

    @admin.action(description="Enable selected pools", permissions=["change"])
    def enable_selected(self, request, queryset):
        self._set_disable(request, queryset, False)

    def _set_disable(self, request, queryset, disable: bool):
        """Each pool through `ippool_update` (its lock, its rules, its change log entry), in primary-key order."""
        changed = []
        for pool in queryset.order_by("pk"):
            if pool.disable == disable:
                continue
            try:
                services.ippool_update(pool=pool, spec=self.spec_from(pool) | {"disable": disable}, labels=pool.labels)
            except IPAMError as exc:
                self.message_user(request, f"{pool} was not changed: {exc.message}", level=messages.ERROR)
            else:
                changed.append(pool.name)
        verb = "Disabled" if disable else "Enabled"
        self.message_user(request, f"{verb} {len(changed)} pool(s): {', '.join(changed[:10]) or 'none'}")

    @admin.display(description="application")
    def application(self, obj):
        """Which workload an auto-created pool serves (spec §2.4 owner labels), its NIC and the size it follows."""
        if not obj.auto_app_uid:
            return "—"
        labels = obj.labels or {}
        return (f"{labels.get(keys.LABEL_OWNER_APP_KIND, '?')} {labels.get(keys.LABEL_OWNER_APP_NAMESPACE, '?')}/"
                f"{labels.get(keys.LABEL_OWNER_APP_NAME, '?')} ({obj.auto_interface}), "
                f"{obj.total_ip_count} of {obj.auto_desired} addresses, "
                f"ippool-ip-number {(obj.annotations or {}).get(keys.ANNO_IPPOOL_IP_NUMBER, '?')}")

    @admin.display(description="utilization", ordering="n_alloc")
    def utilization(self, obj):
        return usage_cell(obj.usage)


@admin.register(Subnet)
class SubnetAdmin(TenantScopedAdmin, PortableMixin, ServiceBackedAdmin):
    list_display = ("name", "tenant", "subnet", "gateway", "pools", "utilization")
    list_filter = ("ip_version", "terminating", ("tenant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "subnet")
    readonly_fields = ("pools_in_subnet", "generation", "created_at", "updated_at")
    exclude = ("k8s_uid", "k8s_resource_version", "synced_generation", "terminating")
    spec_fields = tuple(services.SUBNET_FIELDS)
    list_fields = ("ips", "exclude_ips")
    instance_kwarg = "subnet"
    confine_spec = staticmethod(validation.subnet_confine)
    resource_classes = [resources.SubnetResource]
    create_service = staticmethod(services.subnet_create)
    update_service = staticmethod(services.subnet_update)
    delete_service = staticmethod(services.subnet_delete)
    clean_spec = staticmethod(validation.subnet_clean)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(n_pools=Count("pools", distinct=True), n_alloc=Count("pools__allocations", distinct=True))
            .select_related("tenant")
        )

    @admin.display(description="pools", ordering="n_pools")
    def pools(self, obj):
        return obj.n_pools

    def get_changelist(self, request, **kwargs):
        return UsageChangeList

    def get_fields(self, request, obj=None):
        """The layout of the subnet first: which pools are cut from it and what is left."""
        fields = [name for name in super().get_fields(request, obj) if name != "pools_in_subnet"]
        return ["pools_in_subnet", *fields] if obj is not None else fields

    @admin.display(description="pools and free space")
    def pools_in_subnet(self, obj):
        """The subnet in address order: each pool with its usage bar (and, for an auto pool, the workload it
        serves), and the unassigned ranges between them."""
        if obj.pk is None:
            return "—"
        rows = []
        for row in selectors.subnet_layout(Subnet.objects.get(pk=obj.pk)):  # stored, not a form's unsaved edits
            if row["kind"] == "free":
                rows.append(format_html('<tr class="sw-free"><td><i>free</i></td><td><code>{}</code></td>'
                                        '<td>{} addresses not in any pool</td></tr>',
                                        ", ".join(row["ranges"]), row["count"]))
                continue
            p = row["pool"]
            auto = (f" — auto pool of {p.labels.get(keys.LABEL_OWNER_APP_KIND, '')} "
                    f"{p.labels.get(keys.LABEL_OWNER_APP_NAMESPACE, '')}/{p.labels.get(keys.LABEL_OWNER_APP_NAME, '')}"
                    if p.auto_app_uid else "")
            rows.append(format_html(
                '<tr class="sw-pool"><td><a href="{}">{}</a>{}</td><td><code>{}</code></td><td>{} {} of {}</td></tr>',
                reverse("admin:ipam_ippool_change", args=[p.pk]), p.name, auto, ", ".join(row["ranges"]) or "none",
                utilization_bar(p.usage), p.usage["allocatedIPCount"],
                p.usage["totalIPCount"] - p.usage["reservedIPCount"]))
        if not rows:
            return "no addresses"
        return format_html('<table id="sw-subnet-layout"><tr><th>pool</th><th>ranges</th><th>usage</th></tr>{}'
                           '</table>', format_html_join("", "{}", ((row,) for row in rows)))

    @admin.display(description="allocated", ordering="n_alloc")
    def allocated(self, obj):
        return obj.n_alloc

    @admin.display(description="total IPs")
    def total(self, obj):
        return obj.total_ip_count

    @admin.display(description="utilization", ordering="n_alloc")
    def utilization(self, obj):
        return usage_cell(obj.usage)


@admin.register(ReservedIP)
class ReservedIPAdmin(TenantScopedAdmin, PortableMixin, ServiceBackedAdmin):
    list_display = ("name", "tenant", "ip_version", "ips_text", "count")
    list_filter = ("ip_version", "terminating", ("tenant", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "ips")
    readonly_fields = ("generation", "created_at", "updated_at")
    exclude = ("k8s_uid", "k8s_resource_version", "synced_generation", "terminating")
    spec_fields = tuple(services.RESERVED_FIELDS)
    list_fields = ("ips",)
    instance_kwarg = "reserved"
    resource_classes = [resources.ReservedIPResource]
    create_service = staticmethod(services.reservedip_create)
    update_service = staticmethod(services.reservedip_update)
    delete_service = staticmethod(services.reservedip_delete)
    clean_spec = staticmethod(validation.reservedip_clean)
    confine_spec = staticmethod(validation.reservation_confine)
    confine_on_update = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tenant")

    @admin.display(description="IPs")
    def ips_text(self, obj):
        return ", ".join(obj.ips)

    @admin.display(description="addresses")
    def count(self, obj):
        return obj.ranges.count()


@admin.register(Endpoint)
class EndpointAdmin(ReadOnlyAdminMixin, TenantScopedAdmin, admin.ModelAdmin):
    """SpiderEndpoints are written by the allocator only: read-only here."""

    list_display = ("__str__", "uid", "node", "owner_kind", "owner_name", "n_alloc", "updated_at")
    list_filter = ("owner_kind", "node")
    search_fields = ("namespace", "name", "uid", "owner_name")
    readonly_fields = [f.name for f in Endpoint._meta.fields]
    inlines = [EndpointAllocationInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n=Count("allocations"))

    @admin.display(description="addresses", ordering="n")
    def n_alloc(self, obj):
        return obj.n


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdminMixin, TenantScopedAdmin, admin.ModelAdmin):
    """Live allocations, read-only; "Release selected addresses" frees them and closes their history."""

    list_display = ("address", "prefix_length", "pool", "endpoint", "interface", "node", "created_at", "history_link")
    list_filter = ("ip_version", ("pool", admin.RelatedOnlyFieldListFilter), "node")
    search_fields = ("address", "endpoint__name", "endpoint__namespace", "pod_uid")
    readonly_fields = [f.name for f in Allocation._meta.fields] + ["history_link"]
    list_select_related = ("pool", "endpoint")
    actions = ["release_selected"]
    show_full_result_count = False  # a filtered page of a 60,000-address pool needs no second count of every row

    # No delete either: release (below) keeps history and LRU order; a raw delete would not.

    def has_release_permission(self, request):
        return request.user.is_staff and request.user.has_perm("ipam.change_allocation")

    @admin.action(description="Release selected addresses", permissions=["release"])
    def release_selected(self, request, queryset):
        released = []
        for row in queryset:
            released += allocation.allocation_release(allocation=row, reason=f"admin:{request.user}")
        self.message_user(request, f"Released {len(released)} address(es): {', '.join(released[:10])}")

    @admin.display(description="history")
    def history_link(self, obj):
        url = reverse("admin:ipam_addresshistory_changelist")
        return format_html('<a href="{}?{}">Address history</a>', url, urlencode({"address": obj.address}))


@admin.register(AddressHistory)
class AddressHistoryAdmin(ReadOnlyAdminMixin, TenantScopedAdmin, admin.ModelAdmin):
    list_display = ("address", "pool_name", "pod_namespace", "pod_name", "interface", "node", "allocated_at",
                    "released_at", "release_reason")
    list_filter = ("ip_version", "release_reason", "pool_name")
    search_fields = ("address", "pod_name", "pod_uid", "pod_namespace", "container_id")
    date_hierarchy = "allocated_at"
    readonly_fields = [f.name for f in AddressHistory._meta.fields]


@admin.register(ReleasedAddress)
class ReleasedAddressAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Bookkeeping of the least-recently-released reuse order: read-only."""

    list_display = ("address", "pool", "released_at")
    list_filter = ("pool",)
    list_select_related = ("pool",)
    readonly_fields = ("pool", "address_key", "released_at")

    @admin.display(description="address")
    def address(self, obj):
        from spiderweb.engine.ranges import int_to_ip, key_to_int

        return int_to_ip(key_to_int(obj.address_key), obj.pool.ip_version)


@admin.register(PodTombstone)
class PodTombstoneAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Pod sandboxes whose DEL came (an ADD of them arriving later is refused): read-only, pruned after an hour."""

    list_display = ("pod_uid", "container_id", "created_at")
    search_fields = ("pod_uid", "container_id")
    readonly_fields = ("pod_uid", "container_id", "created_at")


class ClusterSettingsForm(forms.ModelForm):
    class Meta:
        model = ClusterSettings
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("enable_ipv4") and not cleaned.get("enable_ipv6"):
            raise forms.ValidationError("At least one of enableIPv4 and enableIPv6 must be on.")
        return cleaned


@admin.register(ClusterSettings)
class ClusterSettingsAdmin(admin.ModelAdmin):
    """Spiderpool's `spiderpool-conf` switches (a single row)."""

    form = ClusterSettingsForm
    list_display = ("__str__", "enable_ipv4", "enable_ipv6", "enable_spider_subnet", "enable_statefulset",
                    "updated_at")

    def has_add_permission(self, request):
        return not ClusterSettings.objects.exists() and not ClusterSettings.config_path()

    def has_change_permission(self, request, obj=None):
        """Read-only while the switches come from the spiderpool-conf ConfigMap (change it with helm instead)."""
        return not ClusterSettings.config_path() and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def get_object(self, request, object_id, from_field=None):
        """The switches in force (the ConfigMap's when there is one), not merely the stored row."""
        return ClusterSettings.load() if super().get_object(request, object_id, from_field) else None

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if ClusterSettings.config_path():
            messages.info(request, f"Set by {ClusterSettings.config_path()} (the spiderpool-conf ConfigMap): change "
                                   f"the chart's values and upgrade, every component reads them at start-up.")
        return super().changeform_view(request, object_id, form_url, extra_context)


@admin.register(Coordinator)
class CoordinatorAdmin(ServiceBackedAdmin):
    """The SpiderCoordinator's mirror: spec edits are validated like the webhook and pushed to the CRD (the source of
    truth); the status is the coordinator controller's and read-only here."""

    list_display = ("name", "mode", "pod_cidr_type", "tune_pod_routes", "host_rule_table", "phase", "reason")
    exclude = ("k8s_uid", "k8s_resource_version", "synced_generation", "terminating", "generation")
    readonly_fields = ("phase", "reason", "overlay_pod_cidr", "service_cidr")
    spec_fields = tuple(services.COORDINATOR_FIELDS)
    list_fields = ("hijack_cidr",)
    instance_kwarg = "coordinator"
    create_service = staticmethod(services.coordinator_create)
    update_service = staticmethod(services.coordinator_update)
    delete_service = staticmethod(services.coordinator_delete)
    clean_spec = staticmethod(validation.coordinator_clean)


@admin.register(NodeCredential)
class NodeCredentialAdmin(admin.ModelAdmin):
    """Node agent credentials. The token is shown once, when issued or rotated; only its hash is stored."""

    list_display = ("node_name", "token_prefix", "revoked", "last_used_at", "created_at")
    readonly_fields = ("token_prefix", "token_hash", "last_used_at", "created_by", "created_at", "updated_at")
    list_filter = ("revoked",)
    search_fields = ("node_name",)
    actions = ["rotate_tokens"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        self._issue(request, obj.node_name)
        obj.pk = NodeCredential.objects.get(node_name=obj.node_name).pk

    def response_add(self, request, obj, post_url_continue=None):
        # The token page replaces the redirect: a message would carry the token in a cookie.
        return self._issued_page(request)

    @admin.action(description="Issue new tokens (the old ones stop working)", permissions=["change"])
    def rotate_tokens(self, request, queryset):
        for credential in queryset:
            self._issue(request, credential.node_name)
        return self._issued_page(request)

    def _issue(self, request, node_name):
        _, token = services.node_credential_issue(node_name=node_name, created_by=request.user)
        request._spiderweb_issued_tokens = [*getattr(request, "_spiderweb_issued_tokens", []), (node_name, token)]

    def _issued_page(self, request):
        """The tokens just issued, shown once in this response only (not stored, not in a cookie, not cached)."""
        context = {**self.admin_site.each_context(request), "title": "Node tokens (shown once)",
                   "opts": self.model._meta, "issued": getattr(request, "_spiderweb_issued_tokens", []),
                   "back_url": reverse("admin:ipam_nodecredential_changelist")}
        response = TemplateResponse(request, "admin/ipam/nodecredential/token_issued.html", context)
        add_never_cache_headers(response)
        response["Cache-Control"] = "no-store, " + response["Cache-Control"]
        return response


if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


@admin.register(AuthToken)
class APITokenAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """REST API tokens, read only: who holds one, since when, until when. Replaces knox's admin, which lists the
    digest and puts a new token into a message (a cookie). Neither the token nor its digest is shown, and there
    are no actions (whose checkboxes would carry the digest) and no admin log entries (whose text would name it):
    users rotate and end their own tokens through the API; deactivating a user ends all of theirs."""

    list_display = ("user", "token_start", "created", "expiry")
    list_display_links = None
    list_filter = ("expiry",)
    search_fields = ("user__username",)
    actions = None

    @admin.display(description="token starts with")
    def token_start(self, obj):
        return f"{obj.token_key[:6]}…"


if admin.site.is_registered(ObjectChange):
    admin.site.unregister(ObjectChange)


@admin.register(ObjectChange)
class ScopedObjectChangeAdmin(TenantScopedAdmin, ObjectChangeAdmin):
    """The change log, scoped like ``/api/v1/changes/``: a member sees the changes of their tenants' objects.

    Registered here (ipam) because the scoping rule lives in `ipam.selectors`, above the changelog app. Read-only
    for everyone, as `ObjectChangeAdmin` is: the scoping mixin comes first in the MRO, so its rights are overridden
    with `ReadOnlyAdminMixin`'s here (that mixin cannot lead the bases: `ObjectChangeAdmin` already has it)."""

    has_add_permission = ReadOnlyAdminMixin.has_add_permission
    has_change_permission = ReadOnlyAdminMixin.has_change_permission
    has_delete_permission = ReadOnlyAdminMixin.has_delete_permission


from spiderweb.ipam import tenant_admin  # noqa: E402,F401  (registers the Tenant admin; needs the mixins above)
