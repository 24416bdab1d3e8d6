"""A small world with one object of every model the admin shows, and a logged-in superuser."""

import json

import pytest
from django.contrib.auth.models import Group
from knox.models import AuthToken

from spiderweb.ipam import services
from tests.ipam import factories as f


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", email="root@example.com")


@pytest.fixture
def admin_web(client, superuser):
    """The Django test client, logged in as the superuser (the admin is a browser UI)."""
    client.force_login(superuser)
    return client


def annotated(pool: str, name: str):
    return f.facts(name, annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pool]})})


@pytest.fixture
def world(superuser):
    """Tenant, subnet, a pool holding one live and one released address (and the released pod's tombstone), a
    reservation, coordinator, node credential, cluster settings, a group and an API token: one row of every
    registered model."""
    tenant = services.tenant_create(name="tenant-a")
    subnet = services.subnet_create(tenant=tenant, name="subnet-1",
                                    spec={"subnet": "10.1.0.0/24", "ips": ["10.1.0.10-10.1.0.99"]})
    pool = f.pool("pool-1", "10.1.0.0/24", ["10.1.0.10-10.1.0.13"], owner=tenant)
    gone = annotated("pool-1", "web-0")
    f.allocate(gone)
    f.release(gone, reason="cni-del", dead_sandbox_id="sandbox-web-0")
    f.allocate(annotated("pool-1", "web-1"))
    reserved = services.reservedip_create(tenant=tenant, name="reserved-1", spec={"ips": ["10.1.0.200"]})
    f.coordinator(f.coordinator_document(), owner=tenant)
    services.node_credential_issue(node_name="node-1")
    Group.objects.create(name="operators")
    AuthToken.objects.create(user=superuser)
    return {"tenant": tenant, "subnet": subnet, "pool": pool, "reserved": reserved}
