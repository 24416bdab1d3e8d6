"""``manage.py ipam_check [--release-leaks] [--json]``: calicoctl-style consistency report; exit 1 when anything is
wrong (0 after ``--release-leaks`` only if nothing else is), 2 when Kubernetes cannot be read."""

import json

from django.core.management.base import BaseCommand, CommandError

from spiderweb.controllers.config import kube_client
from spiderweb.controllers.gc.check import CheckReport, ipam_check
from spiderweb.engine.errors import IPAMError

TITLES = {
    "leaked": "Leaked addresses (no live pod needs them)",
    "pods_without_addresses": "Pods without their addresses",
    "duplicates": "Duplicate addresses",
    "outside_pool": "Allocations outside their pool (or on excludeIPs)",
    "on_reserved": "Allocations on reserved addresses",
    "crd_disagreements": "CRD and database disagree",
    "released": "Released now (--release-leaks)",
}


class Command(BaseCommand):
    help = "Check IPAM consistency against the cluster (leaks, duplicates, orphans, CRD drift); exit 1 on findings."

    def add_arguments(self, parser):
        parser.add_argument("--release-leaks", action="store_true",
                            help="release the addresses of pods that are provably gone (re-read before release)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, release_leaks, json: bool, **options):
        try:
            report = ipam_check(client=kube_client(), release_leaks=release_leaks)
        except IPAMError as exc:
            raise CommandError(f"cannot check: {exc.message}", returncode=2) from exc
        remaining = report.problems - (len(report.leaked) if release_leaks else 0)
        if json:
            self.stdout.write(_json_dumps(report.as_dict()))
        else:
            self._table(report, remaining)
        if remaining:
            raise SystemExit(1)

    def _table(self, report: CheckReport, remaining: int) -> None:
        for name, title in TITLES.items():
            findings = getattr(report, name)
            if name == "released" and not findings:
                continue
            self.stdout.write(f"{title}: {len(findings)}")
            for line in findings:
                self.stdout.write(f"  {line}")
        if not report.problems:
            self.stdout.write("OK: no problems found")
        elif remaining < report.problems:
            self.stdout.write(f"{report.problems} problem(s) found, {report.problems - remaining} fixed by releasing "
                              f"leaks; {remaining} left")
        else:
            self.stdout.write(f"{report.problems} problem(s) found")


def _json_dumps(data: dict) -> str:
    return json.dumps(data, indent=2)
