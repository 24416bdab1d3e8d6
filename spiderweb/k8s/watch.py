"""List and watch any kind, resuming from a stored resourceVersion and relisting on 410 Gone.

Why not ``kubernetes.watch.Watch``: the controllers need to know exactly when the stored resourceVersion is no longer
servable (HTTP 410, or an ``ERROR`` event carrying a 410 ``Status``) so it can relist, needs bookmarks to advance
the cursor on quiet kinds, and must be stoppable from another thread on SIGTERM. Both the stream parser and the
resume loop are here; where the cursor is stored and what an event triggers are the caller's business
(callbacks), so this module stays free of Django. Never imports Django.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import urllib3
from kubernetes.client.exceptions import ApiException

from spiderweb.k8s.client import KubeClient, KubeError, KubeGone, KubeUnavailable, api_error
from spiderweb.k8s.crd import meta
from spiderweb.k8s.resources import Resource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchEvent:
    """One watch event: ``ADDED``, ``MODIFIED``, ``DELETED`` or ``BOOKMARK`` and the object (a JSON dict)."""

    type: str
    object: dict

    @property
    def resource_version(self) -> str:
        return str(meta(self.object).get("resourceVersion") or "")

    @property
    def name(self) -> str:
        return str(meta(self.object).get("name") or "")

    @property
    def namespace(self) -> str:
        return str(meta(self.object).get("namespace") or "")


def parse_watch_line(line: bytes | str) -> WatchEvent | None:
    """Decode one line of a watch stream; raise :class:`KubeGone` for a 410 ``ERROR`` event.

    >>> parse_watch_line(b'{"type":"ADDED","object":{"metadata":{"name":"p1","resourceVersion":"7"}}}').name
    'p1'
    >>> parse_watch_line(b'{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}}')
    Traceback (most recent call last):
    ...
    spiderweb.k8s.client.KubeGone: watch expired: too old
    >>> parse_watch_line(b"  ") is None
    True
    """
    line = line.strip()
    if not line:
        return None
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise KubeUnavailable(f"watch stream sent a line that is not JSON: {line[:200]!r}") from exc
    kind, obj = data.get("type"), data.get("object") or {}
    if kind == "ERROR":
        code, message = obj.get("code"), obj.get("message") or "no message"
        if code == 410:
            raise KubeGone(f"watch expired: {message}", details={"status": 410})
        if code and (code == 429 or code >= 500):
            raise KubeUnavailable(f"watch failed: HTTP {code}: {message}")
        raise KubeError(f"watch failed: {code}: {message}", details={"status": code})
    return WatchEvent(type=str(kind), object=obj)


class WatchStream:
    """One watch request from ``resource_version``; iterate it for events. ``close()`` from any thread ends it.

    The server ends the stream after ``timeout_seconds``; the caller then watches again from the last
    resourceVersion it saw. The client-side read timeout is a little longer, so a dead connection is noticed too.
    """

    def __init__(self, client: KubeClient, resource: Resource, *, resource_version: str, timeout_seconds: int = 60):
        self.client = client
        self.resource = resource
        self.resource_version = resource_version
        self.timeout_seconds = timeout_seconds
        self._response = None
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[WatchEvent]:
        path = self.resource.path()
        query = (f"?watch=1&allowWatchBookmarks=true&timeoutSeconds={int(self.timeout_seconds)}"
                 f"&resourceVersion={self.resource_version}")
        try:
            self._response = self.client.api.call_api(
                path + query, "GET", header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                _preload_content=False, _return_http_data_only=True,
                _request_timeout=(10, self.timeout_seconds + 15),
            )
        except ApiException as exc:
            raise api_error("WATCH", path, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeUnavailable(f"Kubernetes API unreachable (WATCH {path}): {exc}") from exc
        buffer = b""
        try:
            for chunk in self._response.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    event = parse_watch_line(line)
                    if event is not None:
                        yield event
            event = parse_watch_line(buffer)
            if event is not None:
                yield event
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if not self._closed.is_set():
                raise KubeUnavailable(f"watch of {self.resource.plural} broke: {exc}") from exc
        finally:
            self._release()

    def close(self) -> None:
        """Interrupt a blocked read (used on SIGTERM)."""
        self._closed.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # best effort from another thread
                pass

    def _release(self) -> None:
        if self._response is not None:
            try:
                self._response.release_conn()
            except Exception:
                pass


Lister = Callable[[], tuple[list[dict], str]]
StreamFactory = Callable[[str], "WatchStream"]


@dataclass
class WatchLoop:
    """Keep one kind watched forever: resume from the stored cursor, relist when it is gone, back off on errors.

    * ``load_cursor()`` returns the stored resourceVersion (``""`` when none): a restart resumes there, so no event
      between the last stored one and the restart is lost.
    * ``handle(event)`` is called for every ADDED/MODIFIED/DELETED event; a BOOKMARK only advances the cursor. The
      cursor of the last handled event is saved at most every ``save_interval`` seconds and when the stream ends,
      fails or is stopped (a pod storm's thousands of events a minute would otherwise cost a database write each).
      Cursor after handling: a crash replays at most ``save_interval`` seconds of events (handlers are idempotent).
    * ``relist(items)`` is called after a full list (first start, or 410 Gone): the caller compares the list with
      what it knows, because DELETED events that happened while the cursor was unservable are lost for good.
    """

    client: KubeClient
    resource: Resource
    load_cursor: Callable[[], str]
    save_cursor: Callable[[str], None]
    handle: Callable[[WatchEvent], None]
    relist: Callable[[list[dict]], None]
    timeout_seconds: int = 60
    save_interval: float = 1.0
    stop: threading.Event = field(default_factory=threading.Event)
    lister: Lister | None = None
    stream_factory: StreamFactory | None = None
    relists: int = 0
    _stream: WatchStream | None = None

    def run(self) -> None:
        """Loop until ``stop`` is set. Transient errors back off (1 s doubling to 30 s); never raises them."""
        backoff = 1.0
        while not self.stop.is_set():
            try:
                self.run_once()
                backoff = 1.0
            except KubeGone as exc:
                log.info("%s: stored resourceVersion no longer servable (%s); relisting", self.resource.plural, exc)
                self.save_cursor("")
            except (KubeUnavailable, KubeError) as exc:
                log.warning("%s: watch failed: %s; retrying in %.0f s", self.resource.plural, exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception:  # a callback failed (database down?): the loop must outlive it
                log.exception("%s: handling watch events failed; retrying in %.0f s", self.resource.plural, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def run_once(self) -> None:
        """One watch request (after a relist when there is no cursor)."""
        cursor = self.load_cursor()
        if not cursor:
            cursor = self.do_relist()
        stream = (self.stream_factory or self._default_stream)(cursor)
        self._stream = stream
        unsaved, saved_at = "", time.monotonic()
        try:
            for event in stream:
                if self.stop.is_set():
                    return
                if event.type != "BOOKMARK":
                    self.handle(event)
                if event.resource_version:
                    unsaved = event.resource_version
                    if time.monotonic() - saved_at >= self.save_interval:
                        self.save_cursor(unsaved)
                        unsaved, saved_at = "", time.monotonic()
        finally:
            self._stream = None
            if unsaved:
                self.save_cursor(unsaved)

    def do_relist(self) -> str:
        items, resource_version = (self.lister or self._default_lister)()
        self.relists += 1
        self.relist(items)
        self.save_cursor(resource_version)
        log.info("%s: listed %d objects at resourceVersion %s", self.resource.plural, len(items), resource_version)
        return resource_version

    def shutdown(self) -> None:
        """Stop the loop and interrupt the current watch (safe from a signal handler's thread)."""
        self.stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def _default_lister(self) -> tuple[list[dict], str]:
        return self.client.list(self.resource)

    def _default_stream(self, resource_version: str) -> WatchStream:
        return WatchStream(self.client, self.resource, resource_version=resource_version,
                           timeout_seconds=self.timeout_seconds)
