"""`make run`: migrate SQLite, load the demo, then run the portal, a Celery worker and beat until Ctrl-C.

The embedded default needs no service: SQLite for the database and kombu's filesystem transport as the broker.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the portal, a Celery worker and beat on the embedded defaults (SQLite + filesystem broker)."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=os.environ.get("SPIDERWEB_BIND", "127.0.0.1:8000"))

    def handle(self, *args, bind, **options):
        settings.STATE_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("load_demo")
        env = dict(os.environ)
        python = sys.executable
        commands = {
            "portal": [python, "-m", "gunicorn", "spiderweb.wsgi:application", "--bind", bind, "--workers", "2",
                       "--access-logfile", "-"],
            "worker": [python, "-m", "celery", "-A", "workers.celery", "worker", "--loglevel", "INFO",
                       "--concurrency", "1", "--pool", "solo"],
            "beat": [python, "-m", "celery", "-A", "workers.celery", "beat", "--loglevel", "INFO"],
        }
        procs = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}
        self.stdout.write(self.style.SUCCESS(
            f"\nSpiderweb is running: http://{bind}/admin/  (login admin / spiderweb-demo)\n"
            f"REST API: http://{bind}/api/v1/   OpenAPI: http://{bind}/api/schema/swagger-ui/\n"
            "Ctrl-C stops the portal, the worker and beat.\n"
        ))
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping everything")
                        stopping = True
                time.sleep(0.5)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.time() + 10
            for proc in procs.values():
                try:
                    proc.wait(timeout=max(deadline - time.time(), 0.1))
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.stdout.write("stopped")
