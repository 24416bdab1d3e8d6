"""`make run`: its demo data (pools with live allocations and address history, loaded once however often it runs)
and where it listens."""

from django.core.management import call_command

from spiderweb.ipam.models import AddressHistory, Allocation, Endpoint


def test_demo_has_pods_with_addresses_and_history_and_loads_once(transactional_db, capsys):
    # When the demo is loaded twice (every `make run` loads it)
    call_command("load_demo")
    call_command("load_demo")
    # Then the live pods hold one IPv4 and one IPv6 address each, the StatefulSet's from its namespace's pool
    assert Endpoint.objects.count() == 8 - 3 + 4 - 1 + 3
    assert Allocation.objects.count() == 2 * 11
    assert set(Allocation.objects.filter(endpoint__namespace="database", ip_version=4)
               .values_list("pool__name", flat=True)) == {"demo-v4-db"}
    assert not Allocation.objects.filter(address__in=[f"172.18.40.{i}" for i in range(1, 10)]).exists()
    # And the four deleted pods left their addresses in the history
    released = AddressHistory.objects.exclude(released_at=None)
    assert released.values("pod_name").distinct().count() == 4
    assert capsys.readouterr().out.count("11 pods holding addresses") == 2


def test_make_run_binds_where_spiderweb_bind_says(monkeypatch):
    from spiderweb.ipam.management.commands.run_embedded import Command

    assert Command().create_parser("manage.py", "run_embedded").parse_args([]).bind == "127.0.0.1:8000"
    monkeypatch.setenv("SPIDERWEB_BIND", "0.0.0.0:8080")
    assert Command().create_parser("manage.py", "run_embedded").parse_args([]).bind == "0.0.0.0:8080"
