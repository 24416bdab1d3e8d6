"""Which kinds the watcher watches and who hears about them: every controller declares its watches here.

A controller's ``watches.py`` defines ``WATCHES``, a list of :class:`Watch`. The watcher runs one watch stream per
kind however many controllers listen to it (Pods are watched once for GC and auto pools alike) and hands every
event to each listener in turn. Listeners map an event to keys and enqueue tasks (or record durable state); they
never act on Kubernetes themselves, so a slow listener cannot stall the stream for long.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps

from spiderweb.k8s.resources import Resource
from spiderweb.k8s.watch import WatchEvent

CONTROLLER_PREFIX = "spiderweb.controllers."


@dataclass(frozen=True)
class Watch:
    """One controller's interest in one kind.

    ``on_event`` gets every ADDED/MODIFIED/DELETED event; ``on_relist`` gets the full list after a (re)list, when
    DELETED events may have been lost for good; ``enabled`` is asked when the watcher starts (a switched-off
    controller costs no stream).
    """

    controller: str
    resource: Resource
    on_event: Callable[[WatchEvent], None]
    on_relist: Callable[[list[dict]], None] | None = None
    enabled: Callable[[], bool] = lambda: True


def watches() -> list[Watch]:
    """Every watch of every installed controller app (``spiderweb.controllers.<name>`` with a ``watches``
    module), in INSTALLED_APPS order."""
    found: list[Watch] = []
    for app in apps.get_app_configs():
        if not app.name.startswith(CONTROLLER_PREFIX):
            continue
        try:
            module = importlib.import_module(f"{app.name}.watches")
        except ModuleNotFoundError as exc:
            if exc.name != f"{app.name}.watches":
                raise
            continue
        found += module.WATCHES
    return found


def watches_by_kind(selected: list[Watch]) -> dict[str, list[Watch]]:
    """The watches grouped by the kind they watch: one stream per key."""
    grouped: dict[str, list[Watch]] = {}
    for watch in selected:
        grouped.setdefault(watch.resource.kind, []).append(watch)
    return grouped
