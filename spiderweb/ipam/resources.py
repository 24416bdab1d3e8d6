"""Import and export of pools, subnets and reservations (CSV, JSON, YAML) with django-import-export.

Rows are keyed by name. Every imported row goes through the same services as the admin form and the REST API
(`ippool_create`/`ippool_update`, ...), so the webhook rules, the per-pool locks and the change log apply; a row the
rules refuse is reported as invalid with the rule's message, and the import (a transaction) writes nothing. Exports
hold the spec, tenant and labels only: status, counters and Kubernetes bookkeeping are not portable.

An import made in the admin carries its user: a row is refused unless that user may add (a new object) or change (a
stored one) objects of the row's tenant, by the REST API's rule (`tenant_object_permission`), and a tenant member's
rows stay inside their tenant's address space (the services' `confined`), as with the admin's forms.
"""

from django.core.exceptions import ValidationError
from import_export import fields, resources, widgets

from spiderweb.engine.errors import IPAMError
from spiderweb.ipam import services, validation
from spiderweb.ipam.models import IPPool, ReservedIP, Subnet
from spiderweb.tenancy.models import Tenant
from spiderweb.tenancy.selectors import confined_to_own_tenants, model_perm, tenant_object_permission


class ServiceResource(resources.ModelResource):
    """A row per object, written through the services; subclasses name the model, the services and the spec."""

    tenant = fields.Field(attribute="tenant", column_name="tenant", widget=widgets.ForeignKeyWidget(Tenant, "name"))
    create_service = update_service = None
    spec_fields: tuple[str, ...] = ()
    instance_kwarg = ""
    confine_on_update = False  # whether the update service confines a member's change too (reservations)
    user = None  # the admin's user during an import; None for code that acts as the cluster (tests, shells)

    def import_data(self, dataset, **kwargs):
        """All rows or none: an invalid row rolls the whole import back (the library keeps the valid rows)."""
        kwargs.setdefault("rollback_on_validation_errors", True)
        self.user = kwargs.get("user")
        return super().import_data(dataset, **kwargs)

    def import_instance(self, instance, row, **kwargs):
        """A stored object keeps its tenant: moving objects between tenants is not an import's business. The user
        must hold the right to add or change objects of that tenant."""
        tenant_before = instance.tenant_id if instance.pk else None
        super().import_instance(instance, row, **kwargs)
        if tenant_before is not None and instance.tenant_id != tenant_before:
            raise ValidationError({"tenant": f"{instance.name} belongs to another tenant; an import cannot move it."})
        action = "add" if tenant_before is None else "change"
        if self.user is not None and not tenant_object_permission(self.user, action, self._meta.model,
                                                                  instance.tenant_id):
            raise ValidationError({"tenant": f"you may not {action} {self._meta.model._meta.verbose_name_plural} of "
                                             f"tenant {instance.tenant}."})

    def confined(self, *, is_create: bool) -> bool:
        if self.user is None or not (is_create or self.confine_on_update):
            return False
        return confined_to_own_tenants(self.user, model_perm(self._meta.model, "add" if is_create else "change"))

    def do_instance_save(self, instance, is_create):
        spec = {name: getattr(instance, name) for name in self.spec_fields}
        if "ip_version" in spec:
            spec["ip_version"] = spec["ip_version"] or None
        confined = {"confined": True} if self.confined(is_create=is_create) else {}
        try:
            if is_create:
                saved = type(self).create_service(tenant=instance.tenant, name=instance.name, spec=spec,
                                                  labels=instance.labels, **confined)
            else:
                saved = type(self).update_service(**{self.instance_kwarg: instance}, spec=spec, labels=instance.labels,
                                                  **confined)
        except validation.SpecInvalid as exc:
            raise ValidationError({field: list(messages) for field, messages in exc.fields.items()}) from None
        except IPAMError as exc:
            raise ValidationError(exc.message) from None
        instance.pk = saved.pk


class IPPoolResource(ServiceResource):
    create_service = staticmethod(services.ippool_create)
    update_service = staticmethod(services.ippool_update)
    spec_fields = tuple(services.POOL_FIELDS)
    instance_kwarg = "pool"

    class Meta:
        model = IPPool
        import_id_fields = ("name",)
        fields = ("name", "tenant", *services.POOL_FIELDS, "labels")
        export_order = fields
        skip_unchanged = True
        clean_model_instances = False


class SubnetResource(ServiceResource):
    create_service = staticmethod(services.subnet_create)
    update_service = staticmethod(services.subnet_update)
    spec_fields = tuple(services.SUBNET_FIELDS)
    instance_kwarg = "subnet"

    class Meta:
        model = Subnet
        import_id_fields = ("name",)
        fields = ("name", "tenant", *services.SUBNET_FIELDS, "labels")
        export_order = fields
        skip_unchanged = True
        clean_model_instances = False


class ReservedIPResource(ServiceResource):
    create_service = staticmethod(services.reservedip_create)
    update_service = staticmethod(services.reservedip_update)
    spec_fields = tuple(services.RESERVED_FIELDS)
    instance_kwarg = "reserved"
    confine_on_update = True

    class Meta:
        model = ReservedIP
        import_id_fields = ("name",)
        fields = ("name", "tenant", *services.RESERVED_FIELDS, "labels")
        export_order = fields
        skip_unchanged = True
        clean_model_instances = False
