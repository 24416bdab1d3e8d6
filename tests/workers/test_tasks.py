"""The beat tasks of ``workers/tasks.py``, run as Celery tasks in this process with ``.apply()`` (no eager mode, no
broker): the allocation integrity report and the change-log retention."""

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from spiderweb.changelog.models import ObjectChange
from spiderweb.ipam import services
from spiderweb.ipam.models import IPPool
from spiderweb.ipam.validation import SpecInvalid
from tests.ipam import factories as f
from workers.celery import app
from workers.tasks import prune_change_log_task, verify_allocation_integrity_task

pytestmark = pytest.mark.django_db


def test_beat_runs_both_tasks_by_their_registered_names():
    schedule = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert verify_allocation_integrity_task.name in schedule
    assert prune_change_log_task.name in schedule


# ------------------------------------------------------------------------------------------- integrity


def allocate_three(pool: str) -> list[str]:
    addresses = []
    for name in ("pod-a", "pod-b", "pod-c"):
        result = f.allocate(f.facts(name, annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pool]})}))
        addresses.append(result["ips"][0]["address"].split("/")[0])
    return addresses


def test_integrity_task_reports_allocations_outside_their_pool_and_on_reserved_addresses(caplog):
    # Given: three pods hold 10.80.0.10-12 of pool p
    f.pool("p", "10.80.0.0/24", ["10.80.0.10-10.80.0.19"])
    assert allocate_three("p") == ["10.80.0.10", "10.80.0.11", "10.80.0.12"]
    # .10 leaves the pool's ips and .12 goes into its excludeIPs. The service refuses both edits while the
    # addresses are held, so this is the edit made around it (SQL, a restored backup): an ORM update.
    with pytest.raises(SpecInvalid, match="cannot remove allocated addresses 10.80.0.10, 10.80.0.12"):
        services.ippool_update(pool=f.pool_get("p"), spec={"ips": ["10.80.0.11-10.80.0.19"],
                                                           "exclude_ips": ["10.80.0.12"]})
    IPPool.objects.filter(name="p").update(ips=["10.80.0.11-10.80.0.19"], exclude_ips=["10.80.0.12"])
    # .11 is reserved while held (a reservation may be put over an address in use)
    services.reservedip_create(tenant=f.tenant(), name="r", spec={"ips": ["10.80.0.11"]})
    # When
    with caplog.at_level(logging.WARNING, logger="spiderweb.ipam.integrity"):
        result = verify_allocation_integrity_task.apply()
    # Then
    assert result.successful(), result.traceback
    assert result.get() == {"outside": ["p:10.80.0.10", "p:10.80.0.12"], "reserved": ["p:10.80.0.11"]}
    assert caplog.messages == [
        "allocation p:10.80.0.10 is outside its pool's addresses",
        "allocation p:10.80.0.12 is outside its pool's addresses",
        "allocation p:10.80.0.11 sits on a reserved address",
    ]


def test_integrity_task_reports_nothing_when_every_allocation_is_in_place(caplog):
    # Given: allocations inside their pool, and a reservation elsewhere in it
    f.pool("p", "10.80.0.0/24", ["10.80.0.10-10.80.0.19"])
    services.reservedip_create(tenant=f.tenant(), name="r", spec={"ips": ["10.80.0.18"]})
    allocate_three("p")
    # When
    with caplog.at_level(logging.WARNING, logger="spiderweb.ipam.integrity"):
        result = verify_allocation_integrity_task.apply()
    # Then
    assert result.get() == {"outside": [], "reserved": []}
    assert caplog.messages == []


# ------------------------------------------------------------------------------------------- retention


def changes_aged(**ages: int) -> None:
    """One change-log row per pool (created through the service), then backdated by the given number of days."""
    for i, (name, days) in enumerate(ages.items()):
        f.pool(name, f"10.{90 + i}.0.0/24", [f"10.{90 + i}.0.10"])
        ObjectChange.objects.filter(object_repr=name).update(time=timezone.now() - timedelta(days=days))


def logged() -> list[str]:
    return sorted(ObjectChange.objects.values_list("object_repr", flat=True))


def test_prune_task_deletes_changes_older_than_the_retention_and_keeps_newer_ones(monkeypatch):
    # Given
    monkeypatch.setenv("SPIDERWEB_CHANGELOG_RETENTION_DAYS", "30")
    changes_aged(**{"aged-45": 45, "aged-31": 31, "aged-29": 29, "today": 0})
    # When
    result = prune_change_log_task.apply()
    # Then
    assert result.successful(), result.traceback
    assert result.get() == 2
    assert logged() == ["aged-29", "today"]


def test_prune_task_keeps_90_days_by_default(monkeypatch):
    # Given
    monkeypatch.delenv("SPIDERWEB_CHANGELOG_RETENTION_DAYS", raising=False)
    changes_aged(**{"aged-91": 91, "aged-89": 89})
    # When
    result = prune_change_log_task.apply()
    # Then
    assert result.get() == 1
    assert logged() == ["aged-89"]


def test_prune_task_with_retention_0_keeps_everything(monkeypatch):
    # Given
    monkeypatch.setenv("SPIDERWEB_CHANGELOG_RETENTION_DAYS", "0")
    changes_aged(**{"aged-3650": 3650, "today": 0})
    # When
    result = prune_change_log_task.apply()
    # Then
    assert result.get() == 0
    assert logged() == ["aged-3650", "today"]
