"""The Spiderpool CRD contract (group, version, kinds, paths) and a small JSON client for custom objects.

Why a hand-written client instead of ``CustomObjectsApi``: the mirror compares and merges plain JSON documents, needs
``resourceVersion`` preconditions on every write, UID preconditions on deletes, merge patches on the status
subresource and a typed error for each answer it must act on (404 → ``None``, 409 → :class:`KubeConflict`,
410 → :class:`KubeGone`, 5xx/429/network → :class:`~spiderweb.k8s.client.KubeUnavailable`, retried by the caller).
Never imports Django.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from spiderweb.k8s.client import KubeError, KubeUnavailable

log = logging.getLogger(__name__)

GROUP = "spiderpool.spidernet.io"
VERSION = "v2beta1"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = "spiderpool.spidernet.io"
EVENT_COMPONENT = "spiderweb"


@dataclass(frozen=True)
class CrdKind:
    """One Spiderpool kind: how it is named on the wire and where it lives in the API."""

    kind: str
    plural: str
    namespaced: bool = False
    status_subresource: bool = False

    @property
    def webhook_name(self) -> str:
        """The lower-case singular used in Spiderpool's webhook paths, e.g. ``spiderippool``."""
        return self.kind.lower()

    def path(self, name: str | None = None, *, namespace: str | None = None, subresource: str | None = None) -> str:
        """API path of the collection, one object, or one object's subresource.

        >>> SPIDER_IPPOOL.path("p1", subresource="status")
        '/apis/spiderpool.spidernet.io/v2beta1/spiderippools/p1/status'
        >>> SPIDER_ENDPOINT.path("web-0", namespace="default")
        '/apis/spiderpool.spidernet.io/v2beta1/namespaces/default/spiderendpoints/web-0'
        """
        base = f"/apis/{GROUP}/{VERSION}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
        if subresource:
            base += f"/{subresource}"
        return base


SPIDER_IPPOOL = CrdKind("SpiderIPPool", "spiderippools", status_subresource=True)
SPIDER_SUBNET = CrdKind("SpiderSubnet", "spidersubnets", status_subresource=True)
SPIDER_RESERVEDIP = CrdKind("SpiderReservedIP", "spiderreservedips")
SPIDER_ENDPOINT = CrdKind("SpiderEndpoint", "spiderendpoints", namespaced=True)
SPIDER_MULTUSCONFIG = CrdKind("SpiderMultusConfig", "spidermultusconfigs", namespaced=True)
SPIDER_COORDINATOR = CrdKind("SpiderCoordinator", "spidercoordinators", status_subresource=True)

KINDS: dict[str, CrdKind] = {
    k.kind: k
    for k in (SPIDER_IPPOOL, SPIDER_SUBNET, SPIDER_RESERVEDIP, SPIDER_ENDPOINT, SPIDER_MULTUSCONFIG, SPIDER_COORDINATOR)
}
# Kinds with admission webhooks, by the name used in the webhook path.
WEBHOOK_KINDS: dict[str, CrdKind] = {
    k.webhook_name: k
    for k in (SPIDER_SUBNET, SPIDER_IPPOOL, SPIDER_RESERVEDIP, SPIDER_COORDINATOR, SPIDER_MULTUSCONFIG)
}


class KubeConflict(KubeError):
    """409: the object changed since it was read (stale resourceVersion), or it already exists. Re-read and retry."""

    code = "conflict"


class KubeGone(KubeError):
    """410: the resourceVersion is too old to watch from (etcd compacted it). Relist."""


def meta(obj: dict | None) -> dict:
    """``metadata`` of an object, ``{}`` when absent."""
    return (obj or {}).get("metadata") or {}


def uid_of(obj: dict | None) -> str:
    """``metadata.uid`` (``""`` when absent): which incarnation of a name an object is."""
    return str(meta(obj).get("uid") or "")


def resource_version_of(obj: dict | None) -> str:
    """``metadata.resourceVersion`` (``""`` when absent): the precondition of the next write."""
    return str(meta(obj).get("resourceVersion") or "")


def is_terminating(obj: dict | None) -> bool:
    """A ``deletionTimestamp`` is set: the object waits for its finalizers."""
    return bool(meta(obj).get("deletionTimestamp"))


class CrdClient:
    """JSON CRUD on Spiderpool custom objects (and Events), with Spiderweb's error classes.

    Thread-safe: urllib3's pool is. ``timeout`` bounds every call except watches (see :mod:`spiderweb.k8s.watch`).
    """

    def __init__(self, api: k8s_client.ApiClient, *, timeout: float = 10.0) -> None:
        self.api = api
        self.timeout = timeout

    # -- raw -------------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, query: dict | None = None, body: Any = None,
                content_type: str = "application/json", timeout: float | None = None) -> dict | None:
        """One API call decoded as JSON; ``None`` for 404. Raises the typed errors of this module."""
        if query:
            path = f"{path}?{urlencode(query)}"
        try:
            response = self.api.call_api(
                path, method, header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body, auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                _request_timeout=timeout or self.timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise api_error(method, path, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeUnavailable(f"Kubernetes API unreachable ({method} {path}): {exc}") from exc
        try:
            raw = response.data
        finally:
            response.release_conn()
        try:
            return json.loads(raw) if raw else {}
        except ValueError as exc:
            raise KubeUnavailable(f"Kubernetes API answered {method} {path} with something that is not JSON") from exc

    # -- objects ---------------------------------------------------------------------------------------------

    def get(self, kind: CrdKind, name: str, *, namespace: str | None = None) -> dict | None:
        """One object, or ``None`` when it does not exist."""
        return self.request("GET", kind.path(name, namespace=namespace))

    def list(self, kind: CrdKind, *, label_selector: str | None = None) -> tuple[list[dict], str]:
        """Every object of ``kind`` (all namespaces) and the list's resourceVersion, to watch from."""
        query = {"labelSelector": label_selector} if label_selector else None
        data = self.request("GET", kind.path(), query=query) or {}
        return list(data.get("items") or []), str(meta(data).get("resourceVersion") or "")

    def create(self, kind: CrdKind, body: dict) -> dict:
        """POST; :class:`KubeConflict` when the name is taken."""
        namespace = meta(body).get("namespace")
        created = self.request("POST", kind.path(namespace=namespace), body=body)
        if created is None:  # 404 on create: the namespace does not exist
            raise KubeError(f"cannot create {kind.kind} {meta(body).get('name')}: namespace {namespace} not found",
                            details={"status": 404})
        return created

    def replace(self, kind: CrdKind, body: dict) -> dict | None:
        """PUT with ``metadata.resourceVersion`` as precondition: :class:`KubeConflict` when someone wrote first."""
        m = meta(body)
        if not m.get("resourceVersion"):
            raise ValueError("replace needs metadata.resourceVersion (the version the change is based on)")
        return self.request("PUT", kind.path(m["name"], namespace=m.get("namespace")), body=body)

    def patch(self, kind: CrdKind, name: str, patch: dict, *, namespace: str | None = None,
              subresource: str | None = None) -> dict | None:
        """JSON merge patch (RFC 7386). Put ``metadata.resourceVersion`` in the patch to make it conditional."""
        return self.request("PATCH", kind.path(name, namespace=namespace, subresource=subresource), body=patch,
                            content_type="application/merge-patch+json")

    def delete(self, kind: CrdKind, name: str, *, namespace: str | None = None, uid: str | None = None) -> bool:
        """DELETE (only the incarnation ``uid`` when given); False when it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            return self.request("DELETE", kind.path(name, namespace=namespace), body=body) is not None
        except KubeConflict:  # UID precondition failed: a newer object with the same name; not ours to delete
            return False

    def finalizer_remove(self, kind: CrdKind, obj: dict, finalizer: str = FINALIZER) -> dict | None:
        """Drop one finalizer, conditional on the object's resourceVersion (merge patch replaces the whole list)."""
        m = meta(obj)
        current = list(m.get("finalizers") or [])
        if finalizer not in current:
            return obj
        patch = {"metadata": {"finalizers": [f for f in current if f != finalizer],
                              "resourceVersion": m.get("resourceVersion")}}
        return self.patch(kind, m["name"], patch, namespace=m.get("namespace"))

    # -- events ----------------------------------------------------------------------------------------------

    def event(self, obj: dict, *, reason: str, message: str, type_: str = "Warning") -> None:
        """Record an Event about ``obj`` (``kubectl describe`` shows it). Events of cluster objects go to default."""
        m = meta(obj)
        namespace = m.get("namespace") or "default"
        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{m.get('name', 'object')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion") or API_VERSION,
                "kind": obj.get("kind"),
                "name": m.get("name"),
                "namespace": m.get("namespace") or "",
                "uid": m.get("uid"),
                "resourceVersion": m.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": EVENT_COMPONENT},
            "reportingComponent": EVENT_COMPONENT,
            "reportingInstance": os.environ.get("SPIDERWEB_POD_NAME") or socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.request("POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/events", body=body)


def status_message(body: Any) -> str:
    """The ``message`` of a ``v1.Status`` error body (what kubectl prints), or ``""``."""
    try:
        data = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return ""
    return str(data.get("message") or "") if isinstance(data, dict) else ""


def api_error(method: str, path: str, exc: ApiException) -> KubeError | KubeUnavailable:
    """Map an ``ApiException`` to the error the caller acts on (retry, re-read, relist, or give up)."""
    status = exc.status or 0
    reason = status_message(exc.body) or exc.reason or "no reason given"
    text = f"Kubernetes API: {method} {path}: HTTP {status}: {reason}"
    if status == 0 or status == 429 or status >= 500:
        return KubeUnavailable(text)
    if status == 409:
        return KubeConflict(text, details={"status": status, "path": path})
    if status == 410:
        return KubeGone(text, details={"status": status, "path": path})
    return KubeError(text, details={"status": status, "path": path, "reason": reason})
