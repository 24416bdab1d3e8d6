"""ObjectChange: one row per create, update or delete of a change-logged object."""

from django.conf import settings
from django.db import models


class ObjectChange(models.Model):
    """A frozen record of one change: actor, request, action and the object's state before and after."""

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    user_name = models.CharField(max_length=150, blank=True, help_text="Frozen actor name (user, node or task).")
    request_id = models.UUIDField(null=True, blank=True, db_index=True)
    action = models.CharField(max_length=10, choices=Action.choices)
    object_type = models.CharField(max_length=50, db_index=True, help_text="app_label.model")
    object_id = models.BigIntegerField(db_index=True)
    object_repr = models.CharField(max_length=200)
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    prechange_data = models.JSONField(null=True, blank=True)
    postchange_data = models.JSONField(null=True, blank=True)
    message = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self):
        return f"{self.action} {self.object_type} {self.object_repr}"

    @property
    def diff(self) -> dict:
        """Fields whose value differs between the two snapshots: {field: [before, after]}."""
        before, after = self.prechange_data or {}, self.postchange_data or {}
        keys = sorted(set(before) | set(after))
        return {k: [before.get(k), after.get(k)] for k in keys if before.get(k) != after.get(k)}
