"""The agent's spiderpool-conf keys (spec §12.5): the chart mounts conf.yml and sets SPIDERWEB_CONFIG_PATH; changing a
key changes what the agent does. ``enableStatefulSet`` / ``enableKubevirtStaticIP`` against a real API server are in
test_agent_kubernetes_lab.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agent.config import DEFAULT_SOCKET_PATH, ConfigError, load
from agent.podfacts import KEEP, RELEASE, KubernetesFacts
from tests.agent.conftest import free_port
from tests.agent.test_pod_rules import DictAPI, obj, pod, ref

BASE = {"SPIDERWEB_NODE_NAME": "node-1", "SPIDERWEB_PORTAL_URL": "https://portal:8443/",
        "SPIDERWEB_NODE_TOKEN": "swn_a.b", "SPIDERWEB_AGENT_MODE": "standalone"}
REPO = Path(__file__).resolve().parents[2]


def with_conf(tmp_path, text: str, cluster_network: str | None = None, **env) -> dict:
    (tmp_path / "conf.yml").write_text(text)
    if cluster_network is not None:
        (tmp_path / "clusterNetwork").write_text(cluster_network)
    return {**BASE, "SPIDERWEB_CONFIG_PATH": str(tmp_path / "conf.yml"), **env}


def test_without_a_file_the_agent_keeps_its_own_defaults():
    config = load(BASE)
    assert (config.config_path, config.socket_path, config.tune_sysctls) == ("", DEFAULT_SOCKET_PATH, False)
    assert (config.enable_statefulset, config.enable_kubevirt_static_ip, config.enable_ipv6) == (True, True, True)


def test_ipam_unix_socket_path_is_where_the_agent_listens_unless_the_environment_says_otherwise(tmp_path):
    assert load(with_conf(tmp_path, "ipamUnixSocketPath: /run/sp/agent.sock\n")).socket_path == "/run/sp/agent.sock"
    env = with_conf(tmp_path, "ipamUnixSocketPath: /run/sp/agent.sock\n", SPIDERWEB_AGENT_SOCKET="/tmp/a.sock")
    assert load(env).socket_path == "/tmp/a.sock"


@pytest.mark.parametrize(("text", "env", "tune"), [
    ("", {}, True), ("tuneSysctlConfig: false\n", {}, False),
    ("tuneSysctlConfig: true\n", {"SPIDERWEB_AGENT_TUNE_SYSCTLS": "false"}, False)])
def test_tune_sysctl_config_decides_whether_the_host_is_tuned(tmp_path, text, env, tune):
    assert load(with_conf(tmp_path, text, **env)).tune_sysctls is tune


def test_the_cluster_network_key_names_the_first_nics_network(tmp_path):
    assert load(with_conf(tmp_path, "", cluster_network="kube-system/calico")).cluster_network == "kube-system/calico"
    env = with_conf(tmp_path, "", cluster_network="kube-system/calico", MULTUS_CLUSTER_NETWORK="x/y")
    assert load(env).cluster_network == "x/y"


def test_the_switches_reach_the_agents_configuration(tmp_path):
    config = load(with_conf(tmp_path, "enableIPv6: false\nenableStatefulSet: false\nenableKubevirtStaticIP: false\n"))
    assert (config.enable_ipv4, config.enable_ipv6) == (True, False)
    assert (config.enable_statefulset, config.enable_kubevirt_static_ip) == (False, False)


def test_a_bad_file_is_a_configuration_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"invalid .*conf.yml: enableStatefulSet must be true or false, got 'no way'"):
        load(with_conf(tmp_path, "enableStatefulSet: no way\n"))


@pytest.mark.parametrize(("keep_statefulset", "keep_kubevirt", "expected"), [(True, True, KEEP),
                                                                              (False, False, RELEASE)])
def test_the_static_ip_switches_decide_a_del(keep_statefulset, keep_kubevirt, expected):
    objects = {("Pod", "db-0"): pod("db-0", uid="u", owners=[ref("StatefulSet", "db", "s")], deleting=True),
               ("StatefulSet", "db"): obj("db", replicas=1),
               ("Pod", "virt-launcher-vm1-x"): pod("virt-launcher-vm1-x", uid="v", deleting=True,
                                                   owners=[ref("VirtualMachineInstance", "vm1", "i",
                                                               "kubevirt.io/v1")]),
               ("VirtualMachineInstance", "vm1"): obj("vm1")}
    facts = KubernetesFacts(DictAPI(objects), node_name="node-1", keep_statefulset=keep_statefulset,
                            keep_kubevirt=keep_kubevirt)
    assert facts.release_decision("ns", "db-0", "u").action == expected
    assert facts.release_decision("ns", "virt-launcher-vm1-x", "v").action == expected
    assert facts.release_decision("ns", "db-0", "").action == expected  # pod gone, name says StatefulSet


@pytest.mark.netns
@pytest.mark.parametrize("ipv6", [True, False])
def test_the_agent_tunes_the_host_sysctls_of_the_enabled_families_at_start_up(tmp_path, ipv6):
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    netns = f"swconf{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    socket_path = f"/tmp/swconf-{uuid.uuid4().hex[:6]}.sock"
    env = {**os.environ, **with_conf(tmp_path, f"tuneSysctlConfig: true\nenableIPv6: {str(ipv6).lower()}\n"
                                               f"ipamUnixSocketPath: {socket_path}\n"),
           "PYTHONPATH": str(REPO), "SPIDERWEB_AGENT_HOST_NETNS": f"/var/run/netns/{netns}",
           "SPIDERWEB_AGENT_HEALTH_PORT": str(free_port()), "SPIDERWEB_AGENT_METRICS_PORT": "0",
           "SPIDERWEB_CNI_BIN_DIR": ""}
    env.pop("SPIDERWEB_AGENT_SOCKET", None)
    agent = subprocess.Popen([sys.executable, "-m", "agent"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(socket_path):  # the socket named by ipamUnixSocketPath
            assert agent.poll() is None and time.monotonic() < deadline, agent.stdout.read() if agent.poll() else ""
            time.sleep(0.1)

        def sysctl(key: str) -> str:
            return subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-n", key], capture_output=True,
                                  text=True, check=True).stdout.strip()

        assert sysctl("net.ipv4.conf.all.forwarding") == "1" and sysctl("net.ipv4.conf.all.arp_notify") == "1"
        assert sysctl("net.ipv6.conf.all.forwarding") == ("1" if ipv6 else "0")
    finally:
        agent.terminate()
        agent.wait(timeout=30)
        subprocess.run(["ip", "netns", "del", netns], check=False)
    assert not os.path.exists(socket_path)
