"""The mirror's configuration, read once from the environment into a frozen dataclass.

| Variable | Default | Meaning |
|---|---|---|
| ``KUBECONFIG`` | unset | kubeconfig file; unset means the in-cluster service account |
| ``SPIDERWEB_MIRROR_ENABLED`` | true in a pod (``KUBERNETES_SERVICE_HOST``) | push edits to CRDs |
| ``SPIDERWEB_MIRROR_STATUS_INTERVAL`` | 5 | seconds between status batches (beat) |
| ``SPIDERWEB_MIRROR_RESYNC_INTERVAL`` | 60 | seconds between level-based resync sweeps (beat) |
| ``SPIDERWEB_WATCH_TIMEOUT`` | 60 | server-side timeout of one watch request, seconds |
| ``SPIDERWEB_K8S_TIMEOUT`` | 10 | timeout of every other Kubernetes call, seconds |

Outside a pod the mirror is off unless ``SPIDERWEB_MIRROR_ENABLED=true``: an exported ``KUBECONFIG`` alone (say, a
developer's shell after ``make lab``) must not make every test or demo enqueue Kubernetes tasks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class MirrorConfig:
    enabled: bool
    kubeconfig: str | None
    status_interval: float
    resync_interval: float
    watch_timeout: int
    k8s_timeout: float


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a boolean (use true or false)")


def _positive(name: str, default: float) -> float:
    value = float(os.environ.get(name) or default)
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value}")
    return value


@lru_cache(maxsize=1)
def mirror_config() -> MirrorConfig:
    """The configuration of this process (cached; tests call ``mirror_config.cache_clear()`` after changing env)."""
    kubeconfig = os.environ.get("KUBECONFIG") or None
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    return MirrorConfig(
        enabled=_bool("SPIDERWEB_MIRROR_ENABLED", in_cluster),
        kubeconfig=kubeconfig,
        status_interval=_positive("SPIDERWEB_MIRROR_STATUS_INTERVAL", 5),
        resync_interval=_positive("SPIDERWEB_MIRROR_RESYNC_INTERVAL", 60),
        watch_timeout=int(_positive("SPIDERWEB_WATCH_TIMEOUT", 60)),
        k8s_timeout=_positive("SPIDERWEB_K8S_TIMEOUT", 10),
    )
