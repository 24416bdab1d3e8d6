"""Change-log retention (NetBox's CHANGELOG_RETENTION): 90 days by default, 0 keeps everything."""

import os
from datetime import timedelta

from django.utils import timezone

from spiderweb.changelog.models import ObjectChange


def change_log_prune() -> int:
    days = int(os.environ.get("SPIDERWEB_CHANGELOG_RETENTION_DAYS", "90"))
    if days <= 0:
        return 0
    deleted, _ = ObjectChange.objects.filter(time__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted
