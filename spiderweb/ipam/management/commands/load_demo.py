"""Load a small demo dataset: a tenant, a dual-stack subnet, a few pools, a reservation, and pods holding addresses
(some already gone), so a newcomer's first look at the portal has allocations, usage and history to show."""

import json
import uuid

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from spiderweb.engine import keys
from spiderweb.engine.facts import PodFacts, TopController
from spiderweb.ipam import allocation, services
from spiderweb.ipam.models import ClusterSettings, Coordinator, Endpoint, IPPool
from spiderweb.tenancy.models import Tenant

# The demo's workloads: (namespace, kind, name, replicas, replicas deleted again, pod annotations). Pods get their
# addresses through the allocator as a CNI ADD would; the deleted ones leave their addresses in the history.
DEMO_WORKLOADS = (
    ("web", "Deployment", "shop", 8, 3, {}),
    ("web", "Deployment", "api", 4, 1, {}),
    ("database", "StatefulSet", "pg", 3, 0,
     {keys.ANNO_IPPOOL: json.dumps({"ipv4": ["demo-v4-db"], "ipv6": ["demo-v6-default"]})}),
)


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
        pods = self._pods()
        self.stdout.write("demo data loaded: tenant demo, subnets demo-v4/demo-v6, 3 pools, 1 reservation, "
                          f"{pods} pods holding addresses")

    def _pods(self) -> int:
        """The demo workloads' pods, once: allocate each (dual-stack), release the ones 'deleted' again."""
        if not Endpoint.objects.filter(namespace__in={w[0] for w in DEMO_WORKLOADS}).exists():
            allocation.pool_catalog_invalidate()
            for namespace, kind, name, replicas, deleted, annotations in DEMO_WORKLOADS:
                owner = TopController(kind=kind, name=name, uid=self._uid(namespace, kind, name),
                                      api_version="apps/v1")
                for i in range(replicas):
                    pod = f"{name}-{i}" if kind == "StatefulSet" else f"{name}-{uuid.UUID(int=i).hex[-5:]}"
                    facts = PodFacts(namespace=namespace, name=pod, uid=self._uid(namespace, pod), node="demo-node",
                                     labels={"app": name}, annotations=annotations, owner=owner, namespace_labels={},
                                     namespace_annotations={}, node_labels={})
                    allocation.ippool_allocate(request=allocation.AllocateRequest(facts=facts, if_name="eth0"))
                    if i >= replicas - deleted:
                        allocation.ippool_release(namespace=namespace, name=pod, pod_uid=facts.uid,
                                                  reason="demo: pod deleted")
        return Endpoint.objects.filter(namespace__in={w[0] for w in DEMO_WORKLOADS}).count()

    @staticmethod
    def _uid(*parts: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "spiderweb-demo/" + "/".join(parts)))

    def _tenant(self, name):
        return Tenant.objects.get_or_create(name=name)[0]

    def _admin(self, password):
        User = get_user_model()
        user, created = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        if created:
            user.set_password(password)
            user.save()
        return user
