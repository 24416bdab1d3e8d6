"""Shared fixtures."""

import pytest
from hypothesis import settings

# Property tests check correctness, not speed: no per-example deadline, which a loaded CI machine would miss.
settings.register_profile("spiderweb", deadline=None)
settings.load_profile("spiderweb")


@pytest.fixture(autouse=True)
def _fresh_cluster_settings_cache():
    """Each test sees the cluster settings it wrote (the hot path caches them for a second per process)."""
    from spiderweb.ipam.models import ClusterSettings

    ClusterSettings.invalidate_cache()
    yield
    ClusterSettings.invalidate_cache()


@pytest.fixture(autouse=True)
def _fresh_pool_catalog():
    """Each test plans with the pools it created (the hot path caches the catalog for a second)."""
    from spiderweb.ipam.allocation import pool_catalog_invalidate

    pool_catalog_invalidate()
    yield
    pool_catalog_invalidate()


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    """Request-rate counters live in the (per-process) cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield


# The Kubernetes lab's control plane (one per session, shared by every package that needs a real API server).
from tests.mirror.lab import lab_env, mirror_lab, webhook_portal  # noqa: E402,F401
