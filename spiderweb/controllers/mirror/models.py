"""Bookkeeping of the two-way mirror between the database and the Spiderpool CRDs.

The IPAM rows themselves carry ``k8s_uid``, ``k8s_resource_version``, ``generation`` and ``synced_generation``;
what they cannot carry is the *base* of a three-way merge (the last document both sides agreed on) and the digest
of the last status written. Watch cursors and leases are the controllers' kit (``spiderweb.controllers.models``).
"""

from django.db import models


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
