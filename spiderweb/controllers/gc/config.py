"""The GC's switches (spec §7.1), read once from the environment under Spiderpool's names, as the chart sets them.

The variables, their chart keys and defaults are listed in this package's README.md.

The GC needs Kubernetes: outside a pod it runs only when ``KUBECONFIG`` is set, so ``make run`` without a cluster
schedules no scan that could only fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from spiderweb.controllers.config import env_bool, env_seconds, kubernetes_configured
from spiderweb.k8s.podgc import GcSwitches


@dataclass(frozen=True)
class GcConfig:
    enabled: bool
    switches: GcSwitches
    scan_interval: float
    trace_interval: float


@lru_cache(maxsize=1)
def gc_config() -> GcConfig:
    """This process's GC settings (cached; tests call ``gc_config.cache_clear()`` after changing the env)."""
    return GcConfig(
        enabled=env_bool("SPIDERPOOL_GC_IP_ENABLED", True) and kubernetes_configured(),
        switches=GcSwitches(
            zombie_on_ready_node=env_bool("SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED", True),
            zombie_on_not_ready_node=env_bool("SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_NOT_READY_NODE_ENABLED",
                                              True),
            running_pod_on_empty_pod_ips=env_bool("SPIDERPOOL_GC_ENABLE_STATELESS_RUNNING_POD_ON_EMPTY_POD_STATUS_IPS",
                                                  False),
            additional_grace_delay=env_seconds("SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY", 0, allow_zero=True),
        ),
        scan_interval=env_seconds("SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION", 600),
        trace_interval=env_seconds("SPIDERPOOL_GC_TRACE_POD_GAP_DURATION", 5),
    )
