"""Django admin for IPAM: every write goes through `services`, so the admin obeys the webhook rules."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.utils.html import format_html

from spiderweb.engine.errors import IPAMError
from spiderweb.ipam import allocation, services
from spiderweb.ipam.models import (
    AddressHistory,
    Allocation,
    ClusterSettings,
    Coordinator,
    Endpoint,
    IPPool,
    NodeCredential,
    ReservedIP,
    Subnet,
)
from spiderweb.ipam.validation import SpecInvalid


def _bar(allocated: int, total: int) -> str:
    percent = 100.0 * allocated / total if total else 0.0
    colour = "#c0392b" if percent >= 90 else "#e67e22" if percent >= 70 else "#27ae60"
    return format_html(
        '<div style="width:120px;border:1px solid #ccc;"><div style="width:{}%;background:{};color:#fff;'
        'font-size:10px;padding:1px 2px;white-space:nowrap">{}%</div></div>',
        f"{min(percent, 100):.0f}",
        colour,
        f"{percent:.1f}",
    )


class ServiceBackedAdmin(admin.ModelAdmin):
    """Routes saves and deletes through the service layer and shows rule violations on the form."""

    create_service = update_service = delete_service = None
    spec_fields: tuple[str, ...] = ()
    instance_kwarg = ""

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        admin_self = self

        class ValidatingForm(form):
            def clean(self):
                cleaned = super().clean()
                if self.errors:
                    return cleaned
                try:
                    admin_self.validate(cleaned, self.instance if self.instance.pk else None)
                except SpecInvalid as exc:
                    for field, msgs in exc.fields.items():
                        target = field if field in self.fields else None
                        for msg in msgs:
                            self.add_error(target, msg)
                except IPAMError as exc:
                    self.add_error(None, exc.message)
                return cleaned

        return ValidatingForm

    def validate(self, cleaned, instance):
        raise NotImplementedError

    def spec_from(self, obj):
        return {name: getattr(obj, name) for name in self.spec_fields}

    def save_model(self, request, obj, form, change):
        if change:
            saved = type(self).update_service(**{self.instance_kwarg: obj}, spec=self.spec_from(obj), labels=obj.labels)
        else:
            saved = type(self).create_service(tenant=obj.tenant, name=obj.name, spec=self.spec_from(obj),
                                              labels=obj.labels)
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        try:
            type(self).delete_service(**{self.instance_kwarg: obj})
        except IPAMError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


class AllocationInline(admin.TabularInline):
    model = Allocation
    fields = ("address", "prefix_length", "interface", "endpoint", "node", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    max_num = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("endpoint")


@admin.register(IPPool)
class IPPoolAdmin(ServiceBackedAdmin):
    list_display = (
        "name", "tenant", "ip_version", "subnet", "allocated", "total", "utilization", "default", "disable",
        "owner_subnet",
    )
    list_filter = ("ip_version", "default", "disable", "tenant", "owner_subnet")
    search_fields = ("name", "subnet")
    readonly_fields = ("owner_subnet", "generation", "created_at", "updated_at")
    exclude = ("scan_from", "fresh_exhausted", "k8s_uid", "k8s_resource_version", "synced_generation", "terminating",
               "auto_app_uid", "auto_interface", "annotations")
    inlines = [AllocationInline]
    spec_fields = tuple(services.POOL_FIELDS)
    instance_kwarg = "pool"
    create_service = staticmethod(services.ippool_create)
    update_service = staticmethod(services.ippool_update)
    delete_service = staticmethod(services.ippool_delete)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_alloc=Count("allocations")).select_related("tenant")

    def validate(self, cleaned, instance):
        from spiderweb.ipam.validation import ippool_clean

        spec = {name: cleaned.get(name) for name in self.spec_fields if name in cleaned}
        if instance is not None:
            spec = {name: getattr(instance, name) for name in self.spec_fields} | spec
        ippool_clean(spec, instance=instance)

    @admin.display(description="allocated", ordering="n_alloc")
    def allocated(self, obj):
        return obj.n_alloc

    @admin.display(description="total")
    def total(self, obj):
        return obj.total_ip_count

    @admin.display(description="utilization")
    def utilization(self, obj):
        return _bar(obj.n_alloc, obj.total_ip_count)


@admin.register(Subnet)
class SubnetAdmin(ServiceBackedAdmin):
    list_display = ("name", "tenant", "ip_version", "subnet", "gateway", "pools", "total")
    list_filter = ("ip_version", "tenant")
    search_fields = ("name", "subnet")
    readonly_fields = ("generation", "created_at", "updated_at")
    exclude = ("k8s_uid", "k8s_resource_version", "synced_generation", "terminating")
    spec_fields = tuple(services.SUBNET_FIELDS)
    instance_kwarg = "subnet"
    create_service = staticmethod(services.subnet_create)
    update_service = staticmethod(services.subnet_update)
    delete_service = staticmethod(services.subnet_delete)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_pools=Count("pools"))

    def validate(self, cleaned, instance):
        from spiderweb.ipam.validation import subnet_clean

        spec = {name: cleaned.get(name) for name in self.spec_fields if name in cleaned}
        if instance is not None:
            spec = {name: getattr(instance, name) for name in self.spec_fields} | spec
        subnet_clean(spec, instance=instance)

    @admin.display(description="pools", ordering="n_pools")
    def pools(self, obj):
        return obj.n_pools

    @admin.display(description="total IPs")
    def total(self, obj):
        return obj.total_ip_count


@admin.register(ReservedIP)
class ReservedIPAdmin(ServiceBackedAdmin):
    list_display = ("name", "tenant", "ip_version", "ips_text")
    list_filter = ("ip_version", "tenant")
    search_fields = ("name",)
    readonly_fields = ("generation", "created_at", "updated_at")
    exclude = ("k8s_uid", "k8s_resource_version", "synced_generation", "terminating")
    spec_fields = tuple(services.RESERVED_FIELDS)
    instance_kwarg = "reserved"
    create_service = staticmethod(services.reservedip_create)
    update_service = staticmethod(services.reservedip_update)
    delete_service = staticmethod(services.reservedip_delete)

    def validate(self, cleaned, instance):
        from spiderweb.ipam.validation import reservedip_clean

        reservedip_clean({"ips": cleaned.get("ips"), "ip_version": cleaned.get("ip_version")}, instance=instance)

    @admin.display(description="IPs")
    def ips_text(self, obj):
        return ", ".join(obj.ips)


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ("__str__", "uid", "node", "owner_kind", "owner_name", "n_alloc", "updated_at")
    list_filter = ("owner_kind", "node")
    search_fields = ("namespace", "name", "uid")
    readonly_fields = [f.name for f in Endpoint._meta.fields]
    inlines = [AllocationInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n=Count("allocations"))

    @admin.display(description="addresses", ordering="n")
    def n_alloc(self, obj):
        return obj.n

    def has_add_permission(self, request):
        return False


@admin.register(Allocation)
class AllocationAdmin(admin.ModelAdmin):
    list_display = ("address", "prefix_length", "pool", "endpoint", "interface", "node", "created_at")
    list_filter = ("ip_version", "pool", "node")
    search_fields = ("address", "endpoint__name", "endpoint__namespace", "pod_uid")
    readonly_fields = [f.name for f in Allocation._meta.fields]
    actions = ["release_selected"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # release (below) keeps history and LRU order; a raw delete would not

    @admin.action(description="Release selected addresses", permissions=["change"])
    def release_selected(self, request, queryset):
        released = []
        for row in queryset:
            released += allocation.allocation_release(allocation=row, reason=f"admin:{request.user}")
        self.message_user(request, f"Released {len(released)} address(es): {', '.join(released[:10])}")


@admin.register(AddressHistory)
class AddressHistoryAdmin(admin.ModelAdmin):
    list_display = ("address", "pool_name", "pod_namespace", "pod_name", "interface", "node", "allocated_at",
                    "released_at", "release_reason")
    list_filter = ("ip_version", "release_reason", "pool_name")
    search_fields = ("address", "pod_name", "pod_uid", "pod_namespace")
    date_hierarchy = "allocated_at"
    readonly_fields = [f.name for f in AddressHistory._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ClusterSettings)
class ClusterSettingsAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return not ClusterSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Coordinator)
class CoordinatorAdmin(admin.ModelAdmin):
    list_display = ("name", "mode", "pod_cidr_type", "tune_pod_routes", "host_rule_table", "phase")
    exclude = ("k8s_uid", "k8s_resource_version", "synced_generation", "terminating")


@admin.register(NodeCredential)
class NodeCredentialAdmin(admin.ModelAdmin):
    list_display = ("node_name", "token_prefix", "revoked", "last_used_at", "created_at")
    readonly_fields = ("token_prefix", "token_hash", "last_used_at", "created_by", "created_at", "updated_at")
    list_filter = ("revoked",)
    search_fields = ("node_name",)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        credential, token = services.node_credential_issue(node_name=obj.node_name, created_by=request.user)
        obj.pk = credential.pk
        self.message_user(request, f"Token for {obj.node_name} (shown once): {token}", level=messages.WARNING)
