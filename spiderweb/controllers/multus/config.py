"""The SpiderMultusConfig controller's settings, read once from the environment under Spiderpool's names.

| Variable | Default | Meaning |
|---|---|---|
| ``SPIDERPOOL_MULTUS_CONFIG_ENABLED`` | false (the chart sets ``multus.enableMultusConfig``) | run this controller |
| ``SPIDERPOOL_MULTUS_CONFIG_INFORMER_RESYNC_PERIOD`` | 60 | seconds between level-based resyncs (beat) |

The controller also needs Kubernetes (``KUBECONFIG`` or a pod's service account).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from spiderweb.controllers.config import env_bool, env_seconds, kubernetes_configured


@dataclass(frozen=True)
class MultusControllerConfig:
    enabled: bool
    resync_interval: float


@lru_cache(maxsize=1)
def multus_config() -> MultusControllerConfig:
    """This process's settings (cached; tests call ``multus_config.cache_clear()`` after changing the env)."""
    return MultusControllerConfig(
        enabled=env_bool("SPIDERPOOL_MULTUS_CONFIG_ENABLED", False) and kubernetes_configured(),
        resync_interval=env_seconds("SPIDERPOOL_MULTUS_CONFIG_INFORMER_RESYNC_PERIOD", 60),
    )
