"""State every controller shares: where each watch resumes, and who may run the jobs that must not overlap."""

from django.db import models
from django.db.models import Q
from django.utils import timezone


class WatchCursor(models.Model):
    """Where the watch of one kind resumes after a restart (the resourceVersion of the last handled event)."""

    kind = models.CharField(max_length=32, unique=True)
    resource_version = models.CharField(max_length=64, blank=True)
    relisted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind"]

    def __str__(self):
        return f"{self.kind}@{self.resource_version or '-'}"


class Lease(models.Model):
    """A named lease in the database: at most one holder until ``expires_at`` (the watcher, a batch, a scan)."""

    name = models.CharField(max_length=63, unique=True)
    holder = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="lease_name_not_empty")]

    def __str__(self):
        return f"{self.name} → {self.holder or '-'}"
