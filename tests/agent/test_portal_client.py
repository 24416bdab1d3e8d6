"""The portal client's transport rules: retries, backoff, error mapping, keep-alive reuse, stale connections.

These exercise the HTTP behaviour only, so the "portal" is a scripted local HTTP server that answers each request
with the next scripted status and body; the end-to-end tests use the real portal.
"""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
import time

import pytest

from agent.errors import PortalError, PortalUnavailable
from agent.portal import PortalClient
from tests.agent.conftest import free_port


class Scripted(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: list) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script = list(script)
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.connections = 0

    def process_request(self, request, client_address):
        self.connections += 1
        super().process_request(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Scripted

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        status, answer, *flags = self.server.script.pop(0)
        if "slow" in flags:
            time.sleep(0.5)
        payload = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if "drop" in flags:
            self.close_connection = True  # close without telling the client: its pooled connection goes stale

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(script: list) -> Scripted:
        server = Scripted(script)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def client(url: str, **kwargs) -> tuple[PortalClient, list[float]]:
    delays: list[float] = []
    kwargs.setdefault("retries", 3)
    return PortalClient(url, "swn_abc.secret", backoff=0.1, sleep=delays.append, **kwargs), delays


def test_calls_carry_the_token_and_json(serve):
    server = serve([(200, {"released": ["10.0.0.1"]})])
    portal, _ = client(server.url)
    assert portal.release(namespace="ns", name="p", uid="u", if_name="eth0", container_id="c",
                          pod_dead=True) == ["10.0.0.1"]
    method, path, headers, body = server.requests[0]
    assert (method, path, headers["Authorization"]) == ("POST", "/api/internal/v1/ipam/release",
                                                        "Bearer swn_abc.secret")
    assert json.loads(body) == {"podNamespace": "ns", "podName": "p", "podUID": "u", "ifName": "eth0",
                                "containerID": "c", "podDead": True}


def test_transient_statuses_are_retried_with_growing_jittered_backoff(serve):
    server = serve([(503, {"code": "unavailable", "message": "racing"}), (502, b"bad gateway"), (504, b""),
                    (200, {"mode": "auto"})])
    portal, delays = client(server.url)
    assert portal.coordinator_config() == {"mode": "auto"}
    assert len(server.requests) == 4
    assert [0.05 <= d <= 0.1 for d in delays[:1]] == [True]
    assert 0.1 <= delays[1] <= 0.2 and 0.2 <= delays[2] <= 0.4


def test_after_the_retries_the_portal_is_unavailable_with_its_last_reason(serve):
    server = serve([(503, {"code": "unavailable", "message": "SpiderCoordinator default is Pending"})] * 2)
    portal, _ = client(server.url, retries=1)
    with pytest.raises(PortalUnavailable, match="after 2 attempt.*Pending") as caught:
        portal.coordinator_config()
    assert caught.value.code == "unavailable"


@pytest.mark.parametrize(("status", "body", "code", "message"), [
    (400, {"code": "invalid_input", "message": "bad annotation", "details": {"k": 1}}, "invalid_input",
     "bad annotation"),
    (409, {"code": "ip_exhausted", "message": "all IP addresses used out"}, "ip_exhausted",
     "all IP addresses used out"),
    (401, {"detail": "invalid node token"}, "forbidden", "portal refused the node token: invalid node token"),
    (404, b"<html>Not Found</html>", "not_found", "portal answered HTTP 404"),
])
def test_refusals_are_never_retried_and_keep_the_portals_words(serve, status, body, code, message):
    server = serve([(status, body)])
    portal, delays = client(server.url)
    with pytest.raises(PortalError) as caught:
        portal.coordinator_config()
    assert (caught.value.code, caught.value.message, caught.value.status) == (code, message, status)
    assert (len(server.requests), delays) == (1, [])


def test_connection_refused_is_retried_then_unavailable():
    portal, delays = client(f"http://127.0.0.1:{free_port()}", retries=2)
    with pytest.raises(PortalUnavailable, match="ConnectionRefusedError"):
        portal.coordinator_config()
    assert len(delays) == 2


def test_a_timeout_is_not_retried(serve):
    server = serve([(200, {}, "slow")])
    portal, delays = client(server.url, timeout=0.1)
    with pytest.raises(PortalUnavailable, match="did not answer"):
        portal.coordinator_config()
    assert delays == []


def test_keep_alive_connections_are_reused(serve):
    server = serve([(200, {"mode": "auto"})] * 5)
    portal, _ = client(server.url)
    for _ in range(5):
        portal.coordinator_config()
    assert server.connections == 1


def test_a_connection_the_portal_closed_while_idle_is_replaced_without_using_a_retry(serve):
    server = serve([(200, {"mode": "a"}, "drop"), (200, {"mode": "b"})])
    portal, delays = client(server.url, retries=0)
    assert portal.coordinator_config() == {"mode": "a"}
    time.sleep(0.05)
    assert portal.coordinator_config() == {"mode": "b"}
    assert (server.connections, delays) == (2, [])


def test_an_idle_connection_older_than_the_limit_is_closed_instead_of_reused(serve):
    # Given a client that keeps idle connections for 50 ms (the chart: 60 s, below the portal's 75 s keep-alive)
    server = serve([(200, {"mode": "a"}), (200, {"mode": "b"}), (200, {"mode": "c"})])
    portal, delays = client(server.url, retries=0, max_idle_seconds=0.05)
    portal.coordinator_config()
    portal.coordinator_config()
    assert server.connections == 1

    # When the next call comes after the connection sat idle longer than that
    time.sleep(0.1)
    assert portal.coordinator_config() == {"mode": "c"}

    # Then it went out on a new connection, without a failed attempt first
    assert (server.connections, delays) == (2, [])


@pytest.fixture
def tls_serve(serve, tmp_path):
    """``serve`` over TLS with a self-signed certificate for 127.0.0.1; yields (start, CA file)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=portal",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def start(script: list) -> Scripted:
        server = serve(script)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        return server

    return start, str(cert)


def test_a_tls_connection_the_portal_closed_is_replaced_without_a_retry_or_a_log_line(tls_serve, caplog):
    start, ca_file = tls_serve
    server = start([(200, {"mode": "a"}, "drop"), (200, {"mode": "b"})])
    portal, delays = client(f"https://127.0.0.1:{server.server_port}", retries=0, ca_file=ca_file)
    assert portal.coordinator_config() == {"mode": "a"}
    time.sleep(0.05)

    with caplog.at_level("INFO", logger="agent.portal"):
        assert portal.coordinator_config() == {"mode": "b"}

    assert (server.connections, delays, caplog.records) == (2, [], [])


def test_answers_that_break_the_contract_are_errors(serve):
    server = serve([(200, b"not json"), (200, {"nothing": 1})])
    portal, _ = client(server.url)
    with pytest.raises(PortalError, match="not JSON"):
        portal.coordinator_config()
    with pytest.raises(PortalError, match="without a 'released' list"):
        portal.gc(network="macvlan", valid_attachments=[])
