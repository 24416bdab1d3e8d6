"""The mirror's configuration, read once from the environment into a frozen dataclass.

| Variable | Default | Meaning |
|---|---|---|
| ``SPIDERWEB_MIRROR_ENABLED`` | true in a pod (``KUBERNETES_SERVICE_HOST``) | push edits to CRDs |
| ``SPIDERWEB_MIRROR_STATUS_INTERVAL`` | 5 | seconds between status batches (beat) |
| ``SPIDERWEB_MIRROR_RESYNC_INTERVAL`` | 60 | seconds between level-based resync sweeps (beat) |

Outside a pod the mirror is off unless ``SPIDERWEB_MIRROR_ENABLED=true``: an exported ``KUBECONFIG`` alone (say, a
developer's shell after ``make lab``) must not make every test or demo enqueue Kubernetes tasks. How to reach the
API server is the kit's (``spiderweb.controllers.config``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from spiderweb.controllers.config import env_bool, env_seconds


@dataclass(frozen=True)
class MirrorConfig:
    enabled: bool
    status_interval: float
    resync_interval: float


@lru_cache(maxsize=1)
def mirror_config() -> MirrorConfig:
    """The configuration of this process (cached; tests call ``mirror_config.cache_clear()`` after changing env)."""
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    return MirrorConfig(
        enabled=env_bool("SPIDERWEB_MIRROR_ENABLED", in_cluster),
        status_interval=env_seconds("SPIDERWEB_MIRROR_STATUS_INTERVAL", 5),
        resync_interval=env_seconds("SPIDERWEB_MIRROR_RESYNC_INTERVAL", 60),
    )
