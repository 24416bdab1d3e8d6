"""Every SPIDERPOOL_GC_* variable the chart renders (helm `ipam.gc.*`) reaches the GC's configuration."""

import pytest

from spiderweb.controllers.gc.config import gc_config


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    gc_config.cache_clear()
    yield
    gc_config.cache_clear()


@pytest.mark.parametrize("variable, value, read", [
    ("SPIDERPOOL_GC_IP_ENABLED", "false", lambda c: c.enabled is False),
    ("SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED", "false",
     lambda c: c.switches.zombie_on_ready_node is False),
    ("SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_NOT_READY_NODE_ENABLED", "false",
     lambda c: c.switches.zombie_on_not_ready_node is False),
    ("SPIDERPOOL_GC_ENABLE_STATELESS_RUNNING_POD_ON_EMPTY_POD_STATUS_IPS", "true",
     lambda c: c.switches.running_pod_on_empty_pod_ips is True),
    ("SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY", "12", lambda c: c.switches.additional_grace_delay == 12),
    ("SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION", "42", lambda c: c.scan_interval == 42),
    ("SPIDERPOOL_GC_TRACE_POD_GAP_DURATION", "2", lambda c: c.trace_interval == 2),
])
def test_each_variable_is_read(monkeypatch, variable, value, read):
    default = gc_config()
    assert not read(default), f"{variable}={value} is not the default"
    monkeypatch.setenv(variable, value)
    gc_config.cache_clear()
    assert read(gc_config())


def test_without_kubernetes_the_gc_is_off(monkeypatch):
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert gc_config().enabled is False


@pytest.mark.parametrize("variable, value", [("SPIDERPOOL_GC_IP_ENABLED", "maybe"),
                                             ("SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY", "-1"),
                                             ("SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION", "soon")])
def test_bad_values_name_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        gc_config()


def test_the_chart_renders_every_variable_the_gc_reads():
    from pathlib import Path

    helpers = (Path(__file__).resolve().parents[3] / "helm/spiderweb/templates/_helpers.tpl").read_text()
    for variable in ("SPIDERPOOL_GC_IP_ENABLED", "SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED",
                     "SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_NOT_READY_NODE_ENABLED",
                     "SPIDERPOOL_GC_ENABLE_STATELESS_RUNNING_POD_ON_EMPTY_POD_STATUS_IPS",
                     "SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY", "SPIDERPOOL_GC_DEFAULT_INTERVAL_DURATION"):
        assert f"name: {variable}" in helpers
