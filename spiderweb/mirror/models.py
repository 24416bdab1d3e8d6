"""Bookkeeping of the two-way mirror between the database and the Spiderpool CRDs.

The IPAM rows themselves carry ``k8s_uid``, ``k8s_resource_version``, ``generation`` and ``synced_generation``;
what they cannot carry is the *base* of a three-way merge (the last document both sides agreed on), the digest of
the last status written, where each watch should resume, and who may run the jobs that must not overlap.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone


class MirrorState(models.Model):
    """What the portal and Kubernetes last agreed on for one object (or, for SpiderEndpoints, what was last written).

    ``synced_spec`` is the merge base (``{"spec": {...}, "labels": {...}}``, canonical); ``resource_version`` and
    ``generation`` are the CRD's at that moment; ``object_id`` is the database row's primary key, so a row deleted in
    the portal can still be found here by id and its CRD deleted by name.
    """

    class Kind(models.TextChoices):
        IPPOOL = "SpiderIPPool"
        SUBNET = "SpiderSubnet"
        RESERVEDIP = "SpiderReservedIP"
        ENDPOINT = "SpiderEndpoint"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    name = models.CharField(max_length=507, help_text="Object name; namespace/name for namespaced kinds.")
    object_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    k8s_uid = models.CharField(max_length=64, blank=True)
    synced_spec = models.JSONField(null=True, blank=True, help_text="Merge base: the last spec both sides had.")
    resource_version = models.CharField(max_length=64, blank=True)
    generation = models.BigIntegerField(default=0, help_text="metadata.generation of the CRD at agreement.")
    status_digest = models.CharField(max_length=64, blank=True, help_text="Digest of the last status written.")
    status_written_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="uniq_mirror_state_kind_name")]

    def __str__(self):
        return f"{self.kind} {self.name}"


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
    """A named lease in the database: at most one holder until ``expires_at`` (the watcher, the status batch)."""

    name = models.CharField(max_length=63, unique=True)
    holder = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="lease_name_not_empty")]

    def __str__(self):
        return f"{self.name} → {self.holder or '-'}"
