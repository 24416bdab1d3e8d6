"""Fuzzing: whatever a runtime (or anything else) throws at the executables, they answer the CNI way.

Properties, for random stdin (bytes, JSON, mutated configs) and random CNI_* environments:
1. stdout holds exactly one JSON document: a CNI error object with exit code 1, or a result/nothing with 0;
   no traceback anywhere;
2. the agent is asked to allocate (POST /v1/ipam/ip) only when the input is valid, judged by an oracle written
   here independently of the implementation;
3. and when the input *is* valid, the allocation happens and succeeds (so property 2 is not vacuous).
"""

from __future__ import annotations

import io
import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
VALID_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_UID=uid-1"
GOOD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "4e9f0c1d2b3a",
    "CNI_NETNS": "/proc/self/ns/net",  # exists wherever the tests run: an ADD for a missing netns is code 3
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
    "CNI_ARGS": VALID_ARGS,
}
CONTAINER_ID = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
SOCKET_PLACEHOLDER = "@SOCKET@"
# The fake agent's canned allocation: first address per NIC.
ALLOCATED_NICS = {"eth0": "10.6.0.21/16", "net1": "10.7.0.33/24"}
# Raise for a longer hunt, e.g. SPIDERWEB_CNI_FUZZ_EXAMPLES=5000.
EXAMPLES = int(os.environ.get("SPIDERWEB_CNI_FUZZ_EXAMPLES", "120"))

# Env values cannot hold NUL, and lone surrogates cannot be encoded for a child process.
env_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)

json_leaf = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

# Mutations of a valid config, each of which must make it invalid.
BREAKERS = [
    ("drop name", lambda c: c.pop("name")),
    ("bad name", lambda c: c.__setitem__("name", "no spaces allowed")),
    ("drop version", lambda c: c.pop("cniVersion")),
    ("old version", lambda c: c.__setitem__("cniVersion", "0.2.0")),
    ("number version", lambda c: c.__setitem__("cniVersion", 1.0)),
    ("drop ipam", lambda c: c.pop("ipam")),
    ("ipam string", lambda c: c.__setitem__("ipam", "spiderpool")),
    ("no type", lambda c: c["ipam"].pop("type")),
    ("pool string", lambda c: c["ipam"].__setitem__("default_ipv4_ippool", "p")),
    ("pool ints", lambda c: c["ipam"].__setitem__("default_ipv6_ippool", [1, 2])),
    ("gateway string", lambda c: c["ipam"].__setitem__("clean_gateway", "false")),
    ("subnet int", lambda c: c["ipam"].__setitem__("match_master_subnet", 0)),
    ("relative socket", lambda c: c["ipam"].__setitem__("ipam_unix_socket_path", "agent.sock")),
    ("bad level", lambda c: c["ipam"].__setitem__("log_level", "chatty")),
    ("size string", lambda c: c["ipam"].__setitem__("log_file_max_size", "100")),
]


def _valid_config(version: str) -> dict:
    return {
        "cniVersion": version,
        "name": "macvlan-underlay",
        "type": "macvlan",
        "ipam": {"type": "spiderpool", "ipam_unix_socket_path": SOCKET_PLACEHOLDER, "default_ipv4_ippool": ["p4"]},
    }


@st.composite
def stdin_cases(draw):
    """(stdin bytes with the socket placeholder, whether the config is valid)."""
    kind = draw(st.sampled_from(["valid", "broken", "extra-keys", "json", "bytes"]))
    version = draw(st.sampled_from(VERSIONS))
    if kind == "valid":
        return json.dumps(_valid_config(version)).encode(), True
    if kind == "extra-keys":
        config = _valid_config(version)
        extra = draw(st.dictionaries(st.text(min_size=1, max_size=8).map(lambda k: "x-" + k), json_value, max_size=3))
        config["ipam"].update(extra)
        config.update(extra)
        return json.dumps(config).encode(), True
    if kind == "broken":
        config = _valid_config(version)
        for _, breaker in draw(st.lists(st.sampled_from(BREAKERS), min_size=1, max_size=3, unique_by=lambda b: b[0])):
            try:
                breaker(config)
            except (KeyError, TypeError, AttributeError):
                pass  # an earlier breaker already removed what this one changes
        return json.dumps(config).encode(), False
    if kind == "json":
        value = draw(json_value)
        if isinstance(value, dict):
            value.pop("ipam", None)  # without an ipam section it can never be a valid config
        return json.dumps(value).encode(), False
    data = draw(st.binary(max_size=200))
    return data.replace(b"ipam", b"ipa"), False


@st.composite
def env_cases(draw):
    """A CNI_* environment: mostly good values, some missing, some random text."""
    env = {}
    for name, good in GOOD_ENV.items():
        choice = draw(st.sampled_from(["good"] * 8 + ["missing", "random"]))
        if choice == "good":
            env[name] = good
        elif choice == "random":
            env[name] = draw(env_text)
    if draw(st.booleans()):
        env[draw(st.sampled_from(["CNI_NETNS_OVERRIDE", "CNI_FOO", "K8S_POD_NAME"]))] = draw(env_text)
    return _without_pod_namespace(env)


def _without_pod_namespace(env: dict) -> dict:
    """Random CNI_ARGS could only be valid by naming the pod's namespace; keep that out so the oracle stays simple."""
    if env.get("CNI_ARGS", VALID_ARGS) != VALID_ARGS:
        env["CNI_ARGS"] = env["CNI_ARGS"].replace("K8S_POD_NAMESPACE", "K8S_POD_NS")
    return env


def _env_valid(env: dict) -> bool:
    """The oracle: is this environment good for an ADD that allocates? (Written from the CNI spec, not the code.)"""
    return (
        env.get("CNI_COMMAND") == "ADD"
        and bool(CONTAINER_ID.fullmatch(env.get("CNI_CONTAINERID", "")))
        and bool(env.get("CNI_NETNS"))
        and os.path.exists(env["CNI_NETNS"])
        and _valid_ifname(env.get("CNI_IFNAME", ""))
        and bool(env.get("CNI_PATH"))
        and env.get("CNI_ARGS") == VALID_ARGS
    )


def _valid_ifname(name: str) -> bool:
    return (
        0 < len(name.encode()) <= 15
        and name not in (".", "..")
        and not any(c in "/:" or c.isspace() or not c.isprintable() for c in name)
    )


def _check_output(returncode: int, stdout: bytes, stderr: bytes) -> object:
    """Property 1; returns the parsed output."""
    assert returncode in (0, 1), (returncode, stdout, stderr)
    assert b"Traceback" not in stdout + stderr, stderr
    text = stdout.decode("ascii")
    output = json.loads(text) if text.strip() else None
    if returncode == 1:
        assert isinstance(output, dict) and set(output) == {"cniVersion", "code", "msg", "details"}, text
        assert isinstance(output["code"], int) and output["code"] > 0
        assert isinstance(output["msg"], str) and output["msg"]
        assert output["cniVersion"] in VERSIONS
    return output


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # keep hypothesis from writing .hypothesis/ into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ_SETTINGS
@given(case=stdin_cases(), env=env_cases())
def test_packaged_executable_always_answers_the_cni_way(case, env, module_agent, executables, python_bin):
    import subprocess

    module_agent.reset()
    stdin, config_valid = case
    env_valid = _env_valid(env)
    env["PATH"] = f"{python_bin}:/usr/bin:/bin"
    stdin = stdin.replace(SOCKET_PLACEHOLDER.encode(), module_agent.socket_path.encode())

    done = subprocess.run([str(executables["spiderpool"])], input=stdin, env=env, capture_output=True, timeout=60)

    output = _check_output(done.returncode, done.stdout, done.stderr)
    allocations = module_agent.calls("POST", "/v1/ipam/ip")
    if allocations:
        assert config_valid and env_valid, (stdin, env)
    if config_valid and env_valid:
        assert len(allocations) == 1
        if env["CNI_IFNAME"] in ALLOCATED_NICS:
            assert done.returncode == 0, output
            assert output["ips"][0]["address"] == ALLOCATED_NICS[env["CNI_IFNAME"]]
        else:
            assert output["code"] == 110  # a valid name the fake agent allocated nothing for


@settings(
    max_examples=EXAMPLES * 4,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    case=stdin_cases(),
    env=env_cases(),
    raw_env=st.dictionaries(
        st.sampled_from(["CNI_COMMAND", "CNI_ARGS", "CNI_IFNAME", "CNI_CONTAINERID"]), st.text(max_size=30), max_size=2
    ),
)
def test_dispatcher_in_process_never_raises_and_never_allocates_on_bad_input(case, env, raw_env, module_agent):
    from cni.dispatch import main
    from cni.spiderpool import HANDLERS, log_settings

    module_agent.reset()
    stdin, config_valid = case
    env = _without_pod_namespace({**env, **raw_env})  # raw text may hold lone surrogates: only possible in-process
    env_valid = _env_valid(env)
    stdin = stdin.replace(SOCKET_PLACEHOLDER.encode(), module_agent.socket_path.encode())
    out = io.BytesIO()

    code = main(
        HANDLERS, plugin="spiderpool", log_settings=log_settings, environ=env, stdin=io.BytesIO(stdin), stdout=out
    )

    output = _check_output(code, out.getvalue(), b"")
    if module_agent.calls("POST", "/v1/ipam/ip"):
        assert config_valid and env_valid
    if config_valid and env_valid:
        assert code == 0 if env["CNI_IFNAME"] in ALLOCATED_NICS else output["code"] == 110


@pytest.mark.parametrize("plugin", ["coordinator", "ifacer"])
def test_meta_plugins_survive_random_input_in_process(plugin, module_agent):
    import importlib

    from cni.dispatch import main

    module = importlib.import_module(f"cni.{plugin}")

    @settings(max_examples=EXAMPLES * 2, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=json_value, env=env_cases(), version=st.sampled_from(VERSIONS))
    def run(value, env, version):
        config = value if not isinstance(value, dict) else {"cniVersion": version, "name": "n", **value}
        if isinstance(config, dict):
            config["unix_socket_path"] = module_agent.socket_path
        out = io.BytesIO()
        code = main(
            module.HANDLERS,
            plugin=plugin,
            log_settings=module.log_settings,
            environ=env,
            stdin=io.BytesIO(json.dumps(config).encode()),
            stdout=out,
        )
        _check_output(code, out.getvalue(), b"")

    run()
