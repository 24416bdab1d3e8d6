"""Load a small demo dataset: a tenant, a dual-stack subnet, a few pools, a reservation, a node credential."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from spiderweb.ipam import services
from spiderweb.ipam.models import ClusterSettings, Coordinator, IPPool
from spiderweb.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Create the demo tenant, subnets, pools and reservation (idempotent) and an admin login."

    def add_arguments(self, parser):
        parser.add_argument("--admin-password", default="spiderweb-demo")

    def handle(self, *args, admin_password, **options):
        with transaction.atomic():
            ClusterSettings.load()
            if not Coordinator.objects.filter(name="default").exists():
                # The chart's coordinator.* defaults, through the webhook's rules. It stays NotReady: without a
                # cluster no controller discovers its CIDRs (in Kubernetes the SpiderCoordinator is the source).
                services.coordinator_create(tenant=self._tenant("default"), name="default", spec={
                    "pod_cidr_type": "auto", "hijack_cidr": ["169.254.0.0/16"]})
            user = self._admin(admin_password)
            demo = self._tenant("demo")
            demo.members.add(user)
            if not IPPool.objects.filter(name="demo-v4-default").exists():
                services.subnet_create(tenant=demo, name="demo-v4", spec={
                    "subnet": "172.18.0.0/16", "ips": ["172.18.40.1-172.18.41.254"], "gateway": "172.18.0.1"})
                services.subnet_create(tenant=demo, name="demo-v6", spec={
                    "subnet": "fd00:172:18::/64", "ips": ["fd00:172:18::40:1-fd00:172:18::41:ffff"],
                    "gateway": "fd00:172:18::1"})
                services.ippool_create(tenant=demo, name="demo-v4-default", spec={
                    "subnet": "172.18.0.0/16", "ips": ["172.18.40.1-172.18.40.200"], "gateway": "172.18.0.1",
                    "default": True})
                services.ippool_create(tenant=demo, name="demo-v6-default", spec={
                    "subnet": "fd00:172:18::/64", "ips": ["fd00:172:18::40:1-fd00:172:18::40:ff"],
                    "gateway": "fd00:172:18::1", "default": True})
                services.ippool_create(tenant=demo, name="demo-v4-db", spec={
                    "subnet": "172.18.0.0/16", "ips": ["172.18.41.1-172.18.41.20"], "gateway": "172.18.0.1",
                    "namespace_name": ["database"]})
                services.reservedip_create(tenant=demo, name="demo-reserved", spec={
                    "ips": ["172.18.40.1-172.18.40.9"]})
        self.stdout.write("demo data loaded: tenant demo, subnets demo-v4/demo-v6, 3 pools, 1 reservation")

    def _tenant(self, name):
        return Tenant.objects.get_or_create(name=name)[0]

    def _admin(self, password):
        User = get_user_model()
        user, created = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        if created:
            user.set_password(password)
            user.save()
        return user
