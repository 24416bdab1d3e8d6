"""Write change records. Services call `object_change_record` inside their transaction."""

from django.forms.models import model_to_dict

from spiderweb.changelog.context import current_actor
from spiderweb.changelog.models import ObjectChange


def object_snapshot(instance) -> dict:
    """A JSON-able snapshot of a model instance's concrete fields (foreign keys as ids)."""
    data = model_to_dict(instance, fields=[f.name for f in instance._meta.concrete_fields])
    for key, value in list(data.items()):
        if not isinstance(value, (str, int, float, bool, list, dict, type(None))):
            data[key] = str(value)
    for field in instance._meta.many_to_many:
        data[field.name] = sorted(obj.pk for obj in getattr(instance, field.name).all()) if instance.pk else []
    return data


def object_change_record(*, instance, action: str, before: dict | None, message: str = "") -> ObjectChange:
    """Record one change made by the current actor. `before` is the snapshot taken before the change."""
    actor = current_actor()
    after = None if action == ObjectChange.Action.DELETE else object_snapshot(instance)
    return ObjectChange.objects.create(
        user_id=actor.user_id,
        user_name=actor.name,
        request_id=actor.request_id,
        action=action,
        object_type=instance._meta.label_lower,
        object_id=instance.pk,
        object_repr=str(instance)[:200],
        tenant_id=_tenant_of(instance),
        prechange_data=before,
        postchange_data=after,
        message=message[:200],
    )


def _tenant_of(instance) -> int | None:
    """The tenant a change belongs to, so tenant members can read their own change log."""
    if instance._meta.label_lower == "tenancy.tenant":
        return instance.pk
    return getattr(instance, "tenant_id", None)
