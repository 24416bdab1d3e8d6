"""Every command of every executable for every CNI version, run as a runtime runs it.

Given a healthy fake agent and a valid config, when a runtime runs COMMAND with cniVersion V, then the
executable either succeeds with the output shape of V, or fails with code 1 where V does not have COMMAND
(CHECK before 0.4.0, STATUS and GC before 1.1.0), and never calls the agent in that case.
"""

from __future__ import annotations

import pytest

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
PLUGINS = ("spiderpool", "coordinator", "ifacer")
FLOORS = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}

PREV_RESULT_1X = {
    "interfaces": [{"name": "eth0", "mac": "02:42:0a:06:00:15", "sandbox": "/var/run/netns/cni-1"}],
    "ips": [{"address": "10.6.0.21/16", "gateway": "10.6.0.1", "interface": 0}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.6.0.1"}],
}


def _ver(text):
    return tuple(int(p) for p in text.split("."))


def _config(plugin, version, socket_path, configs, netns):
    if plugin == "spiderpool":
        config = configs.ipam(version, socket_path)
    elif plugin == "coordinator":
        prev = configs.legacy_shape(PREV_RESULT_1X, version)
        prev["interfaces"][0]["sandbox"] = netns
        config = configs.coordinator(version, socket_path, prev=prev)
    else:
        config = configs.ifacer(version, socket_path)
    config["cni.dev/valid-attachments"] = [{"containerID": "4e9f0c1d2b3a", "ifname": "eth0"}]
    return config


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("plugin", PLUGINS)
def test_every_command_every_version(plugin, command, version, agent, run_cni, configs, netns):
    config = _config(plugin, version, agent.socket_path, configs, netns)

    run = run_cni(plugin, command, config, netns=netns)

    floor = FLOORS.get(command)
    if floor and _ver(version) < _ver(floor):
        error = run.error()
        assert error["code"] == 1
        assert error["cniVersion"] == version
        assert error["msg"] == f"config version does not allow {command}"
        assert agent.calls() == []
        return
    output = run.ok()
    if command == "VERSION":
        assert output == {"cniVersion": version, "supportedVersions": list(VERSIONS)}
        assert agent.calls() == []
    elif command == "ADD":
        assert output["cniVersion"] == version
        for entry in output.get("ips", []):
            if version in ("0.3.0", "0.3.1", "0.4.0"):
                assert entry["version"] == ("6" if ":" in entry["address"] else "4")
            else:
                assert "version" not in entry
        if plugin == "spiderpool":
            assert [ip["address"] for ip in output["ips"]] == ["10.6.0.21/16", "fd00:6::21/64"]
            assert "interfaces" not in output
        elif plugin == "coordinator":
            assert [i["name"] for i in output["interfaces"]] == ["eth0", "veth0"]
        else:
            assert output == {"cniVersion": version}
    else:
        assert output is None, run.stdout
        assert run.stdout == ""
