"""Allocation service (spec §3, §5.1, §6) on PostgreSQL: precedence, affinity, backups, families, NICs, reuse.

Transactional tests: an allocation outside any transaction of the caller's is what the portal serves, and on
PostgreSQL it takes the one-call path for a new pod (`allocation._allocate_in_one_call`) with the usual
transaction as its fallback, so every test here runs both where they apply."""

import json

import pytest
from django.db import connection

from spiderweb.engine.errors import Conflict, Exhausted, InvalidInput, NoPoolAvailable, NotFound
from spiderweb.engine.selection import CniDefaults
from spiderweb.ipam import allocation, services
from spiderweb.ipam.models import AddressHistory, Allocation, ClusterSettings, Endpoint, IPPool
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db(transaction=True)
POOL = "ipam.spidernet.io/ippool"
POOLS = "ipam.spidernet.io/ippools"


def ann(**families):
    return {POOL: json.dumps(families)}


def addresses(result, nic=None):
    return [ip["address"] for ip in result["ips"] if nic is None or ip["nic"] == nic]


def test_lowest_address_with_gateway_and_default_route():
    f.pool("p1", "10.0.0.0/24", ["10.0.0.10-10.0.0.19"], gateway="10.0.0.1")
    result = f.allocate(f.facts(annotations=ann(ipv4=["p1"])))
    assert addresses(result) == ["10.0.0.10/24"]
    assert result["ips"][0]["ipPool"] == "p1" and result["ips"][0]["gateway"] == "10.0.0.1"
    assert result["routes"] == [{"ifName": "eth0", "dst": "0.0.0.0/0", "gw": "10.0.0.1"}]


def test_pool_routes_and_annotation_routes_and_cleangateway():
    f.pool("p1", "10.0.0.0/24", ["10.0.0.10-10.0.0.19"], gateway="10.0.0.1",
           routes=[{"dst": "10.9.0.0/16", "gw": "10.0.0.254"}])
    annotations = {
        POOLS: json.dumps([{"interface": "eth0", "ipv4": ["p1"], "cleangateway": True}]),
        "ipam.spidernet.io/routes": json.dumps([{"dst": "172.16.0.0/16", "gw": "10.0.0.253"},
                                                {"dst": "172.17.0.0/16", "gw": "192.168.9.1"}]),
    }
    result = f.allocate(f.facts(annotations=annotations))
    assert result["routes"] == [
        {"ifName": "eth0", "dst": "10.9.0.0/16", "gw": "10.0.0.254"},
        {"ifName": "eth0", "dst": "172.16.0.0/16", "gw": "10.0.0.253"},
    ]  # no default route (cleangateway); the route whose gateway is on no NIC is dropped


def test_precedence_ippools_over_ippool_over_namespace_over_cni_over_cluster_default():
    for i, name in enumerate(["a-ippools", "b-ippool", "c-ns", "d-cni", "e-cluster"]):
        f.pool(name, f"10.{i}.0.0/24", [f"10.{i}.0.10-10.{i}.0.20"], default=(name == "e-cluster"))
    ns = {"ipam.spidernet.io/default-ipv4-ippool": '["c-ns"]'}
    full = {POOLS: json.dumps([{"interface": "eth0", "ipv4": ["a-ippools"]}]), **ann(ipv4=["b-ippool"])}
    cni = CniDefaults(v4=("d-cni",))
    cases = [
        (full, ns, cni, "a-ippools"),
        (ann(ipv4=["b-ippool"]), ns, cni, "b-ippool"),
        ({}, ns, cni, "c-ns"),
        ({}, {}, cni, "d-cni"),
        ({}, {}, CniDefaults(), "e-cluster"),
    ]
    for i, (annotations, ns_annotations, defaults, expected) in enumerate(cases):
        pod = f.facts(name=f"pod-{i}", annotations=annotations, namespace_annotations=ns_annotations)
        result = f.allocate(pod, cni=defaults)
        assert result["ips"][0]["ipPool"] == expected


def test_no_rule_at_all_is_a_clear_error():
    with pytest.raises(NoPoolAvailable, match="no pool selection rules"):
        f.allocate(f.facts())


def test_affinity_filters_explain_every_rejection():
    f.pool("by-node", "10.1.0.0/24", ["10.1.0.10"], node_name=["node-9"])
    f.pool("by-ns", "10.2.0.0/24", ["10.2.0.10"], namespace_name=["other"])
    f.pool("by-pod", "10.3.0.0/24", ["10.3.0.10"], pod_affinity={"matchLabels": {"app": "db"}})
    f.pool("off", "10.4.0.0/24", ["10.4.0.10"], disable=True)
    f.pool("v6", "fd00::/64", ["fd00::10"])
    pod = f.facts(annotations=ann(ipv4=["by-node", "by-ns", "by-pod", "off"]), labels={"app": "web"})
    with pytest.raises(NoPoolAvailable) as err:
        f.allocate(pod)
    reasons = {c["pool"]: c["reason"] for c in err.value.details["candidates"]}
    assert set(reasons) == {"by-node", "by-ns", "by-pod", "off"}
    assert "node-1" in reasons["by-node"] and "default" in reasons["by-ns"]
    assert "podAffinity" in reasons["by-pod"] and "disabled" in reasons["off"]
    assert Allocation.objects.count() == 0 and Endpoint.objects.count() == 0


def test_matching_affinities_allow_allocation():
    f.pool("match", "10.1.0.0/24", ["10.1.0.10"], node_affinity={"matchLabels": {"zone": "a"}},
           namespace_affinity={"matchExpressions": [{"key": "team", "operator": "In", "values": ["x"]}]},
           pod_affinity={"matchLabels": {"app": "web"}})
    pod = f.facts(annotations=ann(ipv4=["match"]), labels={"app": "web"}, node_labels={"zone": "a"},
                  namespace_labels={"team": "x"})
    assert addresses(f.allocate(pod)) == ["10.1.0.10/24"]


def test_unknown_pool_and_broken_annotation_are_hard_errors():
    with pytest.raises(NotFound):
        f.allocate(f.facts(annotations=ann(ipv4=["nope"])))
    with pytest.raises(InvalidInput):
        f.allocate(f.facts(annotations={POOL: "{not json"}))


def test_backup_pool_in_written_order_when_first_is_exhausted():
    f.pool("small", "10.1.0.0/24", ["10.1.0.10"])
    f.pool("backup-b", "10.2.0.0/24", ["10.2.0.10-10.2.0.11"])
    f.pool("backup-a", "10.3.0.0/24", ["10.3.0.10-10.3.0.11"])
    wanted = ann(ipv4=["small", "backup-b", "backup-a"])
    pools = [f.allocate(f.facts(name=f"p{i}", annotations=wanted))["ips"][0]["ipPool"] for i in range(5)]
    assert pools == ["small", "backup-b", "backup-b", "backup-a", "backup-a"]
    with pytest.raises(Exhausted) as err:
        f.allocate(f.facts(name="p9", annotations=wanted))
    assert [c["pool"] for c in err.value.details["candidates"]] == ["small", "backup-b", "backup-a"]


def test_dual_stack_allocates_both_or_nothing():
    f.pool("v4", "10.1.0.0/24", ["10.1.0.10"])
    f.pool("v6", "fd00::/64", ["fd00::10-fd00::11"], gateway="fd00::1")
    result = f.allocate(f.facts(name="a", annotations=ann(ipv4=["v4"], ipv6=["v6"])))
    assert addresses(result) == ["10.1.0.10/24", "fd00::10/64"]
    assert {"ifName": "eth0", "dst": "::/0", "gw": "fd00::1"} in result["routes"]
    # v4 is now full: the second pod must not keep a lonely v6 address
    with pytest.raises(Exhausted):
        f.allocate(f.facts(name="b", annotations=ann(ipv4=["v4"], ipv6=["v6"])))
    assert Allocation.objects.filter(ip_version=6).count() == 1


def test_disabled_family_is_dropped():
    f.pool("v4", "10.1.0.0/24", ["10.1.0.10"])
    f.pool("v6", "fd00::/64", ["fd00::10"])
    ClusterSettings.objects.filter(pk=1).update(enable_ipv6=False)
    ClusterSettings.invalidate_cache()
    result = f.allocate(f.facts(annotations=ann(ipv4=["v4"], ipv6=["v6"])))
    assert addresses(result) == ["10.1.0.10/24"]


def test_first_add_allocates_every_nic_of_ippools_and_later_adds_reuse_it():
    f.pool("eth", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    f.pool("net", "10.2.0.0/24", ["10.2.0.10-10.2.0.19"])
    pod = f.facts(annotations={POOLS: json.dumps([{"interface": "eth0", "ipv4": ["eth"]},
                                                 {"interface": "net1", "ipv4": ["net"]}])})
    first = f.allocate(pod, if_name="eth0")
    assert addresses(first, "eth0") == ["10.1.0.10/24"] and addresses(first, "net1") == ["10.2.0.10/24"]
    second = f.allocate(pod, if_name="net1")
    assert second == first and Allocation.objects.count() == 2


def test_ippool_annotation_appends_one_nic_per_add():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    pod = f.facts(annotations=ann(ipv4=["p"]))
    f.allocate(pod, if_name="eth0")
    result = f.allocate(pod, if_name="net1")
    assert addresses(result, "eth0") == ["10.1.0.10/24"] and addresses(result, "net1") == ["10.1.0.11/24"]


def test_add_is_idempotent_per_pod_and_interface():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    pod = f.facts(annotations=ann(ipv4=["p"]))
    assert f.allocate(pod) == f.allocate(pod)
    assert Allocation.objects.count() == 1


def test_reserved_addresses_are_never_handed_out():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10-10.1.0.13"])
    services.reservedip_create(tenant=f.tenant(), name="r", spec={"ips": ["10.1.0.10-10.1.0.11"]})
    got = [addresses(f.allocate(f.facts(name=f"p{i}", annotations=ann(ipv4=["p"]))))[0] for i in range(2)]
    assert got == ["10.1.0.12/24", "10.1.0.13/24"]
    with pytest.raises(Exhausted):
        f.allocate(f.facts(name="p9", annotations=ann(ipv4=["p"])))


def test_release_is_idempotent_uid_guarded_and_records_history():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    pod = f.facts(annotations=ann(ipv4=["p"]))
    f.allocate(pod)
    assert allocation.ippool_release(namespace="default", name=pod.name, pod_uid="someone-else", reason="x") == []
    assert Allocation.objects.count() == 1
    assert f.release(pod, reason="cni-del") == ["10.1.0.10"]
    assert f.release(pod) == []
    assert Allocation.objects.count() == 0 and Endpoint.objects.count() == 0
    history = AddressHistory.objects.get(address="10.1.0.10")
    assert history.pod_uid == pod.uid and history.released_at is not None and history.release_reason == "cni-del"


def test_a_sandbox_whose_del_came_first_is_refused_and_a_new_sandbox_of_the_pod_is_not():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    pod = f.facts(annotations=ann(ipv4=["p"]))
    # Given a DEL that overtook the sandbox's ADD: nothing to release yet
    assert f.release(pod, dead_sandbox_id="sandbox-1") == []
    # When the ADD of that sandbox arrives, it is refused and takes nothing
    with pytest.raises(Conflict, match="sandbox sandbox-1 of pod default/pod-0 .* was already deleted"):
        f.allocate(pod, container_id="sandbox-1")
    assert Allocation.objects.count() == 0 and Endpoint.objects.count() == 0
    # while kubelet's new sandbox of the same pod gets an address
    assert addresses(f.allocate(pod, container_id="sandbox-2")) == ["10.1.0.10/24"]


def test_a_nic_added_after_its_pods_del_is_refused():
    f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    f.pool("p2", "10.2.0.0/24", ["10.2.0.10-10.2.0.19"])
    pod = f.facts()
    f.allocate(pod, container_id="sandbox-1", cni=CniDefaults(v4=("p1",)))
    # Given the pod's DEL released eth0 before the ADD of net1 (Multus: one ADD per NIC) reached the portal
    assert f.release(pod, dead_sandbox_id="sandbox-1") == ["10.1.0.10"]
    # Then that late ADD is refused and holds nothing
    with pytest.raises(Conflict, match="already deleted"):
        f.allocate(pod, if_name="net1", container_id="sandbox-1", cni=CniDefaults(v4=("p2",)))
    assert Allocation.objects.count() == 0 and Endpoint.objects.count() == 0


def test_pod_tombstones_older_than_an_hour_are_pruned_by_a_beat_task():
    from datetime import timedelta

    from django.utils import timezone

    from spiderweb.ipam.models import PodTombstone
    from spiderweb.ipam.tombstones import pod_tombstone_prune
    from workers.celery import app
    from workers.tasks import prune_pod_tombstones_task

    f.release(f.facts(name="old"), dead_sandbox_id="sandbox-old")
    f.release(f.facts(name="new"), dead_sandbox_id="sandbox-new")
    PodTombstone.objects.filter(container_id="sandbox-old").update(created_at=timezone.now() - timedelta(hours=2))
    assert pod_tombstone_prune(older_than=timedelta(hours=3)) == 0
    assert prune_pod_tombstones_task() == 1  # a task object called directly runs in this process
    assert list(PodTombstone.objects.values_list("container_id", flat=True)) == ["sandbox-new"]
    assert app.conf.beat_schedule["prune-pod-tombstones"]["task"] == prune_pod_tombstones_task.name


def test_released_addresses_are_reused_least_recently_released_first():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10-10.1.0.13"])
    pods = [f.facts(name=f"p{i}", annotations=ann(ipv4=["p"])) for i in range(4)]
    for pod in pods:
        f.allocate(pod)
    f.release(pods[2])  # 10.1.0.12 first
    f.release(pods[0])  # then 10.1.0.10
    got = [addresses(f.allocate(f.facts(name=f"n{i}", annotations=ann(ipv4=["p"]))))[0] for i in range(2)]
    assert got == ["10.1.0.12/24", "10.1.0.10/24"]


def test_never_used_addresses_come_before_released_ones():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10-10.1.0.12"])
    first = f.facts(name="a", annotations=ann(ipv4=["p"]))
    f.allocate(first)
    f.release(first)
    got = addresses(f.allocate(f.facts(name="b", annotations=ann(ipv4=["p"]))))
    assert got == ["10.1.0.11/24"]


def test_statefulset_pod_gets_its_address_back_by_name():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    f.allocate(f.facts(name="warmup", annotations=ann(ipv4=["p"])))
    old = f.facts(name="db-0", owner_kind="StatefulSet", owner_name="db", annotations=ann(ipv4=["p"]))
    before = addresses(f.allocate(old))
    new = f.facts(name="db-0", owner_kind="StatefulSet", owner_name="db", annotations=ann(ipv4=["p"]), node="node-2")
    # On another node the re-creation is confirmed with the API server (issue 10, Medium 4)
    api_server = {"metadata": {"uid": new.uid}, "spec": {"nodeName": "node-2"}}
    after = addresses(f.allocate(new, pod_reader=lambda namespace, name: api_server))
    assert before == after == ["10.1.0.11/24"]
    row = Allocation.objects.get(address="10.1.0.11")
    assert row.pod_uid == new.uid and row.node == "node-2"
    assert Endpoint.objects.get(name="db-0").uid == new.uid


def test_statefulset_pod_moves_when_its_pool_annotation_changed():
    f.pool("old", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    f.pool("new", "10.2.0.0/24", ["10.2.0.10-10.2.0.19"])
    f.allocate(f.facts(name="db-0", owner_kind="StatefulSet", owner_name="db", annotations=ann(ipv4=["old"])))
    moved = f.facts(name="db-0", owner_kind="StatefulSet", owner_name="db", annotations=ann(ipv4=["new"]))
    assert addresses(f.allocate(moved)) == ["10.2.0.10/24"]
    assert not Allocation.objects.filter(pool__name="old").exists()


def test_stateless_pod_recreated_with_same_name_gets_fresh_address_and_old_is_released():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])
    old = f.facts(name="bare", annotations=ann(ipv4=["p"]))
    f.allocate(old)
    new = f.facts(name="bare", annotations=ann(ipv4=["p"]))
    assert addresses(f.allocate(new)) == ["10.1.0.11/24"]
    assert list(Allocation.objects.values_list("pod_uid", flat=True)) == [new.uid]


def test_dead_pod_is_refused():
    f.pool("p", "10.1.0.0/24", ["10.1.0.10"])
    pod = f.facts(annotations=ann(ipv4=["p"]))
    dead = type(pod)(**{**pod.__dict__, "alive": False})
    with pytest.raises(InvalidInput, match="dead Pod"):
        f.allocate(dead)


def test_wildcards_and_stable_order_among_equal_specificity():
    for name in ["web-b", "web-a", "web-c"]:
        i = ord(name[-1]) - ord("a")
        f.pool(name, f"10.{i}.0.0/24", [f"10.{i}.0.10"])
    pool = f.allocate(f.facts(annotations=ann(ipv4=["web-*"])))["ips"][0]["ipPool"]
    assert pool == "web-a"


def test_ipv6_pool_of_a_whole_slash_64_works():
    f.pool("big", "fd00:1::/64", ["fd00:1::1-fd00:1::ffff:ffff:ffff:ffff"])
    got = [addresses(f.allocate(f.facts(name=f"p{i}", annotations=ann(ipv6=["big"]))))[0] for i in range(3)]
    assert got == ["fd00:1::1/64", "fd00:1::2/64", "fd00:1::3/64"]


def test_pool_edit_that_frees_addresses_below_the_scan_hint_is_used():
    f.pool("p", "10.1.0.0/24", ["10.1.0.20-10.1.0.21"])
    f.allocate(f.facts(name="a", annotations=ann(ipv4=["p"])))
    pool = services.ippool_update(pool=f.pool_get("p"), spec={"ips": ["10.1.0.5", "10.1.0.20-10.1.0.21"]})
    assert pool.ips == ["10.1.0.5", "10.1.0.20-10.1.0.21"]
    got = addresses(f.allocate(f.facts(name="b", annotations=ann(ipv4=["p"]))))
    assert got == ["10.1.0.5/24"]


def test_explain_reports_the_serving_pool_and_rolls_back():
    f.pool("busy", "10.1.0.0/24", ["10.1.0.10"], node_name=["elsewhere"])
    f.pool("ok", "10.2.0.0/24", ["10.2.0.10"])
    pod = f.facts(annotations=ann(ipv4=["busy", "ok"]))
    result = allocation.ippool_explain(request=allocation.AllocateRequest(facts=pod, if_name="eth0"))
    assert result["ok"] and result["response"]["ips"][0]["ipPool"] == "ok"
    assert result["nics"][0]["rejected"][0]["pool"] == "busy"
    assert Allocation.objects.count() == 0 and Endpoint.objects.count() == 0


def _statements(action, monkeypatch) -> list[str]:
    """What `action` sends, one entry per round trip: a Django query or a `prepared.run` statement."""
    from django.db import connection

    from spiderweb.ipam import prepared

    sent: list[str] = []

    def record(execute, sql, params, many, context):
        sent.append(sql)
        return execute(sql, params, many, context)

    def record_prepared(sql, params, run=prepared.run):
        sent.append(sql)
        return run(sql, params)

    with monkeypatch.context() as patched, connection.execute_wrapper(record):
        patched.setattr(prepared, "run", record_prepared)
        action()
    return sent


def test_a_new_pods_dual_stack_allocation_is_one_round_trip_on_postgresql(monkeypatch):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-call path is PostgreSQL's (SQLite keeps the locked path)")
    f.pool("v4", "10.0.0.0/24", ["10.0.0.10-10.0.0.19"])
    f.pool("v6", "fd00::/64", ["fd00::10-fd00::19"])
    pod = f.facts(annotations=ann(ipv4=["v4"], ipv6=["v6"]))
    allocation.ippool_allocate(request=allocation.AllocateRequest(facts=f.facts("warm-up", annotations=ann(
        ipv4=["v4"], ipv6=["v6"])), if_name="eth0"))  # the pool catalog and cluster settings cached, as in a portal
    result = {}
    sent = _statements(lambda: result.update(f.allocate(pod, container_id="sandbox-1")), monkeypatch)
    assert addresses(result) == ["10.0.0.11/24", "fd00::11/64"]
    assert sent == [allocation._ALLOCATE_SQL]
    # and what it wrote is what the usual path writes: the rows, the endpoint, the pools' scan hints
    rows = Allocation.objects.filter(pod_uid=pod.uid).order_by("ip_version")
    assert [(r.address, r.address_key, r.container_id, r.endpoint.name) for r in rows] == [
        ("10.0.0.11", "0a00000b", "sandbox-1", pod.name),
        ("fd00::11", "fd000000000000000000000000000011", "sandbox-1", pod.name)]
    assert Endpoint.objects.get(name=pod.name).uid == pod.uid
    # (each hint just past the address taken: everything below it is used)
    assert sorted(IPPool.objects.values_list("name", "scan_from")) == [
        ("v4", "0a00000c"), ("v6", "fd000000000000000000000000000012")]
    # When the same ADD comes again (a retry), the endpoint exists: the usual path answers, with the same addresses
    again = {}
    sent = _statements(lambda: again.update(f.allocate(pod, container_id="sandbox-1")), monkeypatch)
    assert addresses(again) == addresses(result) and len(sent) > 1 and sent[0] == allocation._ALLOCATE_SQL


def test_the_one_call_path_answers_and_writes_what_the_usual_transaction_does(monkeypatch):
    from django.forms.models import model_to_dict

    if connection.vendor != "postgresql":
        pytest.skip("the one-call path is PostgreSQL's")
    # Given dual-stack pools with gateways and routes, and a pod with two NICs, route annotations and cleangateway
    f.pool("v4", "10.0.0.0/24", ["10.0.0.10-10.0.0.99"], gateway="10.0.0.1",
           routes=[{"dst": "10.9.0.0/16", "gw": "10.0.0.254"}])
    f.pool("v6", "fd00::/64", ["fd00::10-fd00::99"], gateway="fd00::1")
    f.pool("net1", "10.1.0.0/24", ["10.1.0.10-10.1.0.99"], gateway="10.1.0.1")
    annotations = {
        POOLS: json.dumps([{"interface": "eth0", "ipv4": ["v4"], "ipv6": ["v6"]},
                           {"interface": "net1", "ipv4": ["net1"], "cleangateway": True}]),
        "ipam.spidernet.io/routes": json.dumps([{"dst": "172.16.0.0/16", "gw": "10.0.0.253"}]),
    }

    def allocated(name: str) -> tuple[dict, list[dict]]:
        pod, response = f.facts(name, annotations=annotations), {}
        sent = _statements(lambda: response.update(f.allocate(pod, container_id=f"sandbox-{name}",
                                                               network="macvlan-conf")), monkeypatch)
        assert (sent == [allocation._ALLOCATE_SQL]) is (name == "one-call")
        rows = [model_to_dict(row, exclude=["id", "endpoint", "address", "address_key", "pod_uid", "container_id"])
                for row in Allocation.objects.filter(pod_uid=pod.uid).order_by("interface", "ip_version")]
        for entry in response["ips"]:
            entry.pop("address")
        return response, rows

    allocated("warm-up")  # the pool catalog and cluster settings cached, as in a portal
    # When one pod is served by the one-call path (one statement) and the next by the usual transaction
    by_one_call = allocated("one-call")
    monkeypatch.setattr(allocation, "_one_call_possible", lambda request: False)
    by_usual = allocated("usual")
    # Then both get the same answer (but the addresses) and the same rows (but address, pod and times)
    assert by_one_call[0] == by_usual[0]
    for row in by_one_call[1] + by_usual[1]:
        assert row.pop("bound_at")
    assert by_one_call[1] == by_usual[1]
    assert [r["network"] for r in by_usual[1]] == ["macvlan-conf"] * 3


def test_the_scan_hint_stops_at_the_end_of_a_range_and_the_pool_is_then_exhausted():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-call path is PostgreSQL's")
    f.pool("tail", "10.0.0.0/24", ["10.0.0.10-10.0.0.11"])
    f.allocate(f.facts("a", annotations=ann(ipv4=["tail"])))
    assert IPPool.objects.get(name="tail").scan_from == "0a00000b"  # past 10.0.0.10
    # When the range's last address is taken, the hint stays on it (the next key is outside every range)
    assert addresses(f.allocate(f.facts("b", annotations=ann(ipv4=["tail"])))) == ["10.0.0.11/24"]
    assert IPPool.objects.get(name="tail").scan_from == "0a00000b"
    # and a third pod finds the pool exhausted, with nothing written
    with pytest.raises(Exhausted):
        f.allocate(f.facts("c", annotations=ann(ipv4=["tail"])))
    assert Allocation.objects.count() == 2 and Endpoint.objects.count() == 2


def test_a_new_reservation_is_learned_by_the_one_call_path_and_never_handed_out(monkeypatch):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-call path is PostgreSQL's")
    f.pool("v4", "10.0.0.0/24", ["10.0.0.10-10.0.0.19"])
    f.allocate(f.facts("warm-up", annotations=ann(ipv4=["v4"])))  # 10.0.0.10, reservations seen: none
    # Given a reservation of the next address made after this process last saw the reservations
    services.reservedip_create(tenant=f.tenant(), name="keep", spec={"ipVersion": 4, "ips": ["10.0.0.11"]})
    # When a new pod allocates
    result = {}
    sent = _statements(lambda: result.update(f.allocate(f.facts(annotations=ann(ipv4=["v4"])))), monkeypatch)
    # Then the call is refused once, returns the reservations, and the second call skips the reserved address
    assert addresses(result) == ["10.0.0.12/24"]
    assert sent == [allocation._ALLOCATE_SQL, allocation._ALLOCATE_SQL]


def test_a_call_that_finds_every_address_near_the_hint_held_falls_back_to_the_usual_path_and_moves_on(monkeypatch):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("claims are PostgreSQL's")
    import psycopg

    f.pool("p", "10.0.0.0/16", ["10.0.0.1-10.0.1.200"])
    settings = connection.settings_dict
    other = psycopg.connect(host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"],
                            password=settings["PASSWORD"], dbname=settings["NAME"], autocommit=True)
    try:
        # Given another allocator holding the claims of the first SCAN_BATCH never-used addresses
        for number in range(1, allocation.SCAN_BATCH + 1):
            other.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [f"4/0a00{number:04x}"])
        # When a new pod allocates, the call gives up without writing anything, and the usual path walks on
        result = {}
        sent = _statements(lambda: result.update(f.allocate(f.facts(annotations=ann(ipv4=["p"])),
                                                            container_id="sandbox-1")), monkeypatch)
        assert allocation._ALLOCATE_SQL in sent and sent[-1] != allocation._ALLOCATE_SQL
        assert addresses(result) == [f"10.0.1.{allocation.SCAN_BATCH - 255}/16"]
        assert Endpoint.objects.count() == 1 and Allocation.objects.count() == 1
    finally:
        other.close()


def test_planning_builds_each_pools_view_once_per_catalog_load_not_per_allocation(monkeypatch):
    # Given twenty pools, and a catalog that stays cached for the whole test
    monkeypatch.setattr(allocation, "POOL_CATALOG_TTL", 3600.0)
    names = [f"idx-{i}" for i in range(20)]
    for i, name in enumerate(names):
        f.pool(name, f"10.90.{i}.0/24", [f"10.90.{i}.10-10.90.{i}.20"])
    built = []
    real_view = allocation.pool_view
    monkeypatch.setattr(allocation, "pool_view", lambda pool: built.append(pool.name) or real_view(pool))
    # When three pods get addresses from the first one
    for n in range(3):
        f.allocate(f.facts(f"idx-pod-{n}", annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["idx-0"]})}))
    # Then every pool's view was built once: an allocation's planning does not grow with the number of pools
    assert sorted(built) == sorted(names)
    assert Allocation.objects.filter(pool__name="idx-0").count() == 3


def _catalog_expired(state: dict) -> dict[str, object]:
    """Put back a catalog read earlier, as if it had just expired (changes made since came from elsewhere)."""
    allocation._pool_catalog_cache.clear()
    allocation._pool_catalog_cache.update(state, at=-1e9)
    pools, cached = allocation._pool_catalog()
    assert cached is False
    return pools


def test_a_catalog_refresh_reads_again_only_the_pools_that_changed():
    if connection.vendor != "postgresql":
        pytest.skip("row versions (xmin) are PostgreSQL's; SQLite reads the whole catalog each time")
    # Given three pools in the catalog
    for i, name in enumerate(("cat-a", "cat-b", "cat-gone")):
        f.pool(name, f"10.91.{i}.0/24", [f"10.91.{i}.10-10.91.{i}.20"])
    first, _ = allocation._pool_catalog()
    state = dict(allocation._pool_catalog_cache)
    # When, elsewhere, one pool changes, one is deleted and one is created
    services.ippool_update(pool=f.pool_get("cat-b"), spec={"node_name": ["node-9"]})
    services.ippool_delete(pool=f.pool_get("cat-gone"))
    f.pool("cat-new", "10.91.3.0/24", ["10.91.3.10-10.91.3.20"])
    # Then the refresh has the change, the deletion and the new pool, and kept the unchanged pool's row as read
    refreshed = _catalog_expired(state)
    assert sorted(refreshed) == ["cat-a", "cat-b", "cat-new"]
    assert refreshed["cat-a"] is first["cat-a"]
    assert refreshed["cat-b"].node_name == ["node-9"] and refreshed["cat-b"].generation == 2
    # And a subnet's change reads every pool again (a pool carries its subnet)
    state = dict(allocation._pool_catalog_cache)
    subnet = services.subnet_create(tenant=f.pool_get("cat-a").tenant, name="cat-subnet",
                                    spec={"subnet": "10.92.0.0/24", "ips": ["10.92.0.10-10.92.0.20"]})
    assert subnet.pk
    assert _catalog_expired(state)["cat-a"] is not refreshed["cat-a"]
