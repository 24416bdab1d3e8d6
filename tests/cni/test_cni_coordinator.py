"""The coordinator shim: forwards chained calls to the agent, short-circuits disabled mode and vanished netns."""

from __future__ import annotations

import copy

import pytest

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
PREV_1X = {
    "interfaces": [{"name": "eth0", "mac": "02:42:0a:06:00:15", "sandbox": "/var/run/netns/cni-1"}],
    "ips": [
        {"address": "10.6.0.21/16", "gateway": "10.6.0.1", "interface": 0},
        {"address": "fd00:6::21/64", "gateway": "fd00:6::1", "interface": 0},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.6.0.1"}],
    "dns": {},
}


@pytest.mark.parametrize("version", VERSIONS)
def test_add_posts_the_whole_entry_and_prints_the_agent_result_in_the_requested_version(
    version, agent, run_cni, configs, netns
):
    # Given a coordinator entry chained after macvlan, with a prevResult in the runtime's version
    prev = configs.legacy_shape(PREV_1X, version)
    config = configs.coordinator(version, agent.socket_path, prev=prev, mode="underlay", podDefaultRouteNic="eth0")

    # When the runtime runs ADD
    output = run_cni("coordinator", "ADD", config, netns=netns).ok()

    # Then the agent got the entry, the prevResult and the pod facts, and its 1.x result is printed as `version`
    body = agent.calls("POST", "/v1/coordinator/add")[0].body
    assert body == {
        "containerID": "4e9f0c1d2b3a",
        "netNamespace": netns,
        "ifName": "eth0",
        "podNamespace": "team-a",
        "podName": "web-0",
        "podUID": "1f0c4a8e-2b7d-4c55-9a8e-0d5b7c1e2f3a",
        "cniVersion": version,
        "config": config,
        "prevResult": prev,
    }
    expected = copy.deepcopy(PREV_1X)
    expected["interfaces"].append({"name": "veth0", "sandbox": netns})
    assert output == configs.legacy_shape(expected, version)


@pytest.mark.parametrize("mode", ["disable", "disabled"])
@pytest.mark.parametrize("version", VERSIONS)
def test_disabled_mode_passes_prev_result_through_without_the_agent(mode, version, agent, run_cni, configs, netns):
    prev = configs.legacy_shape(PREV_1X, version)
    config = configs.coordinator(version, agent.socket_path, prev=prev, mode=mode)

    output = run_cni("coordinator", "ADD", config, netns=netns).ok()

    assert output == prev
    assert agent.calls() == []


@pytest.mark.parametrize("command", ["DEL", "CHECK", "STATUS"])
def test_disabled_mode_other_commands_are_no_ops(command, agent, run_cni, configs, netns):
    config = configs.coordinator(
        "1.1.0", agent.socket_path, prev=configs.legacy_shape(PREV_1X, "1.1.0"), mode="disabled"
    )

    run = run_cni("coordinator", command, config, netns=netns)

    assert run.returncode == 0 and run.stdout == ""
    assert agent.calls() == []


def test_disabled_mode_without_prev_result_prints_an_empty_result(agent, run_cni, configs, netns):
    output = run_cni(
        "coordinator", "ADD", configs.coordinator("1.0.0", agent.socket_path, mode="disable"), netns=netns
    ).ok()

    assert output == {"cniVersion": "1.0.0"}


def test_add_without_prev_result_is_a_config_error(agent, run_cni, configs, netns):
    error = run_cni("coordinator", "ADD", configs.coordinator("1.0.0", agent.socket_path), netns=netns).error()

    assert error["code"] == 7
    assert "prevResult" in error["msg"]
    assert agent.calls() == []


@pytest.mark.parametrize(
    "prev",
    [
        "not an object",
        {"ips": "nope"},
        {"ips": [{"address": "10.6.0.21"}]},
        {"ips": [{"address": "10.6.0.21/16", "gateway": "fd00::1"}]},
        {"ips": [{"address": "10.6.0.21/16", "interface": -1}]},
        {"routes": [{"gw": "10.6.0.1"}]},
        {"interfaces": ["eth0"]},
    ],
)
def test_add_with_malformed_prev_result_is_a_config_error(prev, agent, run_cni, configs, netns):
    config = configs.coordinator("1.0.0", agent.socket_path, prev=prev)

    assert run_cni("coordinator", "ADD", config, netns=netns).error()["code"] == 7
    assert agent.calls() == []


@pytest.mark.parametrize("mode", ["Underlay", "off", 1, ["auto"]])
def test_unknown_mode_is_a_config_error(mode, agent, run_cni, configs, netns):
    config = configs.coordinator("1.0.0", agent.socket_path, prev=PREV_1X, mode=mode)

    error = run_cni("coordinator", "ADD", config, netns=netns).error()

    assert error["code"] == 7
    assert "mode" in error["msg"]


@pytest.mark.parametrize(
    ("status", "code", "cni_code"),
    [(503, "unavailable", 11), (400, "invalid_input", 101), (409, "conflict", 104), (500, "internal", 100)],
)
def test_add_maps_agent_errors(status, code, cni_code, agent, run_cni, configs, netns):
    agent.answer("POST", "/v1/coordinator/add", status, {"code": code, "message": "overlay mode needs veth0"})
    config = configs.coordinator("1.0.0", agent.socket_path, prev=PREV_1X)

    error = run_cni("coordinator", "ADD", config, netns=netns).error()

    assert (error["code"], error["msg"]) == (cni_code, "overlay mode needs veth0")


@pytest.mark.parametrize("answer", [{}, {"result": "x"}, {"result": {"ips": [{"address": "bad"}]}}, b"[1]"])
def test_add_rejects_agent_answers_without_a_valid_result(answer, agent, run_cni, configs, netns):
    agent.answer("POST", "/v1/coordinator/add", 200, answer)
    config = configs.coordinator("1.0.0", agent.socket_path, prev=PREV_1X)

    assert run_cni("coordinator", "ADD", config, netns=netns).error()["code"] == 109


def test_add_when_agent_unreachable_is_try_again_later(run_cni, configs, netns, short_tmp):
    config = configs.coordinator("1.0.0", str(short_tmp / "absent.sock"), prev=PREV_1X)

    assert run_cni("coordinator", "ADD", config, netns=netns).error()["code"] == 11


def test_add_uses_the_default_socket_path_when_none_is_configured(run_cni, configs, netns):
    config = configs.coordinator("1.0.0", "/unused", prev=PREV_1X)
    del config["unix_socket_path"]

    error = run_cni("coordinator", "ADD", config, netns=netns).error()

    assert error["code"] == 11
    assert "/var/run/spidernet/spiderpool.sock" in error["msg"]


@pytest.mark.parametrize("version", VERSIONS)
def test_del_posts_to_the_agent(version, agent, run_cni, configs, netns):
    config = configs.coordinator(version, agent.socket_path)

    run = run_cni("coordinator", "DEL", config, netns=netns)

    assert run.returncode == 0 and run.stdout == ""
    body = agent.calls("POST", "/v1/coordinator/del")[0].body
    assert (body["netNamespace"], body["ifName"], body["cniVersion"]) == (netns, "eth0", version)
    assert "prevResult" not in body


def test_del_passes_a_prev_result_when_given_and_drops_a_malformed_one(agent, run_cni, configs, netns):
    run_cni("coordinator", "DEL", configs.coordinator("1.0.0", agent.socket_path, prev=PREV_1X), netns=netns).ok()
    run_cni("coordinator", "DEL", configs.coordinator("1.0.0", agent.socket_path, prev={"ips": 1}), netns=netns).ok()

    first, second = (r.body for r in agent.calls("POST", "/v1/coordinator/del"))
    assert first["prevResult"]["ips"][0]["address"] == "10.6.0.21/16"
    assert "prevResult" not in second


@pytest.mark.parametrize("unset", [(), ("CNI_NETNS",)])
def test_del_when_netns_is_gone_succeeds_without_the_agent(unset, agent, run_cni, configs, tmp_path):
    config = configs.coordinator("1.0.0", agent.socket_path)

    run = run_cni("coordinator", "DEL", config, netns=str(tmp_path / "gone"), unset=unset)

    assert run.returncode == 0 and run.stdout == ""
    assert agent.calls() == []


def test_del_when_agent_unreachable_fails_so_the_runtime_retries(run_cni, configs, netns, short_tmp):
    config = configs.coordinator("1.0.0", str(short_tmp / "absent.sock"))

    assert run_cni("coordinator", "DEL", config, netns=netns).error()["code"] == 11


def test_del_when_agent_unavailable_fails(agent, run_cni, configs, netns):
    agent.answer("POST", "/v1/coordinator/del", 503, {"code": "unavailable", "message": "k8s unreachable"})

    error = run_cni("coordinator", "DEL", configs.coordinator("1.0.0", agent.socket_path), netns=netns).error()

    assert error["code"] == 11


@pytest.mark.parametrize(("status", "code"), [(404, "not_found"), (500, "internal")])
def test_del_with_gone_or_permanent_agent_error_succeeds(status, code, agent, run_cni, configs, netns):
    agent.answer("POST", "/v1/coordinator/del", status, {"code": code, "message": "no veth"})

    run = run_cni("coordinator", "DEL", configs.coordinator("1.0.0", agent.socket_path), netns=netns)

    assert run.returncode == 0 and run.stdout == ""


def test_check_posts_to_the_agent_and_reports_its_errors(agent, run_cni, configs, netns):
    config = configs.coordinator("1.0.0", agent.socket_path, prev=PREV_1X)
    run_cni("coordinator", "CHECK", config, netns=netns).ok()
    agent.answer("POST", "/v1/coordinator/check", 409, {"code": "conflict", "message": "route to 10.96.0.0/12 gone"})

    error = run_cni("coordinator", "CHECK", config, netns=netns).error()

    assert (error["code"], error["msg"]) == (104, "route to 10.96.0.0/12 gone")
    assert agent.calls("POST", "/v1/coordinator/check")[0].body["prevResult"]["ips"][0]["address"] == "10.6.0.21/16"


def test_status_is_plugin_not_available_when_the_agent_is(run_cni, configs, short_tmp):
    error = run_cni("coordinator", "STATUS", configs.coordinator("1.1.0", str(short_tmp / "absent.sock"))).error()

    assert error["code"] == 50


def test_pod_identity_is_required_for_add(agent, run_cni, configs, netns):
    config = configs.coordinator("1.0.0", agent.socket_path, prev=PREV_1X)

    assert run_cni("coordinator", "ADD", config, netns=netns, args="").error()["code"] == 4
    assert agent.calls() == []


def test_bad_log_options_are_a_config_error(agent, run_cni, configs, netns):
    config = configs.coordinator("1.0.0", agent.socket_path, prev=PREV_1X, logOptions={"logLevel": "loud"})

    error = run_cni("coordinator", "ADD", config, netns=netns).error()

    assert error["code"] == 7
    assert "logOptions.logLevel" in error["msg"]


def test_log_options_log_file_is_written(agent, run_cni, configs, netns, tmp_path):
    log_path = tmp_path / "coordinator.log"
    config = configs.coordinator("1.0.0", agent.socket_path, prev=PREV_1X, logOptions={"logFile": str(log_path)})

    run_cni("coordinator", "ADD", config, netns=netns).ok()

    assert "coordinator ADD containerID=4e9f0c1d2b3a" in log_path.read_text()


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_add_and_check_for_a_missing_netns_are_code_3_without_the_agent(command, agent, run_cni, configs, tmp_path):
    missing = str(tmp_path / "netns-gone")
    config = configs.coordinator("1.0.0", agent.socket_path, prev=PREV_1X)

    error = run_cni("coordinator", command, config, netns=missing).error()

    assert error["code"] == 3
    assert missing in error["msg"]
    assert agent.calls() == []


@pytest.mark.parametrize(
    ("reason", "cni_code"),
    [("invalid_config", 7), ("unknown_container", 3), ("something_else", 101), (["invalid_config"], 101)],
)
def test_add_maps_the_reason_of_agent_invalid_input(reason, cni_code, agent, run_cni, configs, netns):
    # The agent names what was invalid: a wrong-type config value is the spec's code 7, a vanished netns code 3
    body = {"code": "invalid_input", "message": "invalid coordinator config: vethMTU must be an integer",
            "details": {"reason": reason}}
    agent.answer("POST", "/v1/coordinator/add", 400, body)
    config = configs.coordinator("1.0.0", agent.socket_path, prev=PREV_1X)

    error = run_cni("coordinator", "ADD", config, netns=netns).error()

    assert (error["code"], error["msg"]) == (cni_code, body["message"])
