"""The coordinator controller's settings, read once from the environment under Spiderpool's names (spec §12.4).

| Variable | Default | Meaning |
|---|---|---|
| ``SPIDERPOOL_COORDINATOR_ENABLED`` | false (the chart sets ``coordinator.enabled``) | run this controller |
| ``SPIDERPOOL_COORDINATOR_DEAFULT_NAME`` (sic) | ``default`` | the SpiderCoordinator every pod uses (Django setting) |
| ``SPIDERPOOL_COORDINATOR_INFORMER_RESYNC_PERIOD`` | 60 | seconds between level-based resyncs (beat) |
| ``SPIDERPOOL_CNI_CONFIG_DIR`` | ``/etc/cni/net.d`` | the node's CNI configurations, for ``podCIDRType: auto`` |
| ``SPIDERPOOL_CILIUM_CONFIGMAP_NAMESPACE_NAME`` | ``kube-system/cilium-config`` | Cilium's ConfigMap |

The controller also needs Kubernetes (``KUBECONFIG`` or a pod's service account).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from spiderweb.controllers.config import env_bool, env_seconds, kubernetes_configured


@dataclass(frozen=True)
class CoordinatorControllerConfig:
    enabled: bool
    name: str
    resync_interval: float
    cni_config_dir: str
    cilium_configmap: tuple[str, str]


@lru_cache(maxsize=1)
def coordinator_config() -> CoordinatorControllerConfig:
    """This process's settings (cached; tests call ``coordinator_config.cache_clear()`` after changing the env)."""
    cilium = os.environ.get("SPIDERPOOL_CILIUM_CONFIGMAP_NAMESPACE_NAME") or "kube-system/cilium-config"
    namespace, _, name = cilium.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"SPIDERPOOL_CILIUM_CONFIGMAP_NAMESPACE_NAME={cilium!r} must be <namespace>/<name>")
    return CoordinatorControllerConfig(
        enabled=env_bool("SPIDERPOOL_COORDINATOR_ENABLED", False) and kubernetes_configured(),
        name=settings.SPIDERPOOL_COORDINATOR_NAME,
        resync_interval=env_seconds("SPIDERPOOL_COORDINATOR_INFORMER_RESYNC_PERIOD", 60),
        cni_config_dir=os.environ.get("SPIDERPOOL_CNI_CONFIG_DIR") or "/etc/cni/net.d",
        cilium_configmap=(namespace, name),
    )
