"""Tombstones of deleted pod sandboxes: a CNI DEL that overtook its ADD still wins (see `PodTombstone`).

The ADD and the DEL of one pod are also serialised by a per-pod lock (`allocation.POD_LOCK_CLASS`), so a DEL that
arrives while the ADD is inside the portal waits for it and releases what it took. The tombstone covers the
other order: the DEL ran first, and the ADD of the same sandbox arrives afterwards.
"""

from datetime import timedelta

from django.utils import timezone

from spiderweb.engine.errors import Conflict
from spiderweb.engine.facts import PodFacts
from spiderweb.ipam.models import PodTombstone

TOMBSTONE_RETENTION = timedelta(hours=1)


def pod_tombstone_record(*, pod_uid: str, container_id: str) -> None:
    """Remember that the runtime deleted this sandbox (idempotent; on PostgreSQL the release statement does it)."""
    PodTombstone.objects.bulk_create(
        [PodTombstone(pod_uid=pod_uid, container_id=container_id)],
        ignore_conflicts=True,
    )


def pod_tombstone_refuse(*, facts: PodFacts, container_id: str) -> None:
    """Refuse the ADD of a sandbox whose DEL already came: for good (409), not a retryable error."""
    if container_id and PodTombstone.objects.filter(pod_uid=facts.uid, container_id=container_id).exists():
        raise pod_tombstone_conflict(facts=facts, container_id=container_id)


def pod_tombstone_conflict(*, facts: PodFacts, container_id: str) -> Conflict:
    """The refusal itself, for callers that found the tombstone in a statement of their own."""
    return Conflict(
        f"pod sandbox {container_id} of pod {facts.namespace}/{facts.name} (UID {facts.uid}) was already "
        "deleted: its CNI DEL reached the portal before this ADD",
        details={"podUID": facts.uid, "containerID": container_id},
    )


def pod_tombstone_prune(*, older_than: timedelta = TOMBSTONE_RETENTION) -> int:
    """Forget tombstones older than `older_than`; an ADD they guarded against has long arrived or given up."""
    deleted, _ = PodTombstone.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted
