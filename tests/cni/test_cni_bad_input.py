"""Bad input from the runtime: every case prints one CNI error object, exits 1, and never reaches the agent."""

from __future__ import annotations

import pytest

PLUGINS = ("spiderpool", "coordinator", "ifacer")
PREV = {"ips": [{"address": "10.6.0.21/16"}]}


def _config(plugin, configs, socket_path, version="1.0.0"):
    if plugin == "spiderpool":
        return configs.ipam(version, socket_path)
    if plugin == "coordinator":
        return configs.coordinator(version, socket_path, prev=PREV)
    return configs.ifacer(version, socket_path)


@pytest.mark.parametrize("plugin", PLUGINS)
@pytest.mark.parametrize(
    "stdin",
    [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"config"',
        b"42",
        b"\xff\xfe{}",
        b'{"cniVersion": "1.0.0", "name": "n", "x": NaN}',
        b'{"cniVersion": "1.0.0", "name": "n"} trailing',
        b"[" * 100_000,
    ],
    ids=["empty", "truncated", "null", "array", "string", "number", "not-utf8", "nan", "trailing", "deep"],
)
def test_malformed_stdin_is_a_decoding_failure(plugin, stdin, agent, run_cni, netns):
    error = run_cni(plugin, "ADD", stdin=stdin, netns=netns).error()

    assert error["code"] == 6
    assert error["msg"].startswith("error decoding network config")
    assert agent.calls() == []


@pytest.mark.parametrize("plugin", PLUGINS)
@pytest.mark.parametrize(
    ("command", "unset", "names"),
    [
        ("ADD", ("CNI_COMMAND",), "CNI_COMMAND"),
        ("ADD", ("CNI_CONTAINERID",), "CNI_CONTAINERID"),
        ("ADD", ("CNI_NETNS",), "CNI_NETNS"),
        ("ADD", ("CNI_IFNAME",), "CNI_IFNAME"),
        ("ADD", ("CNI_PATH",), "CNI_PATH"),
        ("ADD", ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"), "CNI_CONTAINERID,CNI_IFNAME,CNI_PATH"),
        ("DEL", ("CNI_CONTAINERID",), "CNI_CONTAINERID"),
        ("DEL", ("CNI_IFNAME",), "CNI_IFNAME"),
        ("CHECK", ("CNI_NETNS",), "CNI_NETNS"),
        ("STATUS", ("CNI_PATH",), "CNI_PATH"),
        ("GC", ("CNI_PATH",), "CNI_PATH"),
    ],
)
def test_missing_env_is_invalid_environment(plugin, command, unset, names, agent, run_cni, configs, netns):
    config = _config(plugin, configs, agent.socket_path, "1.1.0")

    error = run_cni(plugin, command, config, unset=unset, netns=netns).error()

    assert error["code"] == 4
    assert error["msg"] == f"required env variables [{names}] missing"
    assert agent.calls() == []


def test_missing_command_also_says_what_the_plugin_is_on_stderr(run_cni):
    run = run_cni("spiderpool", "ADD", unset=("CNI_COMMAND",))

    assert run.error()["code"] == 4
    assert "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0" in run.stderr


@pytest.mark.parametrize("command", ["FOO", "add", "Del"])
def test_unknown_command_is_invalid_environment(command, agent, run_cni, configs):
    error = run_cni("spiderpool", command, configs.ipam("1.0.0", agent.socket_path)).error()

    assert (error["code"], error["msg"]) == (4, f"unknown CNI_COMMAND: {command}")
    assert agent.calls() == []


@pytest.mark.parametrize("plugin", PLUGINS)
@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("CNI_CONTAINERID", "bad id", "invalid characters in containerID"),
        ("CNI_CONTAINERID", "-abc", "invalid characters in containerID"),
        ("CNI_CONTAINERID", "abc\n", "invalid characters in containerID"),
        ("CNI_IFNAME", "eth0/1", "interface name contains"),
        ("CNI_IFNAME", "eth0:1", "interface name contains"),
        ("CNI_IFNAME", "eth 0", "interface name contains"),
        ("CNI_IFNAME", "..", "interface name is . or .."),
        ("CNI_IFNAME", "x" * 16, "interface name is too long"),
    ],
)
def test_bad_env_values_are_invalid_environment(plugin, variable, value, fragment, agent, run_cni, configs, netns):
    error = run_cni(
        plugin, "ADD", _config(plugin, configs, agent.socket_path), env={variable: value}, netns=netns
    ).error()

    assert error["code"] == 4
    assert fragment in error["msg"]
    assert agent.calls() == []


@pytest.mark.parametrize("plugin", PLUGINS)
@pytest.mark.parametrize(
    ("cni_args", "fragment"),
    [
        ("K8S_POD_NAME", "invalid pair"),
        ("K8S_POD_NAME=a=b", "invalid pair"),
        ("=x", "invalid pair"),
        ("K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;FOO=bar", "unknown args"),
        ("IgnoreUnknown=0;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;FOO=bar", "unknown args"),
        ("IgnoreUnknown=yes;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0", "IgnoreUnknown must be"),
        ("K8S_POD_NAMESPACE=Team_A;K8S_POD_NAME=web-0", "K8S_POD_NAMESPACE is not"),
        ("K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web 0", "K8S_POD_NAME is not"),
        ("K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_UID=;rm -rf", "invalid pair"),
        ("K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_UID=a b", "K8S_POD_UID is not"),
        ("K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=x/y", "K8S_POD_INFRA_CONTAINER_ID"),
        ("K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;IP=10.0.0.300", "IP is not an address"),
        ("K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_NAME=web-1", "given twice"),
        ("IgnoreUnknown=1;K8S_POD_NAME=web-0", "lacks K8S_POD_NAMESPACE"),
        ("IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a", "lacks K8S_POD_NAME"),
        ("", "lacks K8S_POD_NAMESPACE and K8S_POD_NAME"),
    ],
)
def test_bad_cni_args_are_invalid_environment(plugin, cni_args, fragment, agent, run_cni, configs, netns):
    config = _config(plugin, configs, agent.socket_path)

    run = run_cni(plugin, "ADD", config, args=cni_args, netns=netns)

    if plugin == "ifacer" and fragment.startswith("lacks"):
        # ifacer works on the host, for no pod in particular: it does not need the pod's identity
        assert run.ok() == {"cniVersion": "1.0.0"}
        return
    error = run.error()
    assert error["code"] == 4
    assert fragment in error["msg"]
    assert agent.calls("POST", "/v1/ipam/ip") == []
    assert agent.calls() == []


@pytest.mark.parametrize(
    "cni_args",
    [
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;FOO=bar",
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;MAC=aa",
        "IgnoreUnknown=TRUE;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;",
        "K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0.sub;IP=10.6.0.5;K8S_POD_UID=uid-1",
    ],
)
def test_good_cni_args_variants_are_accepted(cni_args, agent, run_cni, configs):
    run_cni("spiderpool", "ADD", configs.ipam("1.0.0", agent.socket_path), args=cni_args).ok()

    assert agent.calls("POST", "/v1/ipam/ip")[0].body["podNamespace"] == "team-a"


@pytest.mark.parametrize("plugin", PLUGINS)
@pytest.mark.parametrize(
    ("name", "code"),
    [(None, 7), ("", 7), ("bad name", 7), ("-net", 7), (5, 7)],
)
def test_bad_network_name_is_invalid_network_config(plugin, name, code, agent, run_cni, configs, netns):
    config = _config(plugin, configs, agent.socket_path)
    if name is None:
        del config["name"]
    else:
        config["name"] = name

    error = run_cni(plugin, "ADD", config, netns=netns).error()

    assert error["code"] == code
    assert "network name" in error["msg"]
    assert agent.calls() == []


@pytest.mark.parametrize("version", [1.0, 100, ["1.0.0"], {"v": 1}, True])
def test_non_string_cni_version_is_a_decoding_failure(version, agent, run_cni, configs):
    config = configs.ipam("1.0.0", agent.socket_path)
    config["cniVersion"] = version

    assert run_cni("spiderpool", "ADD", config).error()["code"] == 6
    assert agent.calls() == []
