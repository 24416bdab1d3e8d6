"""Kubelet probes on TCP (spec §11.3): startup, readiness and liveness of the agent.

Readiness and liveness ask the unix socket's ``/v1/ipam/healthy`` exactly as a CNI executable would, so a wedged
socket server (full of stuck threads, socket file deleted) is seen as the CNI sees it.
"""

from __future__ import annotations

import http.client
import http.server
import logging
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

PATHS = ("/v1/runtime/startup", "/v1/runtime/readiness", "/v1/runtime/liveness")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def socket_healthy(path: str, timeout: float = 5.0) -> bool:
    """True when ``GET /v1/ipam/healthy`` on the unix socket ``path`` answers 200."""
    connection = _UnixConnection(path, timeout)
    try:
        connection.request("GET", "/v1/ipam/healthy", headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException) as exc:
        log.info("probe: agent socket %s not healthy: %s", path, exc)
        return False
    finally:
        connection.close()


class ProbeServer(http.server.ThreadingHTTPServer):
    """Serves the three probe paths; ``started`` is set once the socket API is up.

    ``ready()`` adds what readiness needs beyond a healthy socket (the node token): an agent without a token must
    not be killed by its liveness probe, only kept out of "ready".
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: str, port: int, socket_path: str, *,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.socket_path = socket_path
        self.ready = ready
        self.started = threading.Event()
        super().__init__((address, port), _ProbeHandler)


class _ProbeHandler(http.server.BaseHTTPRequestHandler):
    server: ProbeServer

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's naming
        path = self.path.split("?", 1)[0]
        if path not in PATHS:
            self._reply(404, b"not found\n")
        elif not self.server.started.is_set():
            self._reply(500, b"starting\n")
        elif path == "/v1/runtime/startup":
            self._reply(200, b"ok\n")
        elif not socket_healthy(self.server.socket_path):
            self._reply(500, b"agent socket is not healthy\n")
        elif path == "/v1/runtime/readiness" and not self.server.ready():
            self._reply(500, b"no node token yet\n")
        else:
            self._reply(200, b"ok\n")

    def _reply(self, status: int, text: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
        log.debug("probe: " + format, *args)
