"""Issue (or rotate) a node agent's credential and print only the token, for scripts that store it."""

from django.core.management.base import BaseCommand

from spiderweb.ipam import services


class Command(BaseCommand):
    help = "Issue or rotate the node credential of NODE and print the token (shown once; only its hash is kept)."

    def add_arguments(self, parser):
        parser.add_argument("node")

    def handle(self, *args, node, **options):
        _, token = services.node_credential_issue(node_name=node)
        self.stdout.write(token)
