"""A tiny HTTP/1.1 JSON client for the agent's unix socket (see agent/README.md for the API).

One request per connection (``Connection: close``): write the request, read until the agent closes, split the
status line, headers and body. That is all a CNI call needs, and it spares every CNI invocation the import of
``http.client`` (which pulls in ``email`` and ``ssl``: a third of the executable's start-up time).
"""

from __future__ import annotations

from _socket import AF_UNIX, SOCK_STREAM, socket

from cni import errors, jsontext, logs
from cni.errors import AgentBadResponse, AgentError, AgentUnreachable, agent_code_for_http_status

DEFAULT_SOCKET_PATH = "/var/run/spidernet/spiderpool.sock"
# Spiderpool's DefaultCNIClientTimeout: allocation may wait on auto-pool creation, so ADD/DEL get 100 s.
CALL_TIMEOUT_SECONDS = 100.0
# A health probe that needs more than this is as good as a dead agent.
HEALTH_TIMEOUT_SECONDS = 30.0
# No agent answer is this large; the cap stops a broken peer from eating the node's memory.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024

log = logs.Logger("cni.agent")


class _BadAnswer(Exception):
    """The bytes the agent sent are not an HTTP answer."""


def _http_over_unix(socket_path: str, timeout: float, request: bytes) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request on a unix stream socket and return (status, body) once the agent closes."""
    sock = socket(AF_UNIX, SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
        sock.sendall(request)
        chunks, size = [], 0
        while size <= MAX_RESPONSE_BYTES + 65536:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            size += len(data)
    finally:
        sock.close()
    return _parse_answer(b"".join(chunks))


def _parse_answer(raw: bytes) -> tuple[int, bytes]:
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        raise _BadAnswer("incomplete HTTP answer" if raw else "empty answer (connection closed)")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise _BadAnswer(f"not an HTTP status line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    elif b"content-length" in headers and headers[b"content-length"].isdigit():
        body = body[: int(headers[b"content-length"])]
    return int(parts[1]), body


def _dechunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


class AgentClient:
    """Calls the agent and returns decoded JSON, raising ``AgentUnreachable``/``AgentError``/``AgentBadResponse``.

    Callers never see socket or parsing exceptions, so the mapping to CNI codes stays in one place.
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
            payload = jsontext.dumps(body).encode("ascii")
            headers["Content-Type"] = "application/json"
        log.debug("agent request %s %s %s", method, path, payload.decode("ascii") if payload else "")
        headers["Host"] = "localhost"
        headers["Content-Length"] = str(len(payload or b""))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        try:
            status, raw = _http_over_unix(self.socket_path, timeout, head.encode("latin-1") + (payload or b""))
        except (OSError, _BadAnswer) as exc:
            # OSError covers a missing socket file, refused/reset connections and socket timeouts.
            raise AgentUnreachable(f"{method} {path} via {self.socket_path}: {_describe(exc)}") from exc
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
        return jsontext.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AgentBadResponse(f"{method} {path}: answer is not JSON: {exc}") from exc


def _error_from_answer(status: int, raw: bytes) -> AgentError:
    """Read the agent's ``{"code","message","details"}``; tolerate Spiderpool's plain-string ``Error`` too."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = jsontext.loads(text) if text else None
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
