"""What the coordinator controller remembers: the ``podCIDRType`` it last saw, to tell a change (spec §8.7 step 5).

Spiderpool compares the old and new object in its informer's update handler; a level-based controller that reads
fresh state has no old object, so the last type seen per incarnation is kept here.
"""

from django.db import models


class ObservedCoordinator(models.Model):
    """The ``spec.podCIDRType`` last reconciled for one SpiderCoordinator incarnation (``uid``)."""

    name = models.CharField(max_length=253, unique=True)
    uid = models.CharField(max_length=64)
    pod_cidr_type = models.CharField(max_length=10)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name}: {self.pod_cidr_type}"
