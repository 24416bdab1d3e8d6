"""Tenant admin: creates, changes and deletes go through the services, so each one lands in the change log.

It lives in ``ipam`` (imported by ``ipam/admin.py``), not in ``tenancy``, because deleting a tenant is an IPAM rule
(``services.tenant_delete`` checks the pools, subnets and coordinators it owns) and tenancy sits below ipam.
"""

from django.contrib import admin

from spiderweb.changelog.models import ObjectChange
from spiderweb.changelog.services import object_change_record, object_snapshot
from spiderweb.ipam import services
from spiderweb.ipam.admin import ChangeLogHistoryMixin, ServiceDeleteMixin, change_history_link
from spiderweb.tenancy.models import Tenant


@admin.register(Tenant)
class TenantAdmin(ChangeLogHistoryMixin, ServiceDeleteMixin, admin.ModelAdmin):
    list_display = ("name", "description", "member_count", "created_at")
    search_fields = ("name", "description", "members__username")
    filter_horizontal = ("members",)
    readonly_fields = ("history", "created_at", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("members")

    def get_readonly_fields(self, request, obj=None):
        readonly = tuple(super().get_readonly_fields(request, obj))
        return readonly + ("name",) if obj is not None else readonly

    def save_model(self, request, obj, form, change):
        if change:
            services.tenant_update(tenant=obj, description=obj.description)
        else:
            # The form's instance becomes the saved row (its state too): save_related then adds the members to it.
            created = services.tenant_create(name=obj.name, description=obj.description)
            obj.pk, obj.created_at, obj.updated_at = created.pk, created.created_at, created.updated_at
            obj._state.adding, obj._state.db = False, created._state.db

    def save_related(self, request, form, formsets, change):
        """Membership decides who sees what, so a change of members is recorded like any other change."""
        tenant = form.instance
        before = object_snapshot(tenant)
        super().save_related(request, form, formsets, change)
        after = object_snapshot(tenant)
        if before["members"] != after["members"]:
            object_change_record(instance=tenant, action=ObjectChange.Action.UPDATE, before=before,
                                 message="members changed")

    def delete_service_call(self, obj):
        services.tenant_delete(tenant=obj)

    @admin.display(description="members")
    def member_count(self, obj):
        return len(obj.members.all())

    @admin.display(description="history")
    def history(self, obj):
        return change_history_link(obj)
