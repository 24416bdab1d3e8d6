"""The spiderpool IPAM executable against the agent contract (fake agent, packaged executable, runtime env)."""

from __future__ import annotations

import json

import pytest

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
POD_UID = "1f0c4a8e-2b7d-4c55-9a8e-0d5b7c1e2f3a"

EXPECTED_ETH0_1X = {
    "ips": [
        {"address": "10.6.0.21/16", "gateway": "10.6.0.1"},
        {"address": "fd00:6::21/64", "gateway": "fd00:6::1"},
    ],
    "routes": [{"dst": "10.96.0.0/12", "gw": "10.6.0.254"}],
    "dns": {"nameservers": ["10.6.0.53"], "search": ["team-a.svc.cluster.local"]},
}


@pytest.mark.parametrize("version", VERSIONS)
def test_add_prints_only_the_requested_nic_in_the_requested_version(version, agent, run_cni, configs, pod_netns):
    # Given a pod whose allocation covers eth0 (dual-stack) and net1
    config = configs.ipam(
        version,
        agent.socket_path,
        default_ipv4_ippool=["v4-pool", "v4-*"],
        default_ipv6_ippool=["v6-pool"],
        clean_gateway=True,
        match_master_subnet=True,
    )

    # When the runtime adds eth0
    output = run_cni("spiderpool", "ADD", config).ok()

    # Then only eth0's addresses and routes are printed, in the shape of the requested version
    assert output == configs.legacy_shape(EXPECTED_ETH0_1X, version)
    assert [(r.method, r.path) for r in agent.calls()] == [("GET", "/v1/ipam/healthy"), ("POST", "/v1/ipam/ip")]
    assert agent.calls("POST")[0].body == {
        "containerID": "4e9f0c1d2b3a",
        "ifName": "eth0",
        "netNamespace": pod_netns,
        "podNamespace": "team-a",
        "podName": "web-0",
        "podUID": POD_UID,
        "defaultIPv4IPPool": ["v4-pool", "v4-*"],
        "defaultIPv6IPPool": ["v6-pool"],
        "cleanGateway": True,
        "matchMasterSubnet": True,
        "network": "macvlan-underlay",
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_add_for_a_missing_netns_is_code_3_and_allocates_nothing(version, agent, run_cni, configs, tmp_path):
    # Given a sandbox whose netns is gone (or never existed)
    missing = str(tmp_path / "netns-gone")

    # When the runtime adds eth0
    error = run_cni("spiderpool", "ADD", configs.ipam(version, agent.socket_path), netns=missing).error()

    # Then the ADD fails with "container unknown" and the agent is never asked for an address
    assert error["code"] == 3
    assert error["cniVersion"] == version
    assert missing in error["msg"]
    assert agent.calls() == []


def test_add_for_second_nic_prints_its_address_without_gateway(agent, run_cni, configs):
    output = run_cni("spiderpool", "ADD", configs.ipam("0.4.0", agent.socket_path), ifname="net1").ok()

    assert output == {
        "cniVersion": "0.4.0",
        "ips": [{"address": "10.7.0.33/24", "version": "4"}],
        "routes": [{"dst": "172.16.0.0/16", "gw": "10.7.0.1"}],
        "dns": {"nameservers": ["10.6.0.53"], "search": ["team-a.svc.cluster.local"]},
    }


def test_add_defaults_send_empty_pool_lists_and_false_flags(agent, run_cni, configs):
    run_cni("spiderpool", "ADD", configs.ipam("1.0.0", agent.socket_path)).ok()

    body = agent.calls("POST", "/v1/ipam/ip")[0].body
    assert (body["defaultIPv4IPPool"], body["defaultIPv6IPPool"]) == ([], [])
    assert (body["cleanGateway"], body["matchMasterSubnet"]) == (False, False)


def test_add_without_pod_uid_sends_empty_uid(agent, run_cni, configs):
    run_cni(
        "spiderpool",
        "ADD",
        configs.ipam("1.0.0", agent.socket_path),
        args="K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0",
    ).ok()

    assert agent.calls("POST", "/v1/ipam/ip")[0].body["podUID"] == ""


def test_add_fails_when_agent_allocated_nothing_for_the_nic(agent, run_cni, configs):
    error = run_cni("spiderpool", "ADD", configs.ipam("1.0.0", agent.socket_path), ifname="net2").error()

    assert error["code"] == 110
    assert error["msg"] == "spiderpool-agent allocated no IP address for interface net2"


@pytest.mark.parametrize(
    ("status", "code", "cni_code"),
    [
        (400, "invalid_input", 101),
        (400, "family_disabled", 102),
        (404, "not_found", 103),
        (409, "conflict", 104),
        (409, "ip_exhausted", 105),
        (409, "no_pool_available", 106),
        (409, "pool_in_use", 107),
        (403, "forbidden", 108),
        (503, "unavailable", 11),
        (500, "internal", 100),
        (500, "something_new", 100),
    ],
)
def test_add_maps_agent_error_codes(status, code, cni_code, agent, run_cni, configs):
    details = {"candidates": [{"pool": "v4-pool", "reason": "exhausted"}]}
    agent.answer("POST", "/v1/ipam/ip", status, {"code": code, "message": f"agent says {code}", "details": details})

    error = run_cni("spiderpool", "ADD", configs.ipam("1.0.0", agent.socket_path)).error()

    assert error["code"] == cni_code
    assert error["cniVersion"] == "1.0.0"
    assert error["msg"] == f"agent says {code}"
    assert json.loads(error["details"]) == {"agentCode": code, "httpStatus": status, "details": details}


@pytest.mark.parametrize(
    ("status", "body", "cni_code"),
    [
        (500, b'"ip pool v4-pool is exhausted"', 100),  # Spiderpool's Error is a JSON string
        (503, b"<html>bad gateway</html>", 11),
        (409, b"", 104),
        (404, b"{}", 103),
    ],
)
def test_add_maps_error_bodies_without_a_code_by_http_status(status, body, cni_code, agent, run_cni, configs):
    agent.answer("POST", "/v1/ipam/ip", status, body)

    error = run_cni("spiderpool", "ADD", configs.ipam("1.0.0", agent.socket_path)).error()

    assert error["code"] == cni_code


def test_add_when_agent_socket_is_missing_is_try_again_later(run_cni, configs, short_tmp):
    error = run_cni("spiderpool", "ADD", configs.ipam("1.0.0", str(short_tmp / "absent.sock"))).error()

    assert error["code"] == 11
    assert "not reachable" in error["msg"]


def test_add_when_agent_refuses_connections_is_try_again_later(run_cni, configs, dead_socket):
    error = run_cni("spiderpool", "ADD", configs.ipam("0.3.1", dead_socket)).error()

    assert (error["code"], error["cniVersion"]) == (11, "0.3.1")


def test_add_when_agent_is_unhealthy_does_not_allocate(agent, run_cni, configs):
    agent.answer("GET", "/v1/ipam/healthy", 500, {"code": "internal", "message": "starting"})

    error = run_cni("spiderpool", "ADD", configs.ipam("1.0.0", agent.socket_path)).error()

    assert error["code"] == 11
    assert error["msg"].startswith("unhealthy spiderpool-agent backend")
    assert agent.calls("POST") == []


@pytest.mark.parametrize(
    "answer",
    [
        b"not json",
        {"routes": []},
        {"ips": [{"version": 4, "address": "10.6.0.21", "nic": "eth0"}]},
        {"ips": [{"version": 6, "address": "10.6.0.21/16", "nic": "eth0"}]},
        {"ips": [{"version": 4, "address": "10.6.0.21/16"}]},
        {"ips": [{"version": 4, "address": "10.6.0.21/16", "nic": "eth0", "gateway": "fd00::1"}]},
        {"ips": [{"version": 4, "address": "10.6.0.21/16", "nic": "eth0"}], "routes": [{"ifName": "eth0"}]},
        {"ips": [{"version": 4, "address": "10.6.0.21/16", "nic": "eth0"}], "routes": "nope"},
        ["not", "an", "object"],
    ],
)
def test_add_rejects_answers_that_break_the_contract(answer, agent, run_cni, configs):
    agent.answer("POST", "/v1/ipam/ip", 200, answer)

    error = run_cni("spiderpool", "ADD", configs.ipam("1.0.0", agent.socket_path)).error()

    assert error["code"] == 109


@pytest.mark.parametrize("version", VERSIONS)
def test_del_releases_and_prints_nothing(version, agent, run_cni, configs):
    # The sandbox is already gone: DEL still releases (only ADD needs the netns)
    run = run_cni("spiderpool", "DEL", configs.ipam(version, agent.socket_path), netns="/var/run/netns/cni-1")

    assert run.ok() is None and run.stdout == ""
    assert [r.body for r in agent.calls("DELETE", "/v1/ipam/ip")] == [
        {
            "containerID": "4e9f0c1d2b3a",
            "ifName": "eth0",
            "netNamespace": "/var/run/netns/cni-1",
            "podNamespace": "team-a",
            "podName": "web-0",
            "podUID": POD_UID,
        }
    ]
    assert agent.calls("POST") == []


def test_del_without_netns_still_releases(agent, run_cni, configs):
    run_cni("spiderpool", "DEL", configs.ipam("1.0.0", agent.socket_path), unset=("CNI_NETNS",)).ok()

    assert agent.calls("DELETE", "/v1/ipam/ip")[0].body["netNamespace"] == ""


def test_del_when_allocation_is_gone_succeeds(agent, run_cni, configs):
    agent.answer("DELETE", "/v1/ipam/ip", 404, {"code": "not_found", "message": "no endpoint for pod"})

    run = run_cni("spiderpool", "DEL", configs.ipam("1.0.0", agent.socket_path))

    assert run.returncode == 0 and run.stdout == ""


def test_del_repeated_succeeds_every_time(agent, run_cni, configs):
    config = configs.ipam("1.1.0", agent.socket_path)

    runs = [run_cni("spiderpool", "DEL", config) for _ in range(3)]

    assert [r.returncode for r in runs] == [0, 0, 0]
    assert len(agent.calls("DELETE", "/v1/ipam/ip")) == 3


@pytest.mark.parametrize("version", VERSIONS)
def test_del_when_agent_unreachable_fails_so_the_runtime_retries(version, run_cni, configs, short_tmp):
    error = run_cni("spiderpool", "DEL", configs.ipam(version, str(short_tmp / "absent.sock"))).error()

    assert (error["code"], error["cniVersion"]) == (11, version)


def test_del_when_agent_refuses_connections_fails(run_cni, configs, dead_socket):
    assert run_cni("spiderpool", "DEL", configs.ipam("1.0.0", dead_socket)).error()["code"] == 11


def test_del_when_agent_cannot_reach_portal_fails(agent, run_cni, configs):
    agent.answer("DELETE", "/v1/ipam/ip", 503, {"code": "unavailable", "message": "portal unreachable"})

    error = run_cni("spiderpool", "DEL", configs.ipam("1.0.0", agent.socket_path)).error()

    assert (error["code"], error["msg"]) == (11, "portal unreachable")


@pytest.mark.parametrize(("status", "code"), [(500, "internal"), (400, "invalid_input"), (403, "forbidden")])
def test_del_with_permanent_agent_error_succeeds_and_leaves_it_to_gc(status, code, agent, run_cni, configs):
    agent.answer("DELETE", "/v1/ipam/ip", status, {"code": code, "message": "no"})

    run = run_cni("spiderpool", "DEL", configs.ipam("1.0.0", agent.socket_path))

    assert run.returncode == 0 and run.stdout == ""


def test_del_requires_pod_identity(agent, run_cni, configs):
    error = run_cni("spiderpool", "DEL", configs.ipam("1.0.0", agent.socket_path), args="IgnoreUnknown=1").error()

    assert error["code"] == 4
    assert "K8S_POD_NAMESPACE and K8S_POD_NAME" in error["msg"]
    assert agent.calls() == []


@pytest.mark.parametrize("version", ("0.4.0", "1.0.0", "1.1.0"))
def test_check_is_a_no_op_after_validation(version, agent, run_cni, configs):
    run = run_cni("spiderpool", "CHECK", configs.ipam(version, agent.socket_path))

    assert run.returncode == 0 and run.stdout == ""
    assert agent.calls() == []


def test_check_reports_a_broken_config(agent, run_cni, configs):
    config = configs.ipam("1.0.0", agent.socket_path, clean_gateway="yes")

    assert run_cni("spiderpool", "CHECK", config).error()["code"] == 7


def test_status_asks_the_agent(agent, run_cni, configs):
    run = run_cni(
        "spiderpool",
        "STATUS",
        configs.ipam("1.1.0", agent.socket_path),
        unset=("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"),
    )

    assert run.returncode == 0 and run.stdout == ""
    assert [(r.method, r.path) for r in agent.calls()] == [("GET", "/v1/ipam/healthy")]


def test_status_when_agent_unreachable_is_plugin_not_available(run_cni, configs, short_tmp):
    error = run_cni("spiderpool", "STATUS", configs.ipam("1.1.0", str(short_tmp / "absent.sock"))).error()

    assert error["code"] == 50


def test_status_when_agent_unhealthy_is_plugin_not_available(agent, run_cni, configs):
    agent.answer("GET", "/v1/ipam/healthy", 503, {"code": "unavailable", "message": "no portal"})

    assert run_cni("spiderpool", "STATUS", configs.ipam("1.1.0", agent.socket_path)).error()["code"] == 50


def test_gc_sends_the_valid_attachments(agent, run_cni, configs):
    config = configs.ipam("1.1.0", agent.socket_path)
    config["cni.dev/valid-attachments"] = [
        {"containerID": "aaa111", "ifname": "eth0"},
        {"containerID": "bbb222", "ifname": "net1", "extra": "ignored"},
    ]

    run = run_cni("spiderpool", "GC", config, unset=("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_ARGS"))

    assert run.returncode == 0 and run.stdout == ""
    assert agent.calls("POST", "/v1/ipam/gc")[0].body == {
        "validAttachments": [{"containerID": "aaa111", "ifname": "eth0"}, {"containerID": "bbb222", "ifname": "net1"}],
        "network": "macvlan-underlay",
    }


def test_gc_with_empty_list_is_passed_on(agent, run_cni, configs):
    config = configs.ipam("1.1.0", agent.socket_path)
    config["cni.dev/valid-attachments"] = []

    run_cni("spiderpool", "GC", config).ok()

    assert agent.calls("POST", "/v1/ipam/gc")[0].body == {"validAttachments": [], "network": "macvlan-underlay"}


@pytest.mark.parametrize(
    "attachments",
    [None, "all", [{"containerID": "aaa"}], [{"containerID": "", "ifname": "eth0"}], ["aaa/eth0"]],
)
def test_gc_refuses_a_missing_or_malformed_list(attachments, agent, run_cni, configs):
    # A GC without a usable list would release every allocation of the node: refuse it
    config = configs.ipam("1.1.0", agent.socket_path)
    if attachments is not None:
        config["cni.dev/valid-attachments"] = attachments

    error = run_cni("spiderpool", "GC", config).error()

    assert error["code"] == 7
    assert agent.calls() == []


def test_gc_when_agent_unreachable_is_try_again_later(run_cni, configs, short_tmp):
    config = configs.ipam("1.1.0", str(short_tmp / "absent.sock"))
    config["cni.dev/valid-attachments"] = []

    assert run_cni("spiderpool", "GC", config).error()["code"] == 11


@pytest.mark.parametrize("stdin", [b"", b"{}", b'{"cniVersion": "0.2.0"}', b'{"cniVersion": 1}', b"[]", b"garbage"])
def test_version_without_a_usable_cniversion_answers_the_newest(stdin, run_cni):
    run = run_cni("spiderpool", "VERSION", stdin=stdin, unset=("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"))

    assert run.ok() == {"cniVersion": "1.1.0", "supportedVersions": list(VERSIONS)}


@pytest.mark.parametrize("plugin", ["spiderpool", "coordinator", "ifacer"])
@pytest.mark.parametrize("version", VERSIONS)
def test_version_echoes_the_request_cniversion(plugin, version, run_cni):
    stdin = json.dumps({"cniVersion": version}).encode()
    run = run_cni(plugin, "VERSION", stdin=stdin, unset=("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"))

    assert run.ok() == {"cniVersion": version, "supportedVersions": list(VERSIONS)}


@pytest.mark.parametrize("command", ["ADD", "DEL"])
@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "1.0", "latest", None])
def test_unsupported_version_is_code_1_and_never_reaches_the_agent(command, version, agent, run_cni, configs):
    config = configs.ipam("1.0.0", agent.socket_path)
    if version is None:
        del config["cniVersion"]
    else:
        config["cniVersion"] = version

    error = run_cni("spiderpool", command, config).error()

    assert error["code"] == 1
    assert error["msg"] == "incompatible CNI versions"
    assert error["cniVersion"] == "1.1.0"
    assert agent.calls() == []


@pytest.mark.parametrize(
    ("ipam", "fragment"),
    [
        ({"default_ipv4_ippool": "v4-pool"}, "ipam.default_ipv4_ippool must be an array of strings"),
        ({"default_ipv6_ippool": [""]}, "ipam.default_ipv6_ippool[0] must be a non-empty string"),
        ({"default_ipv4_ippool": [1]}, "ipam.default_ipv4_ippool[0] must be a non-empty string"),
        ({"clean_gateway": "true"}, "ipam.clean_gateway must be a boolean"),
        ({"match_master_subnet": 1}, "ipam.match_master_subnet must be a boolean"),
        ({"ipam_unix_socket_path": "relative.sock"}, "ipam.ipam_unix_socket_path must be an absolute path"),
        ({"ipam_unix_socket_path": "/" + "s" * 120}, "ipam.ipam_unix_socket_path must be at most 107 bytes"),
        ({"log_level": "verbose"}, "ipam.log_level must be one of"),
        ({"log_file_max_size": "100"}, "ipam.log_file_max_size must be an integer"),
        ({"log_file_max_count": -1}, "ipam.log_file_max_count must be in range"),
        ({"log_file_max_age": 1.5}, "ipam.log_file_max_age must be an integer"),
        ({"log_file_path": "relative.log"}, "ipam.log_file_path must be an absolute path"),
        ({"type": ""}, "ipam.type is required"),
    ],
)
def test_bad_ipam_keys_are_code_7_and_never_reach_the_agent(ipam, fragment, agent, run_cni, configs):
    config = configs.ipam("1.0.0", agent.socket_path)
    config["ipam"].update(ipam)

    error = run_cni("spiderpool", "ADD", config).error()

    assert error["code"] == 7
    assert fragment in error["msg"]
    assert agent.calls() == []


@pytest.mark.parametrize("ipam", [None, "spiderpool", ["spiderpool"]])
def test_missing_or_non_object_ipam_section_is_code_7(ipam, agent, run_cni, configs):
    config = configs.ipam("1.0.0", agent.socket_path)
    config["ipam"] = ipam

    assert run_cni("spiderpool", "ADD", config).error()["code"] == 7
    assert agent.calls() == []


def test_unknown_ipam_keys_are_ignored(agent, run_cni, configs):
    # Spiderpool decodes with encoding/json, which ignores unknown keys; configs written for it must keep working
    config = configs.ipam("1.0.0", agent.socket_path, some_future_key={"x": 1}, log_file_max_age=7)

    run_cni("spiderpool", "ADD", config).ok()


def test_log_file_gets_the_call_and_the_agent_exchange(agent, run_cni, configs, tmp_path):
    log_path = tmp_path / "logs" / "spiderpool.log"
    config = configs.ipam("1.0.0", agent.socket_path, log_file_path=str(log_path), log_level="debug")

    run_cni("spiderpool", "ADD", config).ok()
    agent.answer("POST", "/v1/ipam/ip", 409, {"code": "ip_exhausted", "message": "pool full"})
    run_cni("spiderpool", "ADD", config).error()

    text = log_path.read_text()
    assert "spiderpool ADD containerID=4e9f0c1d2b3a ifName=eth0" in text
    assert "agent request POST /v1/ipam/ip" in text
    assert "code 105: pool full" in text
    assert "Traceback" not in text


def test_log_level_info_leaves_out_debug_lines(agent, run_cni, configs, tmp_path):
    log_path = tmp_path / "spiderpool.log"
    config = configs.ipam("1.0.0", agent.socket_path, log_file_path=str(log_path), log_level="info")

    run_cni("spiderpool", "ADD", config).ok()

    text = log_path.read_text()
    assert "spiderpool ADD containerID" in text
    assert "agent request" not in text


def test_unwritable_log_file_does_not_fail_the_call(agent, run_cni, configs):
    config = configs.ipam("1.0.0", agent.socket_path, log_file_path="/proc/version/cannot/spiderpool.log")

    assert run_cni("spiderpool", "ADD", config).ok()["ips"]
