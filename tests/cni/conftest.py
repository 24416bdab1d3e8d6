"""Fixtures for the CNI executables: packaged zipapps, a fake agent on a unix socket, and a runtime-like runner.

The fake agent implements the agent's socket API contract (agent/README.md) with canned answers and records
every request, so the tests check the protocol logic of the executables; end-to-end runs against the real
agent live in another suite. Executables are run exactly as a runtime runs them: the packaged file is
executed directly, with CNI_* in a minimal environment and the network config on stdin.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    # The executables' package must be importable for the in-process unit tests whatever pytest's rootdir.
    sys.path.insert(0, str(REPO_ROOT))

VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LEGACY_VERSIONS = ("0.3.0", "0.3.1", "0.4.0")
POD_ARGS = (
    "IgnoreUnknown=1;K8S_POD_NAMESPACE=team-a;K8S_POD_NAME=web-0;K8S_POD_UID=1f0c4a8e-2b7d-4c55-9a8e-0d5b7c1e2f3a;"
    "K8S_POD_INFRA_CONTAINER_ID=4e9f0c1d2b3a"
)
POD_UID = "1f0c4a8e-2b7d-4c55-9a8e-0d5b7c1e2f3a"
CONTAINER_ID = "4e9f0c1d2b3a"

# The agent's IpamAddResponse for a pod with two NICs (eth0 dual-stack, net1 IPv4).
ALLOCATION = {
    "ips": [
        {"version": 4, "address": "10.6.0.21/16", "nic": "eth0", "ipPool": "v4-pool", "gateway": "10.6.0.1", "vlan": 0},
        {"version": 6, "address": "fd00:6::21/64", "nic": "eth0", "ipPool": "v6-pool", "gateway": "fd00:6::1"},
        {"version": 4, "address": "10.7.0.33/24", "nic": "net1", "ipPool": "net1-pool"},
    ],
    "routes": [
        {"ifName": "eth0", "dst": "10.96.0.0/12", "gw": "10.6.0.254"},
        {"ifName": "net1", "dst": "172.16.0.0/16", "gw": "10.7.0.1"},
    ],
    "dns": {"nameservers": ["10.6.0.53"], "search": ["team-a.svc.cluster.local"]},
}

# What a main plugin (macvlan) hands to coordinator as prevResult, in 1.x shape.
PREV_RESULT = {
    "interfaces": [{"name": "eth0", "mac": "02:42:0a:06:00:15", "sandbox": "/var/run/netns/cni-1"}],
    "ips": [
        {"address": "10.6.0.21/16", "gateway": "10.6.0.1", "interface": 0},
        {"address": "fd00:6::21/64", "gateway": "fd00:6::1", "interface": 0},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.6.0.1"}],
    "dns": {},
}


def legacy_shape(result: dict, version: str) -> dict:
    """``result`` as a runtime speaking ``version`` expects it (``ips[].version`` before 1.0.0)."""
    converted = copy.deepcopy(result)
    converted["cniVersion"] = version
    for entry in converted.get("ips", []):
        entry.pop("version", None)
        if version in LEGACY_VERSIONS:
            entry["version"] = "6" if ":" in entry["address"] else "4"
    return converted


@dataclass
class AgentRequest:
    """One request the fake agent received."""

    method: str
    path: str
    body: object


@dataclass
class FakeAgent:
    """A stdlib HTTP server on a unix socket answering the agent API with canned (overridable) answers."""

    socket_path: str
    requests: list = field(default_factory=list)
    answers: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # -- configuration used by tests ---------------------------------------------------------------------
    def answer(self, method: str, path: str, status: int, body: object = None) -> None:
        """Override the answer for ``method path``: a JSON-able body, raw ``bytes``, or a callable(request)."""
        self.answers[(method, path)] = (status, body)

    def calls(self, method: str | None = None, path: str | None = None) -> list:
        with self._lock:
            return [
                r for r in self.requests if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
        self.answers.clear()

    # -- the contract's default answers ------------------------------------------------------------------
    def default_answer(self, request: AgentRequest) -> tuple[int, object]:
        key = (request.method, request.path)
        body = request.body if isinstance(request.body, dict) else {}
        if key == ("GET", "/v1/ipam/healthy"):
            return 200, b""
        if key == ("POST", "/v1/ipam/ip"):
            missing = _missing(body, ("containerID", "ifName", "netNamespace", "podNamespace", "podName", "podUID"))
            if missing or not all(isinstance(body.get(k), list) for k in ("defaultIPv4IPPool", "defaultIPv6IPPool")):
                return 400, {"code": "invalid_input", "message": f"IpamAddArgs invalid: missing {missing}"}
            return 200, ALLOCATION
        if key == ("DELETE", "/v1/ipam/ip"):
            missing = _missing(body, ("containerID", "ifName", "podNamespace", "podName", "podUID"))
            if missing:
                return 400, {"code": "invalid_input", "message": f"IpamDelArgs invalid: missing {missing}"}
            return 200, b""
        if key == ("POST", "/v1/ipam/gc"):
            if not isinstance(body.get("validAttachments"), list):
                return 400, {"code": "invalid_input", "message": "validAttachments required"}
            return 200, {"released": 0}
        if key in (("POST", "/v1/coordinator/add"), ("POST", "/v1/coordinator/del"), ("POST", "/v1/coordinator/check")):
            required = ["containerID", "netNamespace", "ifName", "podNamespace", "podName", "cniVersion", "config"]
            if key[1].endswith("/add"):
                required.append("prevResult")
            missing = _missing(body, required)
            if missing:
                return 400, {"code": "invalid_input", "message": f"coordinator args invalid: missing {missing}"}
            if key[1].endswith("/add"):
                result = copy.deepcopy(body["prevResult"])
                result.setdefault("interfaces", []).append({"name": "veth0", "sandbox": body["netNamespace"]})
                for entry in result.get("ips", []):
                    entry.pop("version", None)  # the agent answers in 1.x shape; the CNI converts
                return 200, {"result": result}
            return 200, {}
        if key == ("POST", "/v1/ifacer/add"):
            if not isinstance(body.get("config"), dict):
                return 400, {"code": "invalid_input", "message": "config required"}
            return 200, {"result": {"cniVersion": "1.1.0"}}
        return 404, {"code": "not_found", "message": f"no route {request.method} {request.path}"}

    def handle(self, request: AgentRequest) -> tuple[int, object]:
        with self._lock:
            self.requests.append(request)
        override = self.answers.get((request.method, request.path))
        if override is None:
            return self.default_answer(request)
        status, body = override
        return (status, body(request)) if callable(body) else (status, body)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # the default one indexes client_address, which is '' on unix sockets
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                status, answer = agent.handle(AgentRequest(self.command, self.path, body))
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (e.g. a timeout test); nothing to answer
                self.close_connection = True

            do_GET = do_POST = do_DELETE = do_PUT = _serve

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(self.socket_path, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)


def _missing(body: dict, keys) -> list:
    return [k for k in keys if k not in body or body[k] is None]


@dataclass
class CniRun:
    """The outcome of one executable run, as a runtime would see it."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> object:
        return json.loads(self.stdout) if self.stdout.strip() else None

    def error(self) -> dict:
        """The CNI error object; asserts the run failed the CNI way (exit 1, one well-formed object)."""
        assert self.returncode == 1, (self.returncode, self.stdout, self.stderr)
        out = self.output
        assert isinstance(out, dict) and set(out) == {"cniVersion", "code", "msg", "details"}, self.stdout
        assert isinstance(out["code"], int) and isinstance(out["msg"], str) and isinstance(out["details"], str)
        assert "Traceback" not in self.stdout + self.stderr
        return out

    def ok(self) -> object:
        assert self.returncode == 0, (self.returncode, self.stdout, self.stderr)
        assert "Traceback" not in self.stdout + self.stderr
        return self.output


@pytest.fixture(scope="session")
def short_tmp():
    """A short directory for unix sockets (``sun_path`` is 108 bytes; pytest's tmp paths can be longer)."""
    path = tempfile.mkdtemp(prefix="swcni-", dir="/tmp")
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def python_bin(tmp_path_factory):
    """A PATH entry whose ``python3`` is this interpreter, like a node's /usr/bin (and free of shim overhead)."""
    directory = tmp_path_factory.mktemp("pybin")
    (directory / "python3").symlink_to(sys.executable)
    return directory


@pytest.fixture(scope="session")
def executables(tmp_path_factory):
    """The three executables, packaged by ``python -m cni.package OUTDIR`` exactly as an installer would."""
    outdir = tmp_path_factory.mktemp("cni-bin")
    done = subprocess.run(
        [sys.executable, "-m", "cni.package", str(outdir)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return {name: outdir / name for name in ("spiderpool", "coordinator", "ifacer")}


@pytest.fixture
def agent(short_tmp):
    """A running fake agent; its socket path goes into the configs under test."""
    fake = FakeAgent(str(Path(tempfile.mkdtemp(dir=short_tmp)) / "agent.sock"))
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def module_agent(short_tmp):
    """One fake agent for many examples (hypothesis); callers ``reset()`` it per example."""
    fake = FakeAgent(str(Path(tempfile.mkdtemp(dir=short_tmp)) / "agent.sock"))
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def netns(tmp_path):
    """A path standing in for the pod's netns file (coordinator checks that it exists on DEL)."""
    path = tmp_path / "netns-cni-1"
    path.write_text("")
    return str(path)


@pytest.fixture(scope="session")
def pod_netns(tmp_path_factory):
    """The default ``CNI_NETNS`` of ``run_cni``: an existing file (the plugins refuse an ADD for a missing netns)."""
    path = tmp_path_factory.mktemp("netns") / "cni-1"
    path.write_text("")
    return str(path)


@pytest.fixture
def run_cni(executables, python_bin, pod_netns):
    """Run a packaged executable the way a runtime does; returns ``CniRun``.

    ``config`` (a dict) or ``stdin`` (bytes) is the network config; ``env`` overrides/extends the CNI_*
    variables; ``unset`` names variables to leave out.
    """

    def run(
        plugin,
        command,
        config=None,
        *,
        stdin=None,
        env=None,
        unset=(),
        netns=None,
        ifname="eth0",
        args=POD_ARGS,
        container_id=CONTAINER_ID,
        timeout=60,
    ):
        environ = {
            "PATH": f"{python_bin}:/usr/bin:/bin",
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": pod_netns if netns is None else netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": args,
            "CNI_PATH": "/opt/cni/bin",
        }
        environ.update(env or {})
        for name in unset:
            environ.pop(name, None)
        data = stdin if stdin is not None else json.dumps(config if config is not None else {}).encode()
        done = subprocess.run([str(executables[plugin])], input=data, env=environ, capture_output=True, timeout=timeout)
        return CniRun(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"))

    return run


def ipam_config(version: str, socket_path: str, **ipam) -> dict:
    """A main-plugin config using the spiderpool IPAM plugin (what the IPAM plugin receives on stdin)."""
    section = {"type": "spiderpool", "ipam_unix_socket_path": socket_path}
    section.update(ipam)
    return {"cniVersion": version, "name": "macvlan-underlay", "type": "macvlan", "master": "eth1", "ipam": section}


def coordinator_config(version: str, socket_path: str, *, prev: dict | None = None, **keys) -> dict:
    config = {"cniVersion": version, "name": "macvlan-underlay", "type": "coordinator", "unix_socket_path": socket_path}
    config.update(keys)
    if prev is not None:
        config["prevResult"] = prev
    return config


def ifacer_config(version: str, socket_path: str, **keys) -> dict:
    config = {
        "cniVersion": version,
        "name": "macvlan-underlay",
        "type": "ifacer",
        "unix_socket_path": socket_path,
        "interfaces": ["ens192"],
        "vlanID": 100,
    }
    config.update(keys)
    return config


@pytest.fixture
def configs():
    """The config builders, as a fixture so test modules need not import conftest."""

    class Builders:
        ipam = staticmethod(ipam_config)
        coordinator = staticmethod(coordinator_config)
        ifacer = staticmethod(ifacer_config)
        legacy_shape = staticmethod(legacy_shape)

    return Builders


@pytest.fixture
def dead_socket(short_tmp):
    """A socket path nothing listens on: a stale socket file left by a dead agent (connect is refused)."""
    path = str(Path(tempfile.mkdtemp(dir=short_tmp)) / "stale.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()
    return path
