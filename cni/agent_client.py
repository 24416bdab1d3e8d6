"""A tiny HTTP/1.1 JSON client for the agent's unix socket (see agent/README.md for the API).

``http.client`` already speaks HTTP/1.1 correctly; only the transport differs, so a connection subclass that
connects an ``AF_UNIX`` socket is all that is needed. One request per connection (``Connection: close``), as
the agent disables keep-alives and a CNI process makes at most a handful of calls.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket

from cni import errors
from cni.errors import AgentBadResponse, AgentError, AgentUnreachable, agent_code_for_http_status

DEFAULT_SOCKET_PATH = "/var/run/spidernet/spiderpool.sock"
# Spiderpool's DefaultCNIClientTimeout: allocation may wait on auto-pool creation, so ADD/DEL get 100 s.
CALL_TIMEOUT_SECONDS = 100.0
# A health probe that needs more than this is as good as a dead agent.
HEALTH_TIMEOUT_SECONDS = 30.0
# No agent answer is this large; the cap stops a broken peer from eating the node's memory.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024

log = logging.getLogger("cni.agent")


class UnixHTTPConnection(http.client.HTTPConnection):
    """An ``HTTPConnection`` whose transport is a unix stream socket instead of TCP."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        """Connect the unix socket; the timeout covers connecting and every later read."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class AgentClient:
    """Calls the agent and returns decoded JSON, raising ``AgentUnreachable``/``AgentError``/``AgentBadResponse``.

    Callers never see socket or ``http.client`` exceptions, so the mapping to CNI codes stays in one place.
    """

    def __init__(self, socket_path: str = DEFAULT_SOCKET_PATH, *, user_agent: str = "spiderweb-cni") -> None:
        self.socket_path = socket_path
        self.user_agent = user_agent

    def call(self, method: str, path: str, body: object = None, *, timeout: float = CALL_TIMEOUT_SECONDS) -> object:
        """Send one request and return the decoded JSON body of a 2xx answer (``{}`` when the body is empty)."""
        status, raw = self._exchange(method, path, body, timeout)
        if 200 <= status < 300:
            return _decode_success(method, path, raw)
        raise _error_from_answer(status, raw)

    def healthy(self) -> None:
        """``GET /v1/ipam/healthy``; raises unless the agent answers 2xx."""
        self.call("GET", "/v1/ipam/healthy", timeout=HEALTH_TIMEOUT_SECONDS)

    def _exchange(self, method: str, path: str, body: object, timeout: float) -> tuple[int, bytes]:
        payload = None
        headers = {"Accept": "application/json", "Connection": "close", "User-Agent": self.user_agent}
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode("ascii")
            headers["Content-Type"] = "application/json"
        log.debug("agent request %s %s %s", method, path, payload.decode("ascii") if payload else "")
        connection = UnixHTTPConnection(self.socket_path, timeout)
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read(MAX_RESPONSE_BYTES + 1)
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            # OSError covers a missing socket file, refused/reset connections and socket timeouts.
            raise AgentUnreachable(f"{method} {path} via {self.socket_path}: {_describe(exc)}") from exc
        finally:
            connection.close()
        if len(raw) > MAX_RESPONSE_BYTES:
            raise AgentBadResponse(f"{method} {path}: answer larger than {MAX_RESPONSE_BYTES} bytes")
        log.debug("agent answer %s %s -> %s %s", method, path, status, raw[:4096].decode("utf-8", "replace"))
        return status, raw


def require_available(client: AgentClient) -> None:
    """STATUS semantics shared by the three plugins: the agent's health check passes, or code 50.

    Every plugin needs the agent for ADD, so "agent down" means none of them can serve ADD right now.
    """
    try:
        client.healthy()
    except AgentUnreachable as exc:
        raise errors.cni_error_from_unreachable(exc, code=errors.PLUGIN_NOT_AVAILABLE) from exc
    except (AgentError, AgentBadResponse) as exc:
        raise errors.CNIError(errors.PLUGIN_NOT_AVAILABLE, f"spiderpool-agent is not healthy: {exc}") from exc


def _decode_success(method: str, path: str, raw: bytes) -> object:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AgentBadResponse(f"{method} {path}: answer is not JSON: {exc}") from exc


def _error_from_answer(status: int, raw: bytes) -> AgentError:
    """Read the agent's ``{"code","message","details"}``; tolerate Spiderpool's plain-string ``Error`` too."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = text
    fallback_code = agent_code_for_http_status(status)
    if isinstance(body, dict):
        code = body.get("code")
        message = body.get("message")
        return AgentError(
            status,
            code if isinstance(code, str) and code else fallback_code,
            message if isinstance(message, str) and message else f"spiderpool-agent answered HTTP {status}",
            body.get("details"),
        )
    if isinstance(body, str) and body:
        return AgentError(status, fallback_code, body[:2000])
    return AgentError(status, fallback_code, f"spiderpool-agent answered HTTP {status}")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
