"""Client of the portal's internal API (``/api/internal/v1/``, agent/README.md), authenticated by the node token.

Why ``http.client`` and a connection pool of our own: every pod start costs at least one portal round trip, and a
fresh TCP (or TLS) handshake per call would dominate it. Idle keep-alive connections are kept in a small LIFO pool
shared by the request threads (the socket server runs one short-lived thread per request, so a per-thread pool
would never be reused). An idle connection older than ``max_idle_seconds`` (shorter than the portal's keep-alive
timeout, ``spiderweb/gunicorn_conf.py``) is closed instead of reused, so the portal is not caught closing it in the
middle of a request. A connection that turns out to be stale all the same (the portal restarted, or closed it
early) is replaced and the request re-sent once at no cost to the retry budget and without a log line: over TLS
that is an ``SSLEOFError`` or a closed TLS session, not only a reset. Every portal call is idempotent (allocation is
keyed by pod UID and interface, release is UID-guarded), so re-sending is safe.

Retries: connection refused/reset and HTTP 502/503/504/429 are transient and retried with exponential backoff and
jitter; a timeout is not retried (a portal too slow to answer in time is only made slower by more load) and 4xx
answers never are. What is still failing afterwards raises :class:`PortalUnavailable` (HTTP 503 to the CNI, which
tells the runtime to try again later); a refusal raises :class:`PortalError` with the portal's code and message.
A 401 makes the token file be read again (:mod:`agent.node_token`) and, when it holds a new token, the call is
re-sent once with it, so a rotated token takes effect on the first refusal.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from agent.errors import PortalError, PortalUnavailable
from agent.node_token import NodeToken
from spiderweb.engine.facts import PodFacts

log = logging.getLogger(__name__)

API_PREFIX = "/api/internal/v1/"
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
AUTOPOOL_NOT_READY = "autopool_not_ready"  # the portal's code while a SpiderSubnet auto pool is missing or growing
MAX_BACKOFF_SECONDS = 5.0
MAX_BODY_BYTES = 16 * 1024 * 1024
_STATUS_CODES = {400: "invalid_input", 401: "forbidden", 403: "forbidden", 404: "not_found", 409: "conflict"}
# Failures of a reused keep-alive connection that mean "the portal closed it while idle", not "the portal is down".
_STALE = (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError, BrokenPipeError,
          ssl.SSLEOFError, ssl.SSLZeroReturnError)
# Below gunicorn's keepalive in spiderweb/gunicorn_conf.py (75 s): the client drops an idle connection first.
MAX_IDLE_SECONDS = 60.0


class _Pool:
    """Idle keep-alive connections, most recently used first (it is the least likely to have been closed)."""

    def __init__(self, factory: Callable[[], http.client.HTTPConnection], max_idle: int,
                 max_idle_seconds: float = MAX_IDLE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._factory = factory
        self._max_idle = max_idle
        self._max_idle_seconds = max_idle_seconds
        self._clock = clock
        self._idle: list[tuple[float, http.client.HTTPConnection]] = []  # (when it was given back, connection)
        self._lock = threading.Lock()

    def take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection and whether it was reused (an idle one) rather than new."""
        expired = []
        reused = None
        with self._lock:
            now = self._clock()
            # Newest first; once one is too old, every older one is too and the loop closes them all.
            while self._idle:
                since, connection = self._idle.pop()
                if now - since < self._max_idle_seconds:
                    reused = connection
                    break
                expired.append(connection)
        for connection in expired:
            connection.close()
        if reused is not None:
            return reused, True
        return self._factory(), False

    def new(self) -> http.client.HTTPConnection:
        """A fresh connection, bypassing the idle ones."""
        return self._factory()

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append((self._clock(), connection))
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, connection in idle:
            connection.close()


class PortalClient:
    """Typed calls of the internal API; thread-safe."""

    def __init__(
        self,
        base_url: str,
        token: str | NodeToken,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.2,
        ca_file: str | None = None,
        user_agent: str = "spiderweb-agent",
        max_idle: int = 8,
        max_idle_seconds: float = MAX_IDLE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"portal URL {base_url!r} must be http(s)://host[:port][/prefix]")
        self.base_url = base_url.rstrip("/")
        self._prefix = parts.path.rstrip("/") + API_PREFIX
        self.token = token if isinstance(token, NodeToken) else NodeToken(value=token)
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        host, port = parts.hostname, parts.port
        if parts.scheme == "https":
            context = ssl.create_default_context(cafile=ca_file)

            def factory() -> http.client.HTTPConnection:
                return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:

            def factory() -> http.client.HTTPConnection:
                return http.client.HTTPConnection(host, port, timeout=timeout)

        self._pool = _Pool(factory, max_idle, max_idle_seconds)

    # ---------------------------------------------------------------------------------------------- calls

    def allocate(self, *, facts: PodFacts, if_name: str, container_id: str, default_ipv4: list[str],
                 default_ipv6: list[str], clean_gateway: bool, cluster_network: str = "", network: str = "") -> dict:
        """``POST ipam/allocate``: the pod's ``IpamAddResponse`` (every NIC allocated so far).

        ``network`` is the conflist name the allocation is made through (CNI GC is scoped by it).
        """
        body = {
            "facts": facts.to_dict(),
            "ifName": if_name,
            "containerID": container_id,
            "cni": {
                "default_ipv4_ippool": list(default_ipv4),
                "default_ipv6_ippool": list(default_ipv6),
                "clean_gateway": clean_gateway,
            },
        }
        if cluster_network:
            body["clusterNetwork"] = cluster_network
        if network:
            body["network"] = network
        return self._object(self.request("POST", "ipam/allocate", body), "ipam/allocate")

    def release(self, *, namespace: str, name: str, uid: str, if_name: str, container_id: str,
                pod_dead: bool = False) -> list:
        """``POST ipam/release``: release this incarnation's addresses (UID-guarded, idempotent).

        ``pod_dead`` (Kubernetes says the pod will never be alive again) makes the portal refuse a later ADD of the
        sandbox, one that this DEL overtook on the way.
        """
        answer = self.request("POST", "ipam/release", {
            "podNamespace": namespace, "podName": name, "podUID": uid, "ifName": if_name,
            "containerID": container_id, "podDead": pod_dead,
        })
        return self._released(answer, "ipam/release")

    def release_pod(self, *, namespace: str, name: str, uid: str, is_release_conflict_ips: bool,
                    owner_kind: str) -> list:
        """``POST ipam/release-pod``: release every address of the pod (after an IP conflict, or a batch DEL)."""
        answer = self.request("POST", "ipam/release-pod", {
            "podNamespace": namespace, "podName": name, "podUID": uid,
            "isReleaseConflictIPs": is_release_conflict_ips, "ownerKind": owner_kind,
        })
        return self._released(answer, "ipam/release-pod")

    def coordinator_config(self) -> dict:
        """``GET coordinator/config``: the cluster's SpiderCoordinator as a ``CoordinatorConfig``."""
        return self._object(self.request("GET", "coordinator/config"), "coordinator/config")

    def workloadendpoint(self, *, namespace: str, name: str) -> dict:
        """``GET workloadendpoint``: the pod's ``WorkloadEndpointStatus`` (``PortalError`` not_found when none)."""
        answer = self.request("GET", "workloadendpoint", query={"podNamespace": namespace, "podName": name})
        return self._object(answer, "workloadendpoint")

    def gc(self, *, network: str, valid_attachments: list[dict]) -> list:
        """``POST ipam/gc``: release this node's allocations of ``network`` the runtime no longer has."""
        answer = self.request("POST", "ipam/gc", {"network": network, "validAttachments": valid_attachments})
        return self._released(answer, "ipam/gc")

    def close(self) -> None:
        """Close the idle connections."""
        self._pool.close()

    # ------------------------------------------------------------------------------------------ transport

    def request(self, method: str, path: str, body: Any = None, *, query: dict | None = None) -> Any:
        """Send one call with retries; return the decoded JSON answer of a 2xx (``None`` when empty)."""
        target = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = dict(self._headers)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        attempts = self.retries + 1
        token_retried = False
        attempt = 0
        while True:
            token = self.token.get()
            if not token:
                raise PortalUnavailable(f"no node token yet ({self.token.source} is missing or empty)")
            headers["Authorization"] = f"Bearer {token}"
            try:
                status, raw = self._exchange(method, target, payload, headers)
            except TimeoutError as exc:
                raise PortalUnavailable(f"portal {self.base_url} did not answer {method} {path} within "
                                        f"{self.timeout:g}s") from exc
            except OSError as exc:  # refused, reset, unreachable, DNS: the portal may be restarting
                problem = f"{type(exc).__name__}: {exc}"
            except http.client.HTTPException as exc:
                problem = f"broken HTTP answer: {type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    return _decode(raw, method, path)
                error = _portal_error(status, raw)
                if status == 401 and not token_retried:
                    self.token.invalidate()  # a rotated token may be waiting in the file: one more try with it
                    token_retried = True
                    if self.token.get() not in ("", token):
                        continue
                if status not in TRANSIENT_STATUS or error.code == AUTOPOOL_NOT_READY:
                    raise error  # an auto pool being made is waited for by the caller, on its own budget
                problem = f"HTTP {status} {error.code}: {error.message}"
            attempt += 1
            if attempt >= attempts:
                raise PortalUnavailable(f"portal {self.base_url} unavailable for {method} {path} after {attempts} "
                                        f"attempt(s): {problem}")
            delay = self._delay(attempt - 1)
            log.info("portal %s %s failed (%s); retry %d/%d in %.2fs", method, path, problem, attempt,
                     self.retries, delay)
            self._sleep(delay)

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so retries of many pods spread out."""
        ceiling = min(MAX_BACKOFF_SECONDS, self.backoff * (2**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _exchange(self, method: str, target: str, payload: bytes | None, headers: dict) -> tuple[int, bytes]:
        connection, reused = self._pool.take()
        try:
            status, raw, will_close = _send(connection, method, target, payload, headers)
        except _STALE:
            connection.close()
            if not reused:
                raise
            connection = self._pool.new()  # the idle connection had been closed by the portal: use a fresh one
            try:
                status, raw, will_close = _send(connection, method, target, payload, headers)
            except BaseException:
                connection.close()
                raise
        except BaseException:
            connection.close()
            raise
        if will_close:
            connection.close()
        else:
            self._pool.give_back(connection)
        return status, raw

    @staticmethod
    def _object(answer: Any, path: str) -> dict:
        if not isinstance(answer, dict):
            raise PortalError("internal", f"portal answered {path} with {type(answer).__name__}, not an object",
                              status=502)
        return answer

    @staticmethod
    def _released(answer: Any, path: str) -> list:
        released = answer.get("released") if isinstance(answer, dict) else None
        if not isinstance(released, list):
            raise PortalError("internal", f"portal answered {path} without a 'released' list", status=502)
        return released


def _send(connection: http.client.HTTPConnection, method: str, target: str, payload: bytes | None,
          headers: dict) -> tuple[int, bytes, bool]:
    connection.request(method, target, body=payload, headers=headers)
    response = connection.getresponse()
    raw = response.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise http.client.HTTPException(f"answer larger than {MAX_BODY_BYTES} bytes")
    return response.status, raw, bool(response.will_close)


def _decode(raw: bytes, method: str, path: str) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise PortalError("internal", f"portal answered {method} {path} with something that is not JSON",
                          status=502) from exc


def _portal_error(status: int, raw: bytes) -> PortalError:
    """Read ``{"code","message","details"}``; fall back on DRF's ``{"detail"}`` and on plain text (proxies)."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    fallback = _STATUS_CODES.get(status, "unavailable" if status in TRANSIENT_STATUS else "internal")
    if isinstance(body, dict):
        code = body.get("code") if isinstance(body.get("code"), str) and body.get("code") else fallback
        message = body.get("message") or body.get("detail") or f"portal answered HTTP {status}"
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
    else:
        code, details = fallback, {}
        message = f"portal answered HTTP {status}" + (f": {text[:200]}" if text and not text.startswith("<") else "")
    if status == 401:
        message = f"portal refused the node token: {message}"
    return PortalError(code, str(message), status=status, details=details)
