"""The agent end to end: CNI client -> unix socket -> agent -> real portal (live server) -> PostgreSQL, and back.

Given a portal with pools and a node token, and a standalone agent serving a unix socket, when a client speaks the
socket API exactly as the CNI executables do, then the addresses appear in (and leave) the database and every
failure comes back with the documented status and code.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from agent.config import AgentConfig
from cni.errors import AgentError
from spiderweb.engine.facts import TopController
from tests.agent.conftest import NODE, FixedFacts, client_for, free_port, pod_args

pytestmark = pytest.mark.django_db(transaction=True)

V4 = {"defaultIPv4IPPool": ["v4-pool"]}


def live_rows(pod_uid: str) -> list:
    from spiderweb.ipam.models import Allocation

    return list(Allocation.objects.filter(pod_uid=pod_uid).order_by("interface", "ip_version"))


def call_error(client, method: str, path: str, body=None) -> AgentError:
    with pytest.raises(AgentError) as caught:
        client.call(method, path, body)
    return caught.value


def test_add_allocates_from_the_pool_and_repeating_it_returns_the_same(agent):
    client = client_for(agent)
    args = pod_args("web-0", **V4)

    first = client.call("POST", "/v1/ipam/ip", args)
    again = client.call("POST", "/v1/ipam/ip", args)

    assert first == again
    assert first["ips"] == [{
        "version": 4, "address": "10.20.0.10/24", "nic": "eth0", "ipPool": "v4-pool", "vlan": 0,
        "gateway": "10.20.0.1", "enableGatewayDetection": False, "enableIPConflictDetection": False,
    }]
    assert first["routes"] == [{"ifName": "eth0", "dst": "0.0.0.0/0", "gw": "10.20.0.1"}]
    [row] = live_rows(args["podUID"])
    assert (row.address, row.interface, row.node, row.container_id) == ("10.20.0.10", "eth0", NODE, "c-web-0")


def test_a_second_nic_is_added_to_the_same_pod(agent):
    client = client_for(agent)
    client.call("POST", "/v1/ipam/ip", pod_args("web-0", **V4))
    both = client.call("POST", "/v1/ipam/ip", pod_args("web-0", if_name="net1", defaultIPv4IPPool=["tiny-pool"]))
    assert [(ip["nic"], ip["address"]) for ip in both["ips"]] == [("eth0", "10.20.0.10/24"), ("net1", "10.21.0.5/24")]


def test_del_releases_and_a_repeated_del_is_still_200(agent):
    client = client_for(agent)
    args = pod_args("web-0", **V4)
    client.call("POST", "/v1/ipam/ip", args)
    assert live_rows(args["podUID"])

    assert client.call("DELETE", "/v1/ipam/ip", pod_args("web-0")) == {}
    assert live_rows(args["podUID"]) == []
    assert client.call("DELETE", "/v1/ipam/ip", pod_args("web-0")) == {}


def test_del_for_an_older_incarnation_leaves_the_new_one_alone(agent):
    client = client_for(agent)
    client.call("POST", "/v1/ipam/ip", pod_args("web-0", uid="old", **V4))
    client.call("POST", "/v1/ipam/ip", pod_args("web-0", uid="new", **V4))  # same name, re-created

    client.call("DELETE", "/v1/ipam/ip", pod_args("web-0", uid="old"))

    assert [r.address for r in live_rows("new")] == ["10.20.0.11"]


def test_portal_down_makes_add_and_del_answer_503_so_the_runtime_retries(start_agent):
    agent = start_agent(portal_url=f"http://127.0.0.1:{free_port()}", portal_retries=2)
    client = client_for(agent)

    for method, body in (("DELETE", pod_args("web-0")), ("POST", pod_args("web-0", **V4))):
        error = call_error(client, method, "/v1/ipam/ip", body)
        assert (error.status, error.code) == (503, "unavailable")
        assert "unavailable" in error.message and "after 3 attempt(s)" in error.message


def test_kubernetes_unreachable_makes_add_and_del_answer_503(start_agent, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    client = client_for(start_agent(mode="kubernetes", kubeconfig=str(kubeconfig), kube_timeout=2))

    for method in ("POST", "DELETE"):
        error = call_error(client, method, "/v1/ipam/ip", pod_args("web-0", **V4))
        assert (error.status, error.code) == (503, "unavailable")
        assert "Kubernetes API unreachable (GET /api/v1/namespaces/team-a/pods/web-0)" in error.message


def test_a_broken_pool_annotation_is_a_400_naming_the_problem(start_agent):
    facts = FixedFacts(NODE, annotations={"web-0": {"ipam.spidernet.io/ippool": "{not json"}})
    client = client_for(start_agent(facts=facts))

    error = call_error(client, "POST", "/v1/ipam/ip", pod_args("web-0", **V4))

    assert (error.status, error.code) == (400, "invalid_input")
    assert "ipam.spidernet.io/ippool" in error.message


def test_an_exhausted_pool_is_a_409_ip_exhausted(agent):
    client = client_for(agent)
    client.call("POST", "/v1/ipam/ip", pod_args("a", defaultIPv4IPPool=["tiny-pool"]))

    error = call_error(client, "POST", "/v1/ipam/ip", pod_args("b", defaultIPv4IPPool=["tiny-pool"]))

    assert (error.status, error.code) == (409, "ip_exhausted")
    assert live_rows(pod_args("b")["podUID"]) == []


def test_concurrent_adds_get_distinct_addresses_then_a_clean_exhausted(start_agent):
    from concurrent.futures import ThreadPoolExecutor

    client = client_for(start_agent(max_active=4))

    def add(n: int):
        try:
            return client.call("POST", "/v1/ipam/ip", pod_args(f"p{n}", **V4))["ips"][0]["address"]
        except AgentError as exc:
            return exc.code

    with ThreadPoolExecutor(40) as pool:  # a burst wider than the listen backlog of the standard library (5)
        answers = list(pool.map(add, range(40)))

    addresses = [a for a in answers if "/" in a]
    assert sorted(addresses) == [f"10.20.0.{n}/24" for n in range(10, 20)]  # the pool's ten, each once
    assert sorted(a for a in answers if "/" not in a) == ["ip_exhausted"] * 30


def test_bad_requests_get_400_404_405_with_reasons(agent):
    client = client_for(agent)

    missing = call_error(client, "POST", "/v1/ipam/ip", {"podName": "x"})
    assert (missing.status, missing.code) == (400, "invalid_input")
    assert "containerID, ifName, netNamespace, podNamespace, podUID" in missing.message
    typed = call_error(client, "POST", "/v1/ipam/ip", pod_args("web-0", cleanGateway="yes"))
    assert (typed.status, typed.message) == (400, "cleanGateway must be true or false, got 'yes'")
    assert call_error(client, "GET", "/v1/nothing").status == 404
    wrong = call_error(client, "PUT", "/v1/ipam/ip")
    assert wrong.status == 405 and "DELETE, POST" in wrong.message


def test_standalone_mode_needs_the_pod_uid(agent):
    error = call_error(client_for(agent), "POST", "/v1/ipam/ip", pod_args("web-0", uid="", **V4))
    assert (error.status, error.code) == (400, "invalid_input")
    assert "K8S_POD_UID" in error.message


def test_workloadendpoint_shows_the_allocation_and_404_without_one(agent):
    client = client_for(agent)
    args = pod_args("web-0", **V4)
    client.call("POST", "/v1/ipam/ip", args)

    endpoint = client.call("GET", "/v1/workloadendpoint?podNamespace=team-a&podName=web-0")

    assert endpoint["podUID"] == args["podUID"] and endpoint["node"] == NODE
    assert endpoint["interfaces"][0]["ipv4"] == "10.20.0.10/24"
    assert call_error(client, "GET", "/v1/workloadendpoint?podNamespace=team-a&podName=nobody").status == 404
    assert call_error(client, "GET", "/v1/workloadendpoint?podName=web-0").status == 400


def test_cni_gc_releases_what_the_runtime_no_longer_has(agent):
    client = client_for(agent)
    keep, drop = pod_args("keep", network="macvlan", **V4), pod_args("drop", network="macvlan", **V4)
    other = pod_args("other", network="ipvlan", **V4)
    for args in (keep, drop, other):
        client.call("POST", "/v1/ipam/ip", args)
    valid = [{"containerID": "c-keep", "ifname": "eth0"}]

    answer = client.call("POST", "/v1/ipam/gc", {"network": "macvlan", "validAttachments": valid})

    assert answer == {"released": 1}
    assert live_rows(keep["podUID"]) and live_rows(drop["podUID"]) == []
    assert live_rows(other["podUID"])  # attached through another network: not this GC's business
    bad = call_error(client, "POST", "/v1/ipam/gc", {"network": "macvlan", "validAttachments": [{"ifname": "x"}]})
    assert (bad.status, bad.message) == (400, "validAttachments[0] needs containerID and ifname strings")
    unnamed = call_error(client, "POST", "/v1/ipam/gc", {"validAttachments": valid})
    assert (unnamed.status, unnamed.message) == (400, "IpamGCArgs is missing required field(s): network")


def test_batch_release_after_a_conflict(start_agent):
    owners = {"db-0": TopController(kind="StatefulSet", name="db", uid="s1", api_version="apps/v1")}
    client = client_for(start_agent(facts=FixedFacts(NODE, owners=owners)))
    web, db = pod_args("web-0", **V4), pod_args("db-0", **V4)
    client.call("POST", "/v1/ipam/ip", web)
    client.call("POST", "/v1/ipam/ip", db)
    batch = {k: web[k] for k in ("containerID", "podNamespace", "podName", "podUID")}

    assert client.call("DELETE", "/v1/ipam/ips", {**batch, "isReleaseConflictIPs": True}) == {}
    assert live_rows(web["podUID"]) == []

    stateful = {**{k: db[k] for k in ("containerID", "podNamespace", "podName", "podUID")},
                "isReleaseConflictIPs": True}
    error = call_error(client, "DELETE", "/v1/ipam/ips", stateful)
    assert (error.status, error.code) == (522, "forbid_stateful")
    assert live_rows(db["podUID"])


def test_batch_release_of_conflicting_ips_can_be_switched_off(start_agent):
    client = client_for(start_agent(release_conflict_ips=False))
    args = pod_args("web-0", **V4)
    client.call("POST", "/v1/ipam/ip", args)
    batch = {k: args[k] for k in ("containerID", "podNamespace", "podName", "podUID")}

    error = call_error(client, "DELETE", "/v1/ipam/ips", {**batch, "isReleaseConflictIPs": True})

    assert (error.status, error.code) == (521, "forbid_stateless")
    assert live_rows(args["podUID"])
    assert client.call("DELETE", "/v1/ipam/ips", batch) == {}  # a plain batch release is still allowed
    assert live_rows(args["podUID"]) == []


def test_coordinator_config_applies_the_default_route_nic_annotation(start_agent, portal):
    from tests.ipam import factories

    factories.coordinator(factories.coordinator_document(mode="underlay", service_cidr=["10.233.0.0/18"],
                                                         podDefaultRouteNIC="eth0"), owner=portal["tenant"])
    facts = FixedFacts(NODE, annotations={"web-0": {"ipam.spidernet.io/default-route-nic": "net1"}})
    client = client_for(start_agent(facts=facts))

    plain = client.call("GET", "/v1/coordinator/config")
    for_pod = client.call("GET", "/v1/coordinator/config",
                          {"podNamespace": "team-a", "podName": "web-0", "podUID": pod_args("web-0")["podUID"]})

    assert plain["mode"] == "underlay" and plain["serviceCIDR"] == ["10.233.0.0/18"]
    assert (plain["podDefaultRouteNIC"], for_pod["podDefaultRouteNIC"]) == ("eth0", "net1")


def test_a_not_ready_coordinator_refuses_coordinator_config_and_add_but_not_del(start_agent, portal):
    """Given the controller could not discover the cluster's CIDRs (phase NotReady), when a pod's coordinator asks,
    then the agent refuses with the reason (as Spiderpool's agent does), and a DEL still goes through."""
    from tests.ipam import factories

    document = factories.coordinator_document(status_phase="NotReady", service_cidr=())
    document["status"]["reason"] = "cannot tell the pod CIDRs: no kube-system/kubeadm-config ConfigMap"
    factories.coordinator(document, owner=portal["tenant"])
    client = client_for(start_agent(facts=FixedFacts(NODE)))

    refused = call_error(client, "GET", "/v1/coordinator/config")
    assert (refused.status, refused.code) == (409, "conflict")
    assert refused.message == ("SpiderCoordinator default is NotReady: cannot tell the pod CIDRs: no "
                               "kube-system/kubeadm-config ConfigMap")
    call = {"containerID": "c1", "netNamespace": "/var/run/netns/none", "ifName": "eth0", "podNamespace": "team-a",
            "podName": "web-0", "podUID": "u1", "cniVersion": "1.0.0", "config": {"type": "coordinator"}}
    assert call_error(client, "POST", "/v1/coordinator/add", {**call, "prevResult": {}}).message == refused.message
    assert client.call("POST", "/v1/coordinator/del", call) == {}  # the netns is gone: nothing to clean, success


def test_a_full_queue_answers_503_queue_is_full(start_agent):
    agent = start_agent(max_active=1, queue_size=0)
    client = client_for(agent)
    agent.admission.try_enter()  # the only slot is taken by "another request"
    try:
        error = call_error(client, "POST", "/v1/ipam/ip", pod_args("web-0", **V4))
        client.healthy()  # health checks are never queued
    finally:
        agent.admission.release()
    assert (error.status, error.code, error.message) == (503, "unavailable", "queue is full")
    assert client.call("POST", "/v1/ipam/ip", pod_args("web-0", **V4))["ips"]


def test_metrics_use_spiderpools_snake_case_names(agent):
    client = client_for(agent)
    client.call("POST", "/v1/ipam/ip", pod_args("web-0", **V4))
    call_error(client, "POST", "/v1/ipam/ip", pod_args("x", defaultIPv4IPPool=["no-such-pool"]))
    client.call("DELETE", "/v1/ipam/ip", pod_args("web-0"))

    text = urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics_port}/metrics", timeout=5).read().decode()

    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples["spiderpool_ipam_allocation_counts_total"]) == 2
    assert float(samples["spiderpool_ipam_allocation_failure_counts_total"]) == 1
    assert float(samples["spiderpool_ipam_release_counts_total"]) == 1
    assert float(samples['spiderpool_ipam_allocation_duration_seconds_bucket{le="15.0"}']) == 2
    for name in ("spiderpool_ipam_allocation_err_internal_counts_total",
                 "spiderpool_ipam_allocation_err_ip_used_out_counts_total",
                 "spiderpool_ipam_allocation_err_no_available_pool_counts_total",
                 "spiderpool_ipam_allocation_err_retries_exhausted_counts_total",
                 "spiderpool_ipam_allocation_update_ippool_conflict_counts_total",
                 "spiderpool_ipam_allocation_average_duration_seconds",
                 "spiderpool_ipam_allocation_max_duration_seconds",
                 "spiderpool_ipam_allocation_min_duration_seconds",
                 "spiderpool_ipam_allocation_latest_duration_seconds",
                 "spiderpool_ipam_allocation_average_limit_duration_seconds",
                 "spiderpool_ipam_allocation_limit_duration_seconds_count",
                 "spiderpool_ipam_release_failure_counts_total",
                 "spiderpool_ipam_release_err_internal_counts_total",
                 "spiderpool_ipam_release_err_retries_exhausted_counts_total",
                 "spiderpool_ipam_release_latest_duration_seconds",
                 "spiderpool_ipam_release_limit_duration_seconds_count"):
        assert name in samples, name
    assert float(samples["spiderpool_ipam_allocation_max_duration_seconds"]) >= float(
        samples["spiderpool_ipam_allocation_min_duration_seconds"]) > 0


def test_probes_answer_and_readiness_follows_the_socket(agent):
    def probe(path: str) -> int:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{agent.health_port}{path}", timeout=5).status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert [probe(f"/v1/runtime/{p}") for p in ("startup", "readiness", "liveness")] == [200, 200, 200]
    agent.api.serving = False  # draining: /v1/ipam/healthy answers 503
    assert (probe("/v1/runtime/readiness"), probe("/v1/runtime/startup")) == (500, 200)
    agent.api.serving = True
    assert probe("/v1/runtime/other") == 404


def test_the_socket_is_private_and_a_stale_one_is_replaced(agent, portal, short_dir):
    import os
    import socket
    import stat

    from agent.daemon import Agent

    assert stat.S_IMODE(os.stat(agent.config.socket_path).st_mode) == 0o600
    stale = short_dir / "stale.sock"
    left = socket.socket(socket.AF_UNIX)
    left.bind(str(stale))
    left.close()  # a socket file nobody listens on, as a crashed agent leaves it
    config = AgentConfig(node_name=NODE, portal_url=portal["url"], node_token=portal["token"], mode="standalone",
                         socket_path=str(stale), health_port=0, metrics_port=None, cni_bin_dir="")
    second = Agent(config)
    second.start()
    try:
        client_for(second).healthy()
        with pytest.raises(OSError, match="another process is serving"):
            Agent(config).start()
    finally:
        second.stop()
    assert not stale.exists()


def test_the_real_cni_executable_adds_and_deletes_through_the_agent(agent, tmp_path):
    """The packaged ``spiderpool`` plugin, run as a runtime runs it, against this agent and the real portal."""
    import os
    import subprocess

    from cni.package import build

    executable = {p.name: p for p in build(tmp_path / "bin")}["spiderpool"]
    uid = "0b5c5a3e-9f4e-4a53-8d0a-2f1f6f1c7a10"
    config = {"cniVersion": "1.1.0", "name": "macvlan", "type": "macvlan", "ipam": {
        "type": "spiderpool", "default_ipv4_ippool": ["v4-pool"], "log_file_path": str(tmp_path / "cni.log"),
        "ipam_unix_socket_path": agent.config.socket_path}}

    netns = tmp_path / "netns"  # must exist: the plugin refuses an ADD for a missing netns (code 3)
    netns.write_text("")

    def run(command: str, **extra) -> subprocess.CompletedProcess:
        env = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": "abc123",
               "CNI_NETNS": str(netns), "CNI_IFNAME": "eth0", "CNI_PATH": str(tmp_path / "bin"),
               "CNI_ARGS": f"K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=cni-pod;K8S_POD_UID={uid}"}
        done = subprocess.run([str(executable)], input=json.dumps({**config, **extra}), env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{command}: {done.stdout} {done.stderr}"
        return done

    added = run("ADD")
    assert json.loads(added.stdout)["ips"] == [{"address": "10.20.0.10/24", "gateway": "10.20.0.1"}]
    run("GC", **{"cni.dev/valid-attachments": [{"containerID": "abc123", "ifname": "eth0"}]})
    assert live_rows(uid)  # still a valid attachment of network "macvlan"
    run("DEL")
    assert live_rows(uid) == []
    run("ADD")
    run("GC", **{"cni.dev/valid-attachments": []})  # the runtime no longer has it
    assert live_rows(uid) == []
