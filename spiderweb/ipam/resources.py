"""Import and export of pools, subnets and reservations (CSV, JSON, YAML) with django-import-export.

Rows are keyed by name. Every imported row goes through the same services as the admin form and the REST API
(`ippool_create`/`ippool_update`, ...), so the webhook rules, the per-pool locks and the change log apply; a row the
rules refuse is reported as invalid with the rule's message, and the import (a transaction) writes nothing. Exports
hold the spec, tenant and labels only: status, counters and Kubernetes bookkeeping are not portable.
"""

from django.core.exceptions import ValidationError
from import_export import fields, resources, widgets

from spiderweb.engine.errors import IPAMError
from spiderweb.ipam import services, validation
from spiderweb.ipam.models import IPPool, ReservedIP, Subnet
from spiderweb.tenancy.models import Tenant


class ServiceResource(resources.ModelResource):
    """A row per object, written through the services; subclasses name the model, the services and the spec."""

    tenant = fields.Field(attribute="tenant", column_name="tenant", widget=widgets.ForeignKeyWidget(Tenant, "name"))
    create_service = update_service = None
    spec_fields: tuple[str, ...] = ()
    instance_kwarg = ""

    def import_data(self, dataset, **kwargs):
        """All rows or none: an invalid row rolls the whole import back (the library keeps the valid rows)."""
        kwargs.setdefault("rollback_on_validation_errors", True)
        return super().import_data(dataset, **kwargs)

    def import_instance(self, instance, row, **kwargs):
        """A stored object keeps its tenant: moving objects between tenants is not an import's business."""
        tenant_before = instance.tenant_id if instance.pk else None
        super().import_instance(instance, row, **kwargs)
        if tenant_before is not None and instance.tenant_id != tenant_before:
            raise ValidationError({"tenant": f"{instance.name} belongs to another tenant; an import cannot move it."})

    def do_instance_save(self, instance, is_create):
        spec = {name: getattr(instance, name) for name in self.spec_fields}
        if "ip_version" in spec:
            spec["ip_version"] = spec["ip_version"] or None
        try:
            if is_create:
                saved = type(self).create_service(tenant=instance.tenant, name=instance.name, spec=spec,
                                                  labels=instance.labels)
            else:
                saved = type(self).update_service(**{self.instance_kwarg: instance}, spec=spec, labels=instance.labels)
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

    class Meta:
        model = ReservedIP
        import_id_fields = ("name",)
        fields = ("name", "tenant", *services.RESERVED_FIELDS, "labels")
        export_order = fields
        skip_unchanged = True
        clean_model_instances = False
