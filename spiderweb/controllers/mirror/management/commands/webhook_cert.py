"""``manage.py webhook_cert``: make a CA and a serving certificate for the admission webhooks.

Writes ``ca.crt``, ``tls.crt`` and ``tls.key`` into ``--dir`` and prints the base64 ``caBundle`` (last line) for
the Mutating/ValidatingWebhookConfiguration. Serve the webhooks with the same application over TLS:

    gunicorn spiderweb.wsgi:application --bind 0.0.0.0:5722 --certfile DIR/tls.crt --keyfile DIR/tls.key
"""

from django.core.management.base import BaseCommand, CommandError

from spiderweb.k8s.tls import webhook_certificate_write


class Command(BaseCommand):
    help = "Create a CA and a webhook serving certificate; print the caBundle."

    def add_arguments(self, parser):
        parser.add_argument("--dir", required=True, help="directory for ca.crt, tls.crt and tls.key")
        parser.add_argument("--dns", action="append", default=[],
                            help="DNS name of the webhook Service, e.g. spiderweb-webhook.kube-system.svc (repeat)")
        parser.add_argument("--ip", action="append", default=[], help="IP address SAN, e.g. 127.0.0.1 (repeat)")
        parser.add_argument("--days", type=int, default=365, help="validity in days (default 365)")

    def handle(self, *args, dir, dns, ip, days, **options):
        try:
            cert = webhook_certificate_write(dir, dns_names=dns, ip_addresses=ip, days=days)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"wrote {cert.ca_path}, {cert.cert_path}, {cert.key_path}")
        self.stdout.write(cert.ca_bundle)
