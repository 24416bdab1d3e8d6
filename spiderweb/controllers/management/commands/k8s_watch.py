"""``manage.py k8s_watch``: the one watcher of every controller (mirror, GC, ...): watch events become tasks.

Restart-safe (resumes from the resourceVersion stored in the database, relists on 410 Gone) and leader-elected
through a database lease; SIGTERM or Ctrl-C stops it cleanly (watches interrupted, lease released, exit 0).
"""

import signal

from django.core.management.base import BaseCommand, CommandError

from spiderweb.controllers.config import kube_client, kube_config
from spiderweb.controllers.registry import watches
from spiderweb.controllers.watcher import Watcher


class Command(BaseCommand):
    help = "Watch Kubernetes for every controller and enqueue their tasks (resumes from the stored resourceVersion)."

    def add_arguments(self, parser):
        parser.add_argument("--kinds", default="",
                            help="comma-separated kinds to watch (default: every kind an enabled controller needs)")
        parser.add_argument("--watch-timeout", type=int, default=None,
                            help="server-side timeout of one watch request in seconds (SPIDERWEB_WATCH_TIMEOUT)")
        parser.add_argument("--lease-ttl", type=float, default=30.0,
                            help="seconds a watcher's lease lasts without renewal (standbys take over after it)")

    def handle(self, *args, kinds, watch_timeout, lease_ttl, **options):
        every = watches()
        enabled = [w for w in every if w.enabled()]
        wanted = [k.strip() for k in kinds.split(",") if k.strip()]
        unknown = sorted(set(wanted) - {w.resource.kind for w in enabled})
        if unknown:
            off = sorted({f"{w.resource.kind} ({w.controller} is switched off)" for w in every
                          if w.resource.kind in unknown and not w.enabled()})
            choices = ", ".join(sorted({w.resource.kind for w in enabled})) or "nothing: every controller is off"
            raise CommandError(f"cannot watch {', '.join(off or unknown)}; choose from {choices}")
        if not enabled:
            raise CommandError("every controller is switched off; nothing to watch")
        selected = [w for w in enabled if not wanted or w.resource.kind in wanted]
        watcher = Watcher(kube_client(), selected, watch_timeout=watch_timeout or kube_config().watch_timeout,
                          lease_ttl=lease_ttl)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: watcher.shutdown())
        self.stdout.write(f"watching {', '.join(watcher.kinds)} as {watcher.holder}", ending="\n")
        self.stdout.flush()
        watcher.run()
        self.stdout.write("stopped", ending="\n")
