"""Agent configuration from the environment: defaults, fallbacks, and one loud message listing every bad value."""

from __future__ import annotations

import pytest

from agent.config import DEFAULT_SOCKET_PATH, ConfigError, load

BASE = {"SPIDERWEB_NODE_NAME": "node-1", "SPIDERWEB_PORTAL_URL": "https://portal:8443/",
        "SPIDERWEB_NODE_TOKEN": "swn_a.b", "SPIDERWEB_AGENT_MODE": "standalone"}


def test_defaults():
    config = load(BASE)
    assert (config.node_name, config.portal_url, config.mode) == ("node-1", "https://portal:8443", "standalone")
    assert (config.socket_path, config.health_port, config.metrics_port) == (DEFAULT_SOCKET_PATH, 5710, 5711)
    assert (config.cni_bin_dir, config.release_conflict_ips, config.queue_size) == ("/opt/cni/bin", True, 1000)
    assert config.kubeconfig is None and config.standalone
    assert "swn_a.b" not in repr(config)  # the token never ends up in a log line


def test_spiderpool_names_are_fallbacks():
    env = {**BASE, "SPIDERPOOL_NODE_NAME": "other", "SPIDERPOOL_ENABLED_RELEASE_CONFLICT_IPS": "false",
           "MULTUS_CLUSTER_NETWORK": "kube-system/calico", "SPIDERPOOL_POD_NAMESPACE": "spiderpool"}
    del env["SPIDERWEB_NODE_NAME"]
    config = load(env)
    assert (config.node_name, config.release_conflict_ips) == ("other", False)
    assert (config.cluster_network, config.namespace) == ("kube-system/calico", "spiderpool")


def test_zero_metrics_port_and_empty_cni_dir_disable_them():
    config = load({**BASE, "SPIDERWEB_AGENT_METRICS_PORT": "0", "SPIDERWEB_CNI_BIN_DIR": ""})
    assert (config.metrics_port, config.cni_bin_dir) == (None, "")


def test_token_from_a_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("swn_x.y\n")
    env = {**BASE, "SPIDERWEB_NODE_TOKEN_FILE": str(token_file)}
    del env["SPIDERWEB_NODE_TOKEN"]
    assert (load(env).node_token, load(env).node_token_file) == ("swn_x.y", str(token_file))
    with pytest.raises(ConfigError, match="not both"):
        load({**env, "SPIDERWEB_NODE_TOKEN": "swn_a.b"})
    with pytest.raises(ConfigError, match="cannot be read"):
        load({**env, "SPIDERWEB_NODE_TOKEN_FILE": str(tmp_path)})  # a directory


def test_a_token_file_that_does_not_exist_yet_is_accepted(tmp_path):
    """The Secret may be filled after the agent started (helm/README.md): start, stay not ready, pick it up."""
    env = {**BASE, "SPIDERWEB_NODE_TOKEN_FILE": str(tmp_path / "later")}
    del env["SPIDERWEB_NODE_TOKEN"]
    config = load(env)
    assert (config.node_token, config.node_token_file) == ("", str(tmp_path / "later"))


def test_every_bad_value_is_named_at_once(tmp_path):
    env = {"SPIDERWEB_PORTAL_URL": "ftp://portal", "SPIDERWEB_NODE_TOKEN": "t", "SPIDERWEB_AGENT_MODE": "cloud",
           "SPIDERWEB_AGENT_HEALTH_PORT": "70000", "SPIDERWEB_AGENT_METRICS_PORT": "abc",
           "SPIDERPOOL_ENABLED_RELEASE_CONFLICT_IPS": "maybe", "SPIDERWEB_AGENT_SOCKET": "relative.sock",
           "SPIDERWEB_CNI_BIN_DIR": "bin", "SPIDERWEB_AGENT_QUEUE_SIZE": "-1", "SPIDERWEB_AGENT_LOG_LEVEL": "loud"}
    with pytest.raises(ConfigError) as caught:
        load(env)
    message = str(caught.value)
    for fragment in ("SPIDERWEB_NODE_NAME (or SPIDERPOOL_NODE_NAME) is required",
                     "SPIDERWEB_PORTAL_URL='ftp://portal' must be an http:// or https:// URL",
                     "SPIDERWEB_AGENT_MODE='cloud' must be kubernetes or standalone",
                     "SPIDERWEB_AGENT_HEALTH_PORT=70000 must be between 1 and 65535",
                     "SPIDERWEB_AGENT_METRICS_PORT='abc' is not an integer",
                     "SPIDERPOOL_ENABLED_RELEASE_CONFLICT_IPS='maybe' is not true or false",
                     "SPIDERWEB_AGENT_SOCKET='relative.sock' must be an absolute path",
                     "SPIDERWEB_CNI_BIN_DIR='bin' must be an absolute path",
                     "SPIDERWEB_AGENT_QUEUE_SIZE=-1 must be between 0 and 100000",
                     "SPIDERWEB_AGENT_LOG_LEVEL='loud' must be one of"):
        assert fragment in message, fragment


def test_kubernetes_mode_checks_the_kubeconfig_file(tmp_path):
    env = {**BASE, "SPIDERWEB_AGENT_MODE": "kubernetes"}
    assert load(env).kubeconfig is None  # in-cluster
    with pytest.raises(ConfigError, match="KUBECONFIG='/nowhere' does not name a readable file"):
        load({**env, "KUBECONFIG": "/nowhere"})


def test_python_m_agent_exits_2_with_the_message():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "agent"], env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=60, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert done.returncode == 2
    assert "invalid agent configuration: SPIDERWEB_NODE_NAME" in done.stderr
