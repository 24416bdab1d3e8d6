"""How controllers reach Kubernetes, read once from the environment into a frozen dataclass.

| Variable | Default | Meaning |
|---|---|---|
| ``KUBECONFIG`` | unset | kubeconfig file; unset means the in-cluster service account |
| ``SPIDERWEB_WATCH_TIMEOUT`` | 60 | server-side timeout of one watch request, seconds |
| ``SPIDERWEB_K8S_TIMEOUT`` | 10 | timeout of every other Kubernetes call, seconds |

Each controller reads its own switches in its own ``config.py`` (``mirror/config.py``, ``gc/config.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from spiderweb.k8s.client import KubeClient, api_client


def env_bool(name: str, default: bool) -> bool:
    """A boolean environment variable; anything but true/false and friends is an error naming the variable."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a boolean (use true or false)")


def env_seconds(name: str, default: float, *, allow_zero: bool = False) -> float:
    """A number of seconds from the environment; negative (or zero unless allowed) is an error naming it."""
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw not in (None, "") else float(default)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number of seconds, "
                         f"got {raw}")
    return value


def kubernetes_configured() -> bool:
    """Running in a pod, or pointed at a cluster with ``KUBECONFIG``: controllers that only make sense with a
    cluster (GC, auto pools) are on; ``make run`` without one schedules and watches nothing for them."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG"))


@dataclass(frozen=True)
class KubeConfig:
    kubeconfig: str | None
    watch_timeout: int
    k8s_timeout: float


@lru_cache(maxsize=1)
def kube_config() -> KubeConfig:
    """This process's settings (cached; tests call ``kube_config.cache_clear()`` after changing the env)."""
    return KubeConfig(
        kubeconfig=os.environ.get("KUBECONFIG") or None,
        watch_timeout=int(env_seconds("SPIDERWEB_WATCH_TIMEOUT", 60)),
        k8s_timeout=env_seconds("SPIDERWEB_K8S_TIMEOUT", 10),
    )


@lru_cache(maxsize=1)
def kube_client() -> KubeClient:
    """This process's Kubernetes client (``KUBECONFIG`` or the in-cluster service account)."""
    config = kube_config()
    return KubeClient(api_client(config.kubeconfig), timeout=config.k8s_timeout)
