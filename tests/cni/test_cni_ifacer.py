"""The ifacer shim: local validation with clear errors, ADD forwarded to the agent, DEL/CHECK no-ops."""

from __future__ import annotations

import pytest

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


@pytest.mark.parametrize("version", VERSIONS)
def test_add_posts_the_config_and_prints_an_empty_result(version, agent, run_cni, configs):
    config = configs.ifacer(
        version,
        agent.socket_path,
        interfaces=["ens192", "ens224"],
        vlanID=100,
        bond={"name": "bond0", "mode": 1, "options": "primary=ens192;miimon=100"},
    )

    output = run_cni("ifacer", "ADD", config).ok()

    assert output == {"cniVersion": version}
    assert [r.body for r in agent.calls("POST", "/v1/ifacer/add")] == [{"config": config}]


@pytest.mark.parametrize("version", VERSIONS)
def test_add_passes_a_prev_result_through(version, agent, run_cni, configs):
    prev = configs.legacy_shape({"ips": [{"address": "10.6.0.21/16"}]}, version)
    config = configs.ifacer(version, agent.socket_path, prevResult=prev)

    assert run_cni("ifacer", "ADD", config).ok() == prev


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        ({"interfaces": None}, "interfaces must list at least one host interface"),
        ({"interfaces": []}, "interfaces must list at least one host interface"),
        ({"interfaces": "ens192"}, "interfaces must list at least one host interface"),
        ({"interfaces": [7]}, "interfaces[0] must be an interface name"),
        ({"interfaces": ["ens192", "bad/name"]}, "interfaces[1]"),
        ({"interfaces": ["averyveryverylongname"]}, "interface name is too long"),
        ({"interfaces": ["ens192", "ens192"]}, "interfaces lists an interface twice"),
        ({"vlanID": -1}, "vlanID must be in range [0,4094]"),
        ({"vlanID": 4095}, "vlanID must be in range [0,4094]"),
        ({"vlanID": "100"}, "vlanID must be an integer"),
        ({"vlanID": True}, "vlanID must be an integer"),
        ({"vlanID": 10.0}, "vlanID must be an integer"),
        ({"interfaces": ["enp0s31f6abcd"], "vlanID": 4000}, "VLAN interface enp0s31f6abcd.4000"),
        ({"interfaces": ["a", "b"], "bond": {"mode": 7}}, "bond.mode must be in range [0,6]"),
        ({"interfaces": ["a", "b"], "bond": {"mode": "1"}}, "bond.mode must be an integer"),
        ({"interfaces": ["a", "b"], "bond": {"name": "a"}}, "bond.name must differ from the enslaved interfaces"),
        ({"interfaces": ["a", "b"], "bond": {"name": "bond:0"}}, "bond.name"),
        ({"interfaces": ["a", "b"], "bond": {"options": 5}}, "bond.options must be a string"),
        ({"interfaces": ["a", "b"], "bond": "sp_bond0"}, "bond must be a JSON object"),
        ({"interfaces": ["a", "b"], "vlanID": 4094, "bond": {"name": "long_bond_name"}}, "long_bond_name.4094"),
    ],
)
def test_bad_config_is_code_7_with_a_clear_message_and_no_agent_call(keys, fragment, agent, run_cni, configs):
    config = configs.ifacer("1.0.0", agent.socket_path, **keys)
    if keys.get("interfaces", "") is None:
        del config["interfaces"]

    error = run_cni("ifacer", "ADD", config).error()

    assert error["code"] == 7
    assert fragment in error["msg"] + error["details"]
    assert agent.calls() == []


@pytest.mark.parametrize(
    "keys",
    [
        {"interfaces": ["ens192"], "vlanID": 0},
        {"interfaces": ["ens192", "ens224"], "vlanID": 200},  # no bond: nothing to create, as upstream
        {"interfaces": ["ens192", "ens224"], "bond": {}},  # name defaults to sp_bond0, mode to 0
        {"interfaces": ["ens192", "ens224"], "bond": {"name": "", "mode": 6}, "vlanID": 4094},
    ],
)
def test_valid_configs_are_accepted(keys, agent, run_cni, configs):
    run_cni("ifacer", "ADD", configs.ifacer("1.1.0", agent.socket_path, **keys)).ok()

    assert len(agent.calls("POST", "/v1/ifacer/add")) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_del_is_a_no_op_even_for_a_config_that_no_longer_validates(version, agent, run_cni, configs):
    config = configs.ifacer(version, agent.socket_path, vlanID=9999)

    run = run_cni("ifacer", "DEL", config)

    assert run.returncode == 0 and run.stdout == ""
    assert agent.calls() == []


def test_check_is_a_no_op_that_reports_a_broken_config(agent, run_cni, configs):
    assert run_cni("ifacer", "CHECK", configs.ifacer("1.0.0", agent.socket_path)).ok() is None
    assert run_cni("ifacer", "CHECK", configs.ifacer("1.0.0", agent.socket_path, vlanID=5000)).error()["code"] == 7
    assert agent.calls() == []


@pytest.mark.parametrize(("status", "code", "cni_code"), [(503, "unavailable", 11), (409, "conflict", 104)])
def test_add_maps_agent_errors(status, code, cni_code, agent, run_cni, configs):
    message = "cannot have multiple different vlan interfaces with the same vlanId"
    agent.answer("POST", "/v1/ifacer/add", status, {"code": code, "message": message})

    error = run_cni("ifacer", "ADD", configs.ifacer("1.0.0", agent.socket_path)).error()

    assert (error["code"], error["msg"]) == (cni_code, message)


def test_add_when_agent_unreachable_is_try_again_later(run_cni, configs, dead_socket):
    assert run_cni("ifacer", "ADD", configs.ifacer("1.0.0", dead_socket)).error()["code"] == 11


def test_status_is_plugin_not_available_when_the_agent_is(run_cni, configs, dead_socket):
    assert run_cni("ifacer", "STATUS", configs.ifacer("1.1.0", dead_socket)).error()["code"] == 50
