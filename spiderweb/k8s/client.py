"""The one Kubernetes API client of Spiderweb: any kind, as plain JSON dicts, with one mapping of API errors.

Why raw JSON instead of the generated models: the rules in :mod:`spiderweb.k8s.pods` and the mirror's three-way
merge work on the API's own camelCase dicts (testable without a server, identical for core kinds and custom
resources such as KubeVirt VMIs or the Spiderpool CRDs), and skipping the model deserialisation keeps the agent's
hot path cheap. Every write that must not clobber a concurrent one carries a precondition (``resourceVersion`` on
replace, ``uid`` on delete). "Not found" is an answer here (``None``), not an error: callers decide what a missing
object means. The errors a caller acts on: 409 → :class:`KubeConflict` (re-read and retry), 410 →
:class:`KubeGone` (relist), 5xx/429/network → :class:`KubeUnavailable` (retry later), other 4xx →
:class:`KubeError` (give up, say why). Never imports Django.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from spiderweb.engine.errors import IPAMError, Unavailable
from spiderweb.k8s import crd, resources
from spiderweb.k8s.crd import meta
from spiderweb.k8s.resources import Resource

log = logging.getLogger(__name__)

class KubeUnavailable(Unavailable):
    """The API server could not be reached or answered 5xx/429: retry later (HTTP 503 for the agent's callers)."""


class KubeError(IPAMError):
    """The API server refused the call (401/403: credentials or RBAC, 4xx: a bad request); not transient."""


class KubeConflict(KubeError):
    """409: the object changed since it was read (stale resourceVersion), or it already exists. Re-read and retry."""

    code = "conflict"


class KubeGone(KubeError):
    """410: the resourceVersion is too old to watch from (etcd compacted it). Relist."""


def api_client(kubeconfig: str | None = None, *, pool_size: int = 16) -> k8s_client.ApiClient:
    """Build an ``ApiClient`` from ``kubeconfig`` when given, else from the in-cluster service account.

    ``pool_size`` bounds the keep-alive connections to the API server (one per concurrently served request).
    Raises :class:`KubeError` naming what is missing, so a misconfigured agent fails at start-up, not on the
    first pod.
    """
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig:
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration,
                                        persist_config=False)
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        source = f"kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster service account (set KUBECONFIG?)"
        raise KubeError(f"cannot load Kubernetes credentials from {source}: {exc}") from exc
    configuration.connection_pool_maxsize = pool_size
    return k8s_client.ApiClient(configuration)


# Every kind the client knows by (apiVersion, kind), for reads that start from an ownerReference.
_BY_API_VERSION_KIND: dict[tuple[str, str], Resource] = {
    (r.api_version, r.kind): r for r in (*resources.BUILTIN, *crd.KINDS.values())
}
LIST_PAGE_SIZE = 500


def resource_for(api_version: str, kind: str) -> Resource | None:
    """The descriptor of a kind named by an ownerReference, or ``None`` for a kind Spiderweb does not know.

    >>> resource_for("apps/v1", "ReplicaSet").plural
    'replicasets'
    >>> resource_for("apps.kruise.io/v1alpha1", "CloneSet") is None
    True
    """
    return _BY_API_VERSION_KIND.get((api_version, kind))


class KubeClient:
    """Reads, lists (paginated), creates, replaces, patches and deletes objects of any :class:`Resource`, and
    records Events. Thread-safe (urllib3's pool is). ``timeout`` bounds every call; watches are in
    :mod:`spiderweb.k8s.watch`."""

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
            data = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise KubeUnavailable(f"Kubernetes API answered {method} {path} with something that is not JSON") from exc
        if not isinstance(data, dict):
            raise KubeUnavailable(f"Kubernetes API answered {method} {path} with a JSON {type(data).__name__}")
        return data

    # -- objects ---------------------------------------------------------------------------------------------

    def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> dict | None:
        """One object, or ``None`` when it does not exist."""
        return self.request("GET", resource.path(name, namespace=namespace))

    def list(self, resource: Resource, *, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None, page_size: int = LIST_PAGE_SIZE) -> tuple[list[dict], str]:
        """Every object of ``resource`` (all namespaces unless ``namespace``) and the list's resourceVersion, to
        watch from. Read in pages of ``page_size`` (``limit``/``continue``), so a 60,000-pod cluster is never one
        response; an expired continue token (410) surfaces as :class:`KubeGone`."""
        query: dict[str, Any] = {"limit": page_size}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        items: list[dict] = []
        while True:
            data = self.request("GET", resource.path(namespace=namespace), query=query) or {}
            items += data.get("items") or []
            token = meta(data).get("continue")
            if not token:
                return items, str(meta(data).get("resourceVersion") or "")
            query["continue"] = token

    def create(self, resource: Resource, body: dict) -> dict:
        """POST; :class:`KubeConflict` when the name is taken."""
        namespace = meta(body).get("namespace")
        created = self.request("POST", resource.path(namespace=namespace), body=body)
        if created is None:  # 404 on create: the namespace does not exist
            raise KubeError(f"cannot create {resource.kind} {meta(body).get('name')}: namespace {namespace} not found",
                            details={"status": 404})
        return created

    def replace(self, resource: Resource, body: dict) -> dict | None:
        """PUT with ``metadata.resourceVersion`` as precondition: :class:`KubeConflict` when someone wrote first."""
        m = meta(body)
        if not m.get("resourceVersion"):
            raise ValueError("replace needs metadata.resourceVersion (the version the change is based on)")
        return self.request("PUT", resource.path(m["name"], namespace=m.get("namespace")), body=body)

    def patch(self, resource: Resource, name: str, patch: dict, *, namespace: str | None = None,
              subresource: str | None = None) -> dict | None:
        """JSON merge patch (RFC 7386). Put ``metadata.resourceVersion`` in the patch to make it conditional."""
        return self.request("PATCH", resource.path(name, namespace=namespace, subresource=subresource), body=patch,
                            content_type="application/merge-patch+json")

    def delete(self, resource: Resource, name: str, *, namespace: str | None = None, uid: str | None = None) -> bool:
        """DELETE (only the incarnation ``uid`` when given); False when it was already gone or is another one."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            return self.request("DELETE", resource.path(name, namespace=namespace), body=body) is not None
        except KubeConflict:  # UID precondition failed: a newer object with the same name; not ours to delete
            return False

    def finalizer_add(self, resource: Resource, obj: dict, finalizer: str = crd.FINALIZER) -> dict | None:
        """Add one finalizer, conditional on the object's resourceVersion (merge patch replaces the whole list)."""
        m = meta(obj)
        current = list(m.get("finalizers") or [])
        if finalizer in current:
            return obj
        patch = {"metadata": {"finalizers": [*current, finalizer], "resourceVersion": m.get("resourceVersion")}}
        return self.patch(resource, m["name"], patch, namespace=m.get("namespace"))

    def finalizer_remove(self, resource: Resource, obj: dict, finalizer: str = crd.FINALIZER) -> dict | None:
        """Drop one finalizer, conditional on the object's resourceVersion (merge patch replaces the whole list)."""
        m = meta(obj)
        current = list(m.get("finalizers") or [])
        if finalizer not in current:
            return obj
        patch = {"metadata": {"finalizers": [f for f in current if f != finalizer],
                              "resourceVersion": m.get("resourceVersion")}}
        return self.patch(resource, m["name"], patch, namespace=m.get("namespace"))

    def discover(self, api_version: str, kind: str) -> Resource | None:
        """The descriptor of any served kind (a third-party controller's, say) from API discovery; ``None`` when
        the API server does not serve it (the CRD is gone). Known kinds need no round trip."""
        known = resource_for(api_version, kind)
        if known is not None:
            return known
        group, _, version = api_version.rpartition("/")
        listing = self.request("GET", f"/apis/{api_version}" if group else f"/api/{version}")
        for entry in (listing or {}).get("resources") or []:
            if entry.get("kind") == kind and "/" not in str(entry.get("name") or ""):
                return Resource(group, version, kind, str(entry["name"]), namespaced=bool(entry.get("namespaced")))
        return None

    # -- reads by name, as the agent's pod rules need them ---------------------------------------------------

    def namespaced(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        """Read a namespaced object named by apiVersion and kind (an ownerReference's terms)."""
        resource = resource_for(api_version, kind)
        if resource is None or not resource.namespaced:
            raise KubeError(f"reading {api_version} {kind} is not supported")
        return self.get(resource, name, namespace=namespace)

    def pod(self, namespace: str, name: str) -> dict | None:
        """The pod ``namespace/name`` (uncached: one API round trip)."""
        return self.get(resources.POD, name, namespace=namespace)

    def namespace(self, name: str) -> dict | None:
        """The namespace object (for its labels and annotations)."""
        return self.get(resources.NAMESPACE, name)

    def node(self, name: str) -> dict | None:
        """The node object (for its labels and conditions)."""
        return self.get(resources.NODE, name)

    def owner(self, kind: str, api_version: str, namespace: str, name: str) -> dict | None:
        """Argument order of :data:`spiderweb.k8s.pods.OwnerFetch`, for ``top_controller``."""
        return self.namespaced(api_version, kind, namespace, name)

    def ready(self) -> bool:
        """``GET /readyz``: True when the API server says it is ready."""
        try:
            response = self.api.call_api(
                "/readyz", "GET", auth_settings=["BearerToken"], _preload_content=False,
                _return_http_data_only=True, _request_timeout=self.timeout,
            )
            response.release_conn()
            return True
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.info("Kubernetes API not ready: %s", exc)
            return False

    # -- events ----------------------------------------------------------------------------------------------

    def event_best_effort(self, obj: dict, *, reason: str, message: str, type_: str = "Warning") -> bool:
        """:meth:`event`, but an Event that cannot be written is logged, never fatal: the controller's own write
        (a status, a NAD) already happened and must not be retried for the sake of its announcement."""
        try:
            self.event(obj, reason=reason, message=message, type_=type_)
            return True
        except (KubeError, KubeUnavailable) as exc:
            log.warning("could not record the %s event on %s: %s", reason, meta(obj).get("name"), exc)
            return False

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
                "apiVersion": obj.get("apiVersion") or crd.API_VERSION,
                "kind": obj.get("kind"),
                "name": m.get("name"),
                "namespace": m.get("namespace") or "",
                "uid": m.get("uid"),
                "resourceVersion": m.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": crd.EVENT_COMPONENT},
            "reportingComponent": crd.EVENT_COMPONENT,
            "reportingInstance": os.environ.get("SPIDERWEB_POD_NAME") or socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.request("POST", resources.EVENT.path(namespace=namespace), body=body)


def status_message(body: Any) -> str:
    """The ``message`` of a ``v1.Status`` error body (what kubectl prints), or ``""``."""
    try:
        data = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return ""
    return str(data.get("message") or "") if isinstance(data, Mapping) else ""


def api_error(method: str, path: str, exc: ApiException) -> KubeError | KubeUnavailable:
    """Map an ``ApiException`` to the error the caller acts on (retry, re-read, relist, or give up)."""
    status = exc.status or 0
    reason = status_message(exc.body) or exc.reason or "no reason given"
    if status == 0 or status == 429 or status >= 500:
        return KubeUnavailable(f"Kubernetes API failed {method} {path}: HTTP {status}: {reason}")
    text = f"Kubernetes API refused {method} {path}: HTTP {status}: {reason}"
    if status == 409:
        return KubeConflict(text, details={"status": status, "path": path})
    if status == 410:
        return KubeGone(text, details={"status": status, "path": path})
    return KubeError(text, details={"status": status, "path": path, "reason": reason})
