"""What the GC must remember across restarts: the pods it is waiting to reclaim (spec §7.2's pod entries).

Upstream keeps these in memory, so a controller restart forgets every terminating pod it was waiting for and
only the next full scan (10 minutes later) finds them. Here they are rows: the watcher writes them, the trace
sweep (beat, every few seconds) releases the ones whose time has come, whatever died in between.
"""

from django.db import models


class TracedPod(models.Model):
    """One pod incarnation whose addresses are to be released at ``stop_at`` unless it turns out to be needed."""

    namespace = models.CharField(max_length=253)
    name = models.CharField(max_length=253)
    uid = models.CharField(max_length=64, unique=True)
    node = models.CharField(max_length=253, blank=True)
    reason = models.CharField(max_length=200)
    stop_at = models.DateTimeField(db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["stop_at", "id"]

    def __str__(self):
        return f"{self.namespace}/{self.name} ({self.uid}) at {self.stop_at:%H:%M:%S}"
