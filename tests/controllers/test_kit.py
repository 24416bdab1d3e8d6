"""The controllers' kit: watch registry, dispatch, leases and the task sender."""

import pytest

from spiderweb.controllers import enqueue, leases, registry, watcher
from spiderweb.controllers.models import Lease, WatchCursor
from spiderweb.k8s import crd, resources
from spiderweb.k8s.watch import WatchEvent


def test_every_installed_controller_contributes_its_watches():
    found = registry.watches()
    by_controller = {}
    for watch in found:
        by_controller.setdefault(watch.controller, set()).add(watch.resource.kind)
    assert by_controller["mirror"] == {"SpiderSubnet", "SpiderIPPool", "SpiderReservedIP", "SpiderCoordinator"}
    assert by_controller["gc"] == {"Pod", "Node"}


def test_one_stream_per_kind_however_many_controllers_listen():
    a = registry.Watch(controller="a", resource=resources.POD, on_event=lambda e: None)
    b = registry.Watch(controller="b", resource=resources.POD, on_event=lambda e: None)
    c = registry.Watch(controller="b", resource=crd.SPIDER_IPPOOL, on_event=lambda e: None)
    assert registry.watches_by_kind([a, b, c]) == {"Pod": [a, b], "SpiderIPPool": [c]}


@pytest.mark.django_db(transaction=True)  # the dispatcher closes connections left in a transaction
def test_events_reach_every_listener_and_relists_are_recorded():
    seen = []
    listeners = [
        registry.Watch(controller="a", resource=resources.POD, on_event=lambda e: seen.append(("a", e.name))),
        registry.Watch(controller="b", resource=resources.POD, on_event=lambda e: seen.append(("b", e.name)),
                       on_relist=lambda items: seen.append(("b-relist", len(items)))),
    ]
    watcher.event_dispatch(listeners, WatchEvent(type="ADDED", object={"metadata": {"name": "p1"}}))
    watcher.relist_dispatch("Pod", listeners, [{}, {}])
    assert seen == [("a", "p1"), ("b", "p1"), ("b-relist", 2)]
    assert WatchCursor.objects.get(kind="Pod").relisted_at is not None


@pytest.mark.django_db
def test_lease_held_is_exclusive_and_released_only_by_its_holder():
    with leases.lease_held("scan", ttl=60) as first:
        assert first is True
        assert leases.lease_acquire("scan", holder="someone-else", ttl=60) is False
        with leases.lease_held("scan", ttl=60) as again:
            assert again is True, "the same process renews its own lease"
    assert Lease.objects.get(name="scan").holder == ""
    assert leases.lease_acquire("scan", holder="someone-else", ttl=60) is True
    with leases.lease_held("scan", ttl=60) as mine:
        assert mine is False
    assert Lease.objects.get(name="scan").holder == "someone-else", "a loser never releases the winner's lease"


def test_the_portal_sends_tasks_through_an_app_configured_from_django_settings(settings):
    app = enqueue.celery_app()
    assert app.main == enqueue.APP_NAME
    assert app.conf.broker_url == settings.CELERY_BROKER_URL


def test_a_broker_that_is_down_is_logged_not_raised(monkeypatch, caplog):
    class Down:
        def send_task(self, *args, **kwargs):
            raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(enqueue, "celery_app", lambda: Down())
    assert enqueue.task_send("workers.gc.x_task", 1) is False
    assert "could not enqueue workers.gc.x_task" in caplog.text
