"""The agent's socket API: HTTP/1.1 with JSON bodies over a unix socket (agent/README.md, agent/openapi.yaml).

Two layers. :class:`SocketAPI` is transport-free: it routes ``(method, path)`` to the services, bounds the work in
flight (:mod:`agent.admission`), records metrics and turns every exception into ``{"code","message","details"}``
with the status of :mod:`agent.errors` (never a traceback). :class:`UnixHTTPServer` is the standard library's
threading HTTP server bound to an ``AF_UNIX`` socket instead of TCP.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import socketserver
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from agent.admission import Admission
from agent.coordination import CoordinatorService
from agent.errors import error_body, http_status
from agent.ipam import IpamService
from agent.metrics import AgentMetrics
from agent.netlink.errors import NetlinkError
from spiderweb.engine.errors import IPAMError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
REASONS = {521: "Forbid Release Stateless", 522: "Forbid Release Stateful"}


@dataclass(frozen=True)
class ApiRequest:
    """One decoded request: ``body`` is the parsed JSON (``None`` when empty)."""

    method: str
    path: str
    query: dict[str, str]
    body: object


@dataclass(frozen=True)
class Route:
    """``admitted`` routes take a slot of the admission queue; ``metric`` names the Prometheus operation."""

    method: str
    path: str
    handler: Callable[[ApiRequest], object]
    admitted: bool = True
    metric: str | None = None


class SocketAPI:
    """Routing, admission, metrics and error mapping of the socket API."""

    def __init__(self, *, ipam: IpamService, coordinator: CoordinatorService, admission: Admission,
                 metrics: AgentMetrics) -> None:
        self.admission = admission
        self.metrics = metrics
        self.serving = True
        routes = [
            Route("GET", "/v1/ipam/healthy", self._healthy, admitted=False),
            Route("POST", "/v1/ipam/ip", lambda r: ipam.add(r.body), metric="allocation"),
            Route("DELETE", "/v1/ipam/ip", lambda r: ipam.delete(r.body), metric="release"),
            Route("DELETE", "/v1/ipam/ips", lambda r: ipam.delete_all(r.body), metric="release"),
            Route("GET", "/v1/workloadendpoint", lambda r: ipam.workloadendpoint(r.query)),
            Route("POST", "/v1/ipam/gc", lambda r: ipam.gc(r.body)),
            Route("GET", "/v1/coordinator/config", lambda r: coordinator.config(r.query, r.body)),
            Route("POST", "/v1/coordinator/add", lambda r: coordinator.add(r.body)),
            Route("POST", "/v1/coordinator/del", lambda r: coordinator.delete(r.body)),
            Route("POST", "/v1/coordinator/check", lambda r: coordinator.check(r.body)),
            Route("POST", "/v1/ifacer/add", lambda r: coordinator.ifacer_add(r.body)),
        ]
        self.routes = {(route.method, route.path): route for route in routes}

    def _healthy(self, request: ApiRequest) -> None:
        if not self.serving:
            raise _Answer(503, {"code": "unavailable", "message": "the agent is shutting down", "details": {}})
        return None

    def handle(self, method: str, target: str, raw_body: bytes) -> tuple[int, object]:
        """Serve one request; return ``(status, JSON-able body or None)``. Never raises."""
        parts = urlsplit(target)
        try:
            route = self._route(method, parts.path)
            request = ApiRequest(method, parts.path, dict(parse_qsl(parts.query)), _decode(raw_body))
            if not route.admitted:
                return 200, route.handler(request)
            return 200, self._admitted(route, request)
        except _Answer as answer:
            return answer.status, answer.body
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error body, never a traceback
            return _error_answer(exc, method, parts.path)

    def _route(self, method: str, path: str) -> Route:
        route = self.routes.get((method, path))
        if route is not None:
            return route
        allowed = sorted(m for m, p in self.routes if p == path)
        if allowed:
            raise _Answer(405, {"code": "method_not_allowed", "message": f"{method} {path} is not served; use "
                                f"{', '.join(allowed)}", "details": {"allowed": allowed}})
        raise _Answer(404, {"code": "not_found", "message": f"no such API path: {path}", "details": {}})

    def _admitted(self, route: Route, request: ApiRequest) -> object:
        started = time.monotonic()
        waited: float | None = None
        error_code: str | None = None
        try:
            with self.admission.slot() as waited:
                return route.handler(request)
        except Exception as exc:
            error_code = str(getattr(exc, "code", "internal"))
            raise
        finally:
            if route.metric == "allocation":
                self.metrics.record_allocation(seconds=time.monotonic() - started, waited=waited,
                                               error_code=error_code)
            elif route.metric == "release":
                self.metrics.record_release(seconds=time.monotonic() - started, waited=waited,
                                            error_code=error_code)


class _Answer(Exception):
    """A ready-made answer raised from inside routing (404, 405, 503 while draining, bad JSON)."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


def _decode(raw: bytes) -> object:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Answer(400, {"code": "invalid_input", "message": f"the body is not JSON: {exc}", "details": {}}) \
            from exc


def _error_answer(exc: Exception, method: str, path: str) -> tuple[int, dict]:
    if isinstance(exc, IPAMError):
        fallback = getattr(exc, "status", 500)
        status = http_status(exc.code, fallback if fallback in (400, 403, 404, 409, 503) else 500)
        log.log(logging.WARNING if status >= 500 else logging.INFO, "%s %s -> %d %s: %s", method, path, status,
                exc.code, exc.message)
        return status, error_body(exc)
    if isinstance(exc, NetlinkError):
        log.warning("%s %s -> 500 %s: %s", method, path, exc.code, exc.message)
        return 500, error_body(exc)
    log.error("%s %s failed unexpectedly", method, path, exc_info=True)
    return 500, {"code": "internal", "message": f"internal error: {type(exc).__name__}: {exc}", "details": {}}


# ------------------------------------------------------------------------------------------------ transport


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "spiderweb-agent"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection (or a stalled client) frees its thread after this

    server: UnixHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's naming
        self._serve()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET  # noqa: N815

    def _serve(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._reply(411, {"code": "invalid_input", "message": "send the body with Content-Length",
                              "details": {}}, close=True)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._reply(413, {"code": "invalid_input", "message": f"the body must be 0..{MAX_BODY_BYTES} bytes",
                              "details": {}}, close=True)
            return
        raw = self.rfile.read(length) if length else b""
        status, body = self.server.api.handle(self.command, self.path, raw)
        self._reply(status, body)

    def _reply(self, status: int, body: object, *, close: bool = False) -> None:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status, REASONS.get(status))
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        try:
            self.end_headers()
            if payload:  # a zero-byte write to a peer that already closed would raise EPIPE for nothing
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            log.info("%s %s: the client left before its %d answer was written", self.command, self.path, status)
            self.close_connection = True

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
        log.debug("socket: " + format, *args)


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Threaded HTTP server on a unix socket (mode 0600); a stale socket file is removed first."""

    daemon_threads = True
    block_on_close = False
    # listen(2) backlog. The standard library's 5 makes connect() on a unix socket fail at once with EAGAIN when a
    # node starts a burst of pods (a CNI client does not wait for a slot); the admission queue is the real bound.
    request_queue_size = 1024

    def __init__(self, path: str, api: SocketAPI) -> None:
        self.api = api
        self.path = path
        _prepare_socket_path(path)
        super().__init__(path, _Handler)
        os.chmod(path, 0o600)
        self._inode = os.stat(path).st_ino

    def server_close(self) -> None:
        super().server_close()
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass


def _prepare_socket_path(path: str) -> None:
    """Create the directory; remove a socket nobody listens on; refuse to steal a live one or clobber a file."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # stale: left by an agent that died
        return
    finally:
        probe.close()
    raise OSError(f"another process is serving {path}; stop it first")
