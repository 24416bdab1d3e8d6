"""Fixtures of the mirror tests. The mirror stays off in the test process unless a test turns it on, so a service
call never enqueues a task by accident; lab fixtures live in ``lab.py``."""

import pytest


@pytest.fixture(autouse=True)
def _mirror_off(monkeypatch):
    from spiderweb.controllers.config import kube_client
    from spiderweb.controllers.mirror.config import mirror_config

    monkeypatch.setenv("SPIDERWEB_MIRROR_ENABLED", "false")
    mirror_config.cache_clear()
    kube_client.cache_clear()
    yield
    mirror_config.cache_clear()
    kube_client.cache_clear()

