"""Tenant model.

A tenant owns subnets, pools and reservations (NetBox's tenancy, reduced to what an IPAM needs). Users are
members of tenants; staff users see every tenant.
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

dns_label = RegexValidator(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "Use lowercase letters, digits and '-' (DNS label).")


class Tenant(models.Model):
    """An owner of IPAM objects; its members see and change only what it owns."""

    name = models.CharField(max_length=63, unique=True, validators=[dns_label])
    description = models.CharField(max_length=200, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="tenants")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name
