"""In-process unit tests of the shared pieces: results, CNI_ARGS, error mapping, dispatcher, client, packaging."""

from __future__ import annotations

import doctest
import glob
import importlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cni import errors
from cni.agent_client import AgentClient
from cni.dispatch import main
from cni.invocation import parse_cni_args
from cni.package import embedded_sources
from cni.results import ResultFormatError, convert_result

MODULES = ["cni.versions", "cni.results", "cni.invocation", "cni.spiderpool", "cni.errors", "cni.config_values"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    failures, _ = doctest.testmod(importlib.import_module(name))

    assert failures == 0


# -- results -------------------------------------------------------------------------------------------------


def test_result_round_trips_between_legacy_and_current_shapes():
    legacy = {
        "cniVersion": "0.3.1",
        "interfaces": [{"name": "eth0"}],
        "ips": [{"version": "4", "address": "10.6.0.21/16", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.6.0.1", "mtu": 1400}],
        "dns": {"nameservers": ["10.6.0.53"]},
        "x-extension": {"kept": True},
    }

    current = convert_result(legacy, "1.1.0")
    back = convert_result(current, "0.3.1")

    assert current["ips"] == [{"address": "10.6.0.21/16", "interface": 0}]
    assert current["routes"] == legacy["routes"] and current["x-extension"] == {"kept": True}
    assert back == legacy


def test_result_conversion_recomputes_a_wrong_legacy_version_field():
    converted = convert_result({"ips": [{"version": "4", "address": "fd00::1/64"}]}, "0.4.0")

    assert converted["ips"][0]["version"] == "6"


def test_result_conversion_does_not_modify_its_input():
    original = {"ips": [{"address": "10.0.0.1/24"}]}

    convert_result(original, "0.3.1")

    assert original == {"ips": [{"address": "10.0.0.1/24"}]}


@pytest.mark.parametrize(
    "result",
    [
        [],
        {"ips": {}},
        {"ips": [None]},
        {"ips": [{"address": 5}]},
        {"ips": [{"address": "10.0.0.300/24"}]},
        {"ips": [{"address": "10.0.0.1/24", "interface": True}]},
        {"routes": [{"dst": "10.0.0.0/33"}]},
        {"routes": {}},
        {"dns": []},
        {"interfaces": {}},
    ],
)
def test_malformed_results_are_refused(result):
    with pytest.raises(ResultFormatError):
        convert_result(result, "1.0.0")


# -- CNI_ARGS ------------------------------------------------------------------------------------------------


def test_cni_args_as_containerd_passes_them():
    args = parse_cni_args(
        "K8S_POD_INFRA_CONTAINER_ID=4e9f0c1d2b3a;K8S_POD_UID=1f0c4a8e-2b7d;IgnoreUnknown=1;"
        "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-5d78c9869d-x2x8q"
    )

    assert (args.namespace, args.name, args.uid, args.infra_container_id, args.ignore_unknown) == (
        "kube-system",
        "coredns-5d78c9869d-x2x8q",
        "1f0c4a8e-2b7d",
        "4e9f0c1d2b3a",
        True,
    )


def test_empty_cni_args_parse_to_no_identity():
    args = parse_cni_args("")

    assert (args.namespace, args.name) == ("", "")
    with pytest.raises(errors.CNIError) as caught:
        args.require_identity()
    assert caught.value.code == 4


def test_ignore_unknown_may_come_after_the_unknown_key():
    assert parse_cni_args("FOO=1;IgnoreUnknown=true").ignore_unknown is True


def test_multus_repeating_ignore_unknown_with_another_spelling_is_accepted():
    # containerd passes IgnoreUnknown=1 and Multus appends IgnoreUnknown=true: the same value, twice
    args = parse_cni_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;IgnoreUnknown=true")
    assert (args.ignore_unknown, args.namespace, args.name) == (True, "ns", "p")


def test_ignore_unknown_given_twice_with_different_values_is_refused():
    with pytest.raises(errors.CNIError) as caught:
        parse_cni_args("IgnoreUnknown=1;IgnoreUnknown=false")
    assert caught.value.code == 4


# -- error mapping -------------------------------------------------------------------------------------------


ENGINE_CODES = [
    "invalid_input",
    "family_disabled",
    "not_found",
    "conflict",
    "ip_exhausted",
    "no_pool_available",
    "pool_in_use",
    "forbidden",
    "unavailable",
    "internal",
]


@pytest.mark.parametrize("code", ENGINE_CODES)
def test_every_engine_error_code_has_a_distinct_documented_cni_code(code):
    cni_code = errors.AGENT_CODE_TO_CNI[code]

    assert cni_code in errors.CODE_MEANINGS
    assert cni_code == errors.TRY_AGAIN_LATER if code == "unavailable" else cni_code >= 100
    others = {errors.AGENT_CODE_TO_CNI[c] for c in ENGINE_CODES if c != code}
    assert cni_code not in others


def test_agent_error_details_are_a_json_string():
    error = errors.cni_error_from_agent_error(errors.AgentError(409, "ip_exhausted", "full", {"candidates": []}))

    assert error.to_dict("1.0.0") == {
        "cniVersion": "1.0.0",
        "code": 105,
        "msg": "full",
        "details": '{"agentCode":"ip_exhausted","details":{"candidates":[]},"httpStatus":409}',
    }


def test_empty_agent_details_are_left_out():
    error = errors.cni_error_from_agent_error(errors.AgentError(503, "unavailable", "", {}))

    assert (error.code, error.msg, error.details) == (
        11,
        "spiderpool-agent error unavailable",
        '{"agentCode":"unavailable","httpStatus":503}',
    )


# -- dispatcher ----------------------------------------------------------------------------------------------

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/p",
    "CNI_ARGS": "K8S_POD_NAMESPACE=a;K8S_POD_NAME=b",
}
CONFIG = json.dumps({"cniVersion": "0.4.0", "name": "n"}).encode()


def _run(handler, *, stdout=None, env=ENV):
    out = io.BytesIO() if stdout is None else stdout
    code = main({"ADD": handler}, plugin="test", environ=env, stdin=io.BytesIO(CONFIG), stdout=out)
    return code, (json.loads(out.getvalue()) if isinstance(out, io.BytesIO) and out.getvalue() else None)


@pytest.mark.parametrize(
    ("exc", "cni_code"),
    [
        (ZeroDivisionError("boom"), 100),
        (KeyboardInterrupt(), 100),
        (SystemExit(3), 100),
        (RecursionError(), 100),
        (PermissionError("no"), 5),
        (errors.AgentUnreachable("gone"), 11),
        (errors.AgentBadResponse("junk"), 109),
        (ResultFormatError("shape"), 109),
        (errors.AgentError(409, "ip_exhausted", "full"), 105),
    ],
)
def test_any_exception_from_a_handler_becomes_one_error_object(exc, cni_code):
    def handler(invocation):
        raise exc

    code, output = _run(handler)

    assert code == 1
    assert output["code"] == cni_code and output["cniVersion"] == "0.4.0"


def test_an_exception_that_cannot_even_be_printed_still_becomes_an_error_object():
    class Nasty(Exception):
        def __str__(self):
            raise RuntimeError("no")

    def handler(invocation):
        raise Nasty()

    code, output = _run(handler)

    assert (code, output["code"], output["msg"]) == (1, 100, "test: unexpected error")


def test_a_handler_result_is_printed_as_ascii_json():
    code, output = _run(lambda inv: {"cniVersion": inv.cni_version, "note": "\u00e9t\u00e9"})

    assert (code, output) == (0, {"cniVersion": "0.4.0", "note": "\u00e9t\u00e9"})


def test_a_closed_stdout_is_an_exit_code_not_a_crash():
    class Closed(io.BytesIO):
        def write(self, data):
            raise BrokenPipeError("closed")

    assert _run(lambda inv: {"cniVersion": "0.4.0"}, stdout=Closed())[0] == 1


def test_a_command_the_plugin_lacks_is_invalid_environment():
    out = io.BytesIO()

    code = main({}, plugin="test", environ=ENV, stdin=io.BytesIO(CONFIG), stdout=out)

    assert code == 1 and json.loads(out.getvalue())["code"] == 4


def test_the_file_log_gets_the_traceback_of_unexpected_errors(tmp_path):
    from cni.config_values import LogSettings

    log_path = tmp_path / "x.log"

    def handler(invocation):
        raise ZeroDivisionError("boom")

    code = main(
        {"ADD": handler},
        plugin="test",
        log_settings=lambda c: LogSettings(path=str(log_path)),
        environ=ENV,
        stdin=io.BytesIO(CONFIG),
        stdout=io.BytesIO(),
    )

    assert code == 1
    assert "Traceback" in log_path.read_text() and "ZeroDivisionError: boom" in log_path.read_text()


# -- agent client --------------------------------------------------------------------------------------------


def test_client_times_out_on_an_agent_that_never_answers(short_tmp):
    path = str(short_tmp / "mute.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(errors.AgentUnreachable) as caught:
            AgentClient(path).call("GET", "/v1/ipam/healthy", timeout=0.3)
        assert time.monotonic() - started < 5
        assert "timed out" in str(caught.value)
    finally:
        server.close()
        for conn, _ in accepted:
            conn.close()
        os.unlink(path)


def test_client_decodes_json_and_raises_agent_errors(agent):
    client = AgentClient(agent.socket_path)
    agent.answer("POST", "/v1/ipam/gc", 200, {"released": 3})
    assert client.call("POST", "/v1/ipam/gc", {"validAttachments": []}) == {"released": 3}
    agent.answer("POST", "/v1/ipam/gc", 409, {"code": "conflict", "message": "busy", "details": {"n": 1}})

    with pytest.raises(errors.AgentError) as caught:
        client.call("POST", "/v1/ipam/gc", {})

    assert (caught.value.status, caught.value.code, caught.value.message, caught.value.details) == (
        409,
        "conflict",
        "busy",
        {"n": 1},
    )
    assert agent.calls("POST", "/v1/ipam/gc")[0].body == {"validAttachments": []}


# -- packaging -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["spiderpool", "coordinator", "ifacer"])
def test_packaged_executable_is_a_755_script_with_the_right_entry_point(name, executables):
    path = executables[name]

    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    text = path.read_text(encoding="utf-8")
    shebang = "#!/usr/bin/python3 -IS\n" if Path("/usr/bin/python3").exists() else "#!/usr/bin/env python3\n"
    assert text.startswith(shebang)
    assert f"from cni.{name} import run" in text
    modules = embedded_sources(path)
    assert {"cni", "cni.dispatch", f"cni.{name}"} <= set(modules)
    assert "cni.package" not in modules
    source = Path(__file__).resolve().parents[2] / "cni" / f"{name}.py"
    assert modules[f"cni.{name}"] == source.read_text(encoding="utf-8")


def test_executable_compiles_the_embedded_source_when_the_bytecode_is_for_another_python(executables, tmp_path):
    # Given an executable whose bytecode tag names no interpreter (as on a node with another python3 minor)
    path = tmp_path / "spiderpool"
    text = executables["spiderpool"].read_text(encoding="utf-8")
    path.write_text(text.replace(f"_TAG = {sys.implementation.cache_tag!r}", "_TAG = 'cpython-00'", 1))
    path.chmod(0o755)

    # When it runs
    done = subprocess.run([str(path)], input=b'{"cniVersion":"0.4.0"}', env={"CNI_COMMAND": "VERSION"},
                          capture_output=True, timeout=60)

    # Then it still answers, from the source
    assert "_TAG = 'cpython-00'" in path.read_text() and done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["cniVersion"] == "0.4.0"


@pytest.mark.parametrize("name", ["spiderpool", "coordinator"])
def test_executable_start_up_imports_no_heavy_module(executables, name):
    # The modules whose import dominated an executable's start-up (see cni/package.py and cni/jsontext.py); os and
    # collections.abc are not imported by a bare `python3 -I -S`, and cost ~1 ms together
    done = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", str(executables[name])],
                          input=b'{"cniVersion":"1.0.0"}', env={"CNI_COMMAND": "VERSION"}, capture_output=True,
                          timeout=60)
    imported = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines() if "|" in line}

    assert done.returncode == 0 and f"cni.{name}" in imported
    assert imported.isdisjoint({"json", "re", "logging", "dataclasses", "ipaddress", "socket", "runpy", "copy",
                                "os", "_collections_abc", "collections"})


def test_package_cli_needs_an_output_directory(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cni.package"],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )

    assert done.returncode == 2 and "usage" in done.stderr


def _find_python(version):
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")))
    for candidate in filter(None, candidates):
        try:
            if subprocess.run([candidate, "-c", "pass"], capture_output=True, timeout=30).returncode == 0:
                return candidate
        except OSError:
            continue
    return None


def test_executable_runs_on_python_3_9(executables, agent, configs):
    python39 = _find_python("3.9")
    if python39 is None:
        pytest.skip("no python3.9 on this machine")
    env = dict(
        ENV, CNI_ARGS="K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0", PATH="/usr/bin:/bin", CNI_NETNS="/proc/self/ns/net"
    )
    config = json.dumps(configs.ipam("1.1.0", agent.socket_path)).encode()

    done = subprocess.run(
        [python39, str(executables["spiderpool"])], input=config, env=env, capture_output=True, timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ips"][0]["address"] == "10.6.0.21/16"


def test_executable_on_too_old_python_prints_a_cni_error(executables):
    python38 = _find_python("3.8")
    if python38 is None:
        pytest.skip("no python3.8 on this machine")

    done = subprocess.run(
        [python38, str(executables["spiderpool"])], env={"CNI_COMMAND": "VERSION"}, capture_output=True, timeout=60
    )

    assert done.returncode == 1
    assert json.loads(done.stdout)["msg"] == "spiderpool needs python3 >= 3.9, found 3.8"


def test_the_process_environment_is_read_as_os_environ_has_it():
    from cni.dispatch import process_environ

    assert process_environ() == dict(os.environ)


@pytest.mark.parametrize(("path", "exists"), [("", False), ("/", True), ("/no/such/netns", False), ("/a\0b", False)])
def test_path_exists_answers_as_os_path_exists(path, exists):
    from cni.invocation import path_exists

    assert path_exists(path) is exists is (bool(path) and "\0" not in path and os.path.exists(path))
