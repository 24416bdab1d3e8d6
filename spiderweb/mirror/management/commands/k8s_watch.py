"""``manage.py k8s_watch``: watch the Spiderpool CRDs and enqueue a ``mirror_in`` task per change.

Restart-safe (resumes from the resourceVersion stored in the database, relists on 410 Gone) and leader-elected
through a database lease; SIGTERM or Ctrl-C stops it cleanly (watches interrupted, lease released, exit 0).
"""

import signal

from django.core.management.base import BaseCommand

from spiderweb.mirror.config import mirror_config
from spiderweb.mirror.services import crd_client
from spiderweb.mirror.watcher import WATCHED_KINDS, Watcher


class Command(BaseCommand):
    help = "Watch Spiderpool CRDs and enqueue mirror_in tasks (resumes from the stored resourceVersion)."

    def add_arguments(self, parser):
        parser.add_argument("--kinds", default=",".join(WATCHED_KINDS),
                            help=f"comma-separated kinds to watch (default: {','.join(WATCHED_KINDS)})")
        parser.add_argument("--watch-timeout", type=int, default=None,
                            help="server-side timeout of one watch request in seconds (SPIDERWEB_WATCH_TIMEOUT)")
        parser.add_argument("--lease-ttl", type=float, default=30.0,
                            help="seconds a watcher's lease lasts without renewal (standbys take over after it)")

    def handle(self, *args, kinds, watch_timeout, lease_ttl, **options):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
        unknown = sorted(set(kinds) - set(WATCHED_KINDS))
        if unknown:
            self.stderr.write(f"cannot watch {', '.join(unknown)}; choose from {', '.join(WATCHED_KINDS)}")
            raise SystemExit(2)
        config = mirror_config()
        watcher = Watcher(crd_client(), kinds=kinds, watch_timeout=watch_timeout or config.watch_timeout,
                          lease_ttl=lease_ttl)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: watcher.shutdown())
        self.stdout.write(f"watching {', '.join(kinds)} as {watcher.holder}", ending="\n")
        self.stdout.flush()
        watcher.run()
        self.stdout.write("stopped", ending="\n")
