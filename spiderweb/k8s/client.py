"""A Kubernetes API client that reads objects as plain JSON dicts, with errors mapped to Spiderweb's error codes.

Why raw JSON instead of the generated models: the rules in :mod:`spiderweb.k8s.pods` work on the API's own
camelCase dicts (testable without a server, identical for core kinds and custom resources such as KubeVirt VMIs),
and skipping the model deserialisation keeps the agent's hot path cheap. "Not found" is an answer here
(``None``), not an error: callers decide what a missing object means.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from spiderweb.engine.errors import IPAMError, Unavailable

log = logging.getLogger(__name__)

# Paths of the namespaced kinds the agent reads, by (apiVersion, kind).
_NAMESPACED_PATHS = {
    ("v1", "Pod"): "/api/v1/namespaces/{namespace}/pods/{name}",
    ("apps/v1", "ReplicaSet"): "/apis/apps/v1/namespaces/{namespace}/replicasets/{name}",
    ("apps/v1", "StatefulSet"): "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
    ("kubevirt.io/v1", "VirtualMachineInstance"): "/apis/kubevirt.io/v1/namespaces/{namespace}/"
    "virtualmachineinstances/{name}",
    ("kubevirt.io/v1", "VirtualMachine"): "/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachines/{name}",
    ("kubevirt.io/v1", "VirtualMachineInstanceMigration"): "/apis/kubevirt.io/v1/namespaces/{namespace}/"
    "virtualmachineinstancemigrations/{name}",
}


class KubeUnavailable(Unavailable):
    """The API server could not be reached or answered 5xx/429: retry later (HTTP 503 for the agent's callers)."""


class KubeError(IPAMError):
    """The API server refused the read (401/403: credentials or RBAC, 4xx: a bad request); not transient."""


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


class KubeReader:
    """GETs of single objects as dicts; ``None`` for 404. Thread-safe (urllib3's pool is)."""

    def __init__(self, api: k8s_client.ApiClient, *, timeout: float = 10.0) -> None:
        self.api = api
        self.timeout = timeout

    def get(self, path: str) -> dict | None:
        """GET ``path`` (already quoted) and decode it; ``None`` when the object does not exist."""
        try:
            response = self.api.call_api(
                path, "GET", header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                _preload_content=False, _return_http_data_only=True, _request_timeout=self.timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _api_error(path, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeUnavailable(f"Kubernetes API unreachable (GET {path}): {exc}") from exc
        try:
            raw = response.data
        finally:
            response.release_conn()
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise KubeUnavailable(f"Kubernetes API answered GET {path} with something that is not JSON") from exc
        if not isinstance(data, dict):
            raise KubeUnavailable(f"Kubernetes API answered GET {path} with a JSON {type(data).__name__}")
        return data

    def namespaced(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        """Read a namespaced object of a kind listed in ``_NAMESPACED_PATHS``."""
        template = _NAMESPACED_PATHS.get((api_version, kind))
        if template is None:
            raise KubeError(f"reading {api_version} {kind} is not supported")
        return self.get(template.format(namespace=quote(namespace, safe=""), name=quote(name, safe="")))

    def pod(self, namespace: str, name: str) -> dict | None:
        """The pod ``namespace/name`` (uncached: one API round trip)."""
        return self.namespaced("v1", "Pod", namespace, name)

    def namespace(self, name: str) -> dict | None:
        """The namespace object (for its labels and annotations)."""
        return self.get(f"/api/v1/namespaces/{quote(name, safe='')}")

    def node(self, name: str) -> dict | None:
        """The node object (for its labels)."""
        return self.get(f"/api/v1/nodes/{quote(name, safe='')}")

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


def _api_error(path: str, exc: ApiException) -> IPAMError:
    status = exc.status or 0
    reason = _status_message(exc.body) or exc.reason or "no reason given"
    if status == 0 or status == 429 or status >= 500:
        return KubeUnavailable(f"Kubernetes API failed GET {path}: HTTP {status}: {reason}")
    return KubeError(f"Kubernetes API refused GET {path}: HTTP {status}: {reason}",
                     details={"status": status, "path": path})


def _status_message(body: Any) -> str:
    """The ``message`` of a ``v1.Status`` error body, when the body is one."""
    try:
        data = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return ""
    return str(data.get("message") or "") if isinstance(data, Mapping) else ""
