"""spiderpool-conf ``enableCleanOutdatedEndpoint`` (spec §6, §7.3): the GC full scan removes SpiderEndpoints that no
address refers to (left by an earlier Spiderpool, say) only when the switch is on. Against the lab's API server."""

from __future__ import annotations

import uuid

import pytest

from spiderweb.controllers.gc import services as gc
from spiderweb.controllers.gc.config import gc_config
from spiderweb.ipam.models import ClusterSettings
from spiderweb.k8s import crd, resources
from spiderweb.k8s.spiderpool_conf import ENV_PATH, configured

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lab(mirror_lab, monkeypatch, tmp_path):
    from spiderweb.controllers.config import kube_client, kube_config

    monkeypatch.setenv("KUBECONFIG", str(mirror_lab.plane.kubeconfig))
    for cache in (kube_client, kube_config, gc_config):
        cache.cache_clear()
    namespace = f"outdated-{uuid.uuid4().hex[:6]}"
    mirror_lab.crd.create(resources.NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                                "metadata": {"name": namespace}})
    yield mirror_lab, namespace
    for obj in mirror_lab.crd.list(crd.SPIDER_ENDPOINT, namespace=namespace)[0]:
        mirror_lab.crd.finalizer_remove(crd.SPIDER_ENDPOINT, obj)
    mirror_lab.crd.delete(resources.NAMESPACE, namespace)
    monkeypatch.delenv(ENV_PATH, raising=False)
    for cache in (kube_client, kube_config, gc_config, configured):
        cache.cache_clear()
    ClusterSettings.invalidate_cache()


def conf_mount(monkeypatch, tmp_path, text: str) -> None:
    (tmp_path / "conf.yml").write_text(text)
    monkeypatch.setenv(ENV_PATH, str(tmp_path / "conf.yml"))
    configured.cache_clear()
    ClusterSettings.invalidate_cache()


@pytest.mark.parametrize("on", [False, True])
def test_outdated_endpoints_go_only_with_the_switch_on(lab, monkeypatch, tmp_path, on):
    plane, namespace = lab
    conf_mount(monkeypatch, tmp_path, f"enableCleanOutdatedEndpoint: {str(on).lower()}\n")
    plane.crd.create(crd.SPIDER_ENDPOINT, {
        "apiVersion": crd.API_VERSION, "kind": "SpiderEndpoint",
        "metadata": {"name": "left-behind", "namespace": namespace, "finalizers": [crd.FINALIZER]}})

    counts = gc.gc_scan(client=plane.crd)

    left = plane.crd.get(crd.SPIDER_ENDPOINT, "left-behind", namespace=namespace)
    if on:
        assert counts["outdated_endpoints"] >= 1  # the shared lab may hold more leftovers of this kind
        assert left is None or crd.is_terminating(left) and not left["metadata"].get("finalizers")
    else:
        assert "outdated_endpoints" not in counts
        assert left is not None and not crd.is_terminating(left)
