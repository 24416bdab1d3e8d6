"""Export and re-import pools, subnets and reservations (CSV, JSON, YAML): rows go through the services, a row the
rules refuse is reported with the rule's message and nothing is written."""

import io

import pytest
import tablib
from django.urls import reverse
from import_export.forms import SelectableFieldsExportForm

from spiderweb.changelog.models import ObjectChange
from spiderweb.ipam import services
from spiderweb.ipam.models import IPPool, ReservedIP, Subnet
from spiderweb.ipam.resources import IPPoolResource, ReservedIPResource, SubnetResource
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db

SPEC = ("ip_version", "subnet", "ips", "exclude_ips", "gateway", "routes", "pod_affinity", "node_name", "labels")


def spec_of(pool):
    return {name: getattr(pool, name) for name in SPEC} | {"tenant": pool.tenant.name}


@pytest.fixture
def portable(world):
    """A pool with routes, an affinity and labels, and no allocations (so it can be deleted and re-imported)."""
    return services.ippool_create(tenant=world["tenant"], name="portable", spec={
        "subnet": "10.1.0.0/24", "ips": ["10.1.0.30-10.1.0.39"], "exclude_ips": ["10.1.0.35"],
        "routes": [{"dst": "10.7.0.0/16", "gw": "10.1.0.1"}],
        "pod_affinity": {"matchLabels": {"app": "web"}}, "node_name": ["node-1"]}, labels={"team": "net"})


@pytest.mark.parametrize("file_format", ["csv", "json", "yaml"])
def test_an_exported_pool_is_reimported_through_the_service(portable, file_format):
    # given the pool exported, then deleted
    before = spec_of(portable)
    text = IPPoolResource().export(queryset=IPPool.objects.filter(name="portable")).export(file_format)
    services.ippool_delete(pool=portable)
    # when the file is imported
    result = IPPoolResource().import_data(tablib.Dataset().load(text, format=file_format), dry_run=False)
    # then the pool is back with the same spec, created by the service (it is in the change log)
    assert not result.has_errors() and not result.has_validation_errors()
    again = IPPool.objects.get(name="portable")
    assert spec_of(again) == before
    assert ObjectChange.objects.filter(object_type="ipam.ippool", object_id=again.pk, action="create").exists()


def test_an_import_changes_an_existing_pool_through_the_update_service(portable):
    dataset = IPPoolResource().export(queryset=IPPool.objects.filter(name="portable"))
    dataset = tablib.Dataset().load(dataset.csv.replace("10.1.0.30-10.1.0.39", "10.1.0.30-10.1.0.45"), format="csv")
    result = IPPoolResource().import_data(dataset, dry_run=False)
    assert not result.has_validation_errors()
    portable.refresh_from_db()
    assert portable.ips == ["10.1.0.30-10.1.0.45"] and portable.generation == 2
    assert ObjectChange.objects.filter(object_type="ipam.ippool", object_id=portable.pk, action="update").exists()


def test_a_row_the_rules_refuse_is_reported_and_nothing_is_written(portable, world):
    # given two rows: a valid new pool and one outside its subnet
    dataset = tablib.Dataset(headers=["name", "tenant", "subnet", "ips"])
    dataset.append(["fine", "tenant-a", "10.1.0.0/24", '["10.1.0.60-10.1.0.61"]'])
    dataset.append(["broken", "tenant-a", "10.1.0.0/24", '["10.2.0.1"]'])
    # when imported
    result = IPPoolResource().import_data(dataset, dry_run=False)
    # then the second row is invalid with the rule's message, and the import wrote nothing at all
    assert result.has_validation_errors()
    invalid = result.invalid_rows[0]
    assert invalid.number == 2
    assert "10.2.0.1 is outside subnet 10.1.0.0/24." in str(invalid.error_dict)
    assert not IPPool.objects.filter(name__in=["fine", "broken"]).exists()


def test_an_import_cannot_move_a_pool_to_another_tenant(portable):
    services.tenant_create(name="tenant-b")
    dataset = IPPoolResource().export(queryset=IPPool.objects.filter(name="portable"))
    dataset = tablib.Dataset().load(dataset.csv.replace("tenant-a", "tenant-b"), format="csv")
    result = IPPoolResource().import_data(dataset, dry_run=False)
    assert "belongs to another tenant" in str(result.invalid_rows[0].error_dict)
    assert IPPool.objects.get(name="portable").tenant.name == "tenant-a"


def test_subnets_and_reservations_round_trip_too(world):
    subnets = SubnetResource().export(queryset=Subnet.objects.all()).export("yaml")
    reserved = ReservedIPResource().export(queryset=ReservedIP.objects.all()).export("csv")
    services.reservedip_delete(reserved=world["reserved"])
    assert not ReservedIPResource().import_data(tablib.Dataset().load(reserved, format="csv"),
                                                dry_run=False).has_validation_errors()
    assert ReservedIP.objects.get(name="reserved-1").ips == ["10.1.0.200"]
    unchanged = SubnetResource().import_data(tablib.Dataset().load(subnets, format="yaml"), dry_run=False)
    assert [row.import_type for row in unchanged.rows] == ["skip"]


def test_export_and_import_through_the_admin(admin_web, portable):
    # export: the pool list's Export page, CSV, every field
    fields = {SelectableFieldsExportForm.create_boolean_field_name(IPPoolResource, name): "on"
              for name in IPPoolResource().get_export_order()}
    exported = admin_web.post(reverse("admin:ipam_ippool_export"), {"format": "0", "resource": "0", **fields})
    assert exported.status_code == 200 and exported["Content-Type"].startswith("text/csv")
    text = exported.content.decode()
    assert "portable" in text and "10.1.0.30-10.1.0.39" in text
    services.ippool_delete(pool=portable)
    # import: upload, confirm, process
    upload = io.BytesIO(text.encode())
    upload.name = "pools.csv"
    preview = admin_web.post(reverse("admin:ipam_ippool_import"), {"format": "0", "resource": "0",
                                                                    "import_file": upload})
    assert preview.status_code == 200 and not IPPool.objects.filter(name="portable").exists()  # a dry run
    confirm = preview.context["confirm_form"].initial
    done = admin_web.post(reverse("admin:ipam_ippool_process_import"), confirm)
    assert done.status_code == 302
    assert IPPool.objects.get(name="portable").routes == [{"dst": "10.7.0.0/16", "gw": "10.1.0.1"}]


def test_import_needs_the_add_permission(client, django_user_model, world):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_ippool"))
    client.force_login(user)
    assert client.get(reverse("admin:ipam_ippool_import")).status_code == 403
    assert client.get(reverse("admin:ipam_ippool_export")).status_code == 200


def test_pools_with_allocations_export_their_spec_only(world):
    text = IPPoolResource().export(queryset=IPPool.objects.filter(name="pool-1")).export("csv")
    header = text.splitlines()[0].split(",")
    assert header == ["name", "tenant", "ip_version", "subnet", "ips", "exclude_ips", "gateway", "routes",
                      "pod_affinity", "namespace_affinity", "namespace_name", "node_affinity", "node_name",
                      "multus_name", "default", "disable", "labels"]
    assert f.pool_get("pool-1") is not None
