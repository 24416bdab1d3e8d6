"""spiderpool-conf (spec §12.5): the chart's ConfigMap is the source of the cluster switches for the portal and the
workers; every key changes behaviour. Each test writes conf.yml as the mounted ConfigMap, points
SPIDERWEB_CONFIG_PATH at it (what the chart does) and watches the behaviour change. The agent's keys are tested in
tests/agent/test_agent_spiderpool_conf.py, podResourceInject in tests/controllers/multus/test_pod_inject.py.
"""

from __future__ import annotations

import doctest
import json
import uuid

import pytest
from django.urls import reverse

from spiderweb.engine.autopool import App, IPNumber, SubnetRequest
from spiderweb.engine.errors import Conflict, InvalidInput, PoolInUse
from spiderweb.ipam import services
from spiderweb.ipam.models import AddressHistory, ClusterSettings, IPPool
from spiderweb.ipam.validation import SpecInvalid
from spiderweb.k8s import spiderpool_conf
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def conf(tmp_path, monkeypatch):
    """``conf("enableIPv6: false")`` mounts a conf.yml and makes this process read it, as the chart's pods do."""

    def mount(text: str = "") -> str:
        path = tmp_path / "conf.yml"
        path.write_text(text)
        monkeypatch.setenv(spiderpool_conf.ENV_PATH, str(path))
        spiderpool_conf.configured.cache_clear()
        ClusterSettings.invalidate_cache()
        return str(path)

    yield mount
    monkeypatch.delenv(spiderpool_conf.ENV_PATH, raising=False)
    spiderpool_conf.configured.cache_clear()
    ClusterSettings.invalidate_cache()


def sts_pod(uid: str, *, kind="StatefulSet", name="db-0"):
    return f.facts(name, uid=uid, owner_kind=kind, owner_name="db",
                   annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p4"]})})


# ------------------------------------------------------------------------------------------------------ loader


def test_docstring_examples_hold():
    result = doctest.testmod(spiderpool_conf)
    assert result.attempted > 0 and result.failed == 0


def test_an_empty_file_is_spiderpools_defaults_and_every_key_is_read(conf):
    assert spiderpool_conf.parse("") == spiderpool_conf.SpiderpoolConf(path="conf.yml")
    text = ("ipamUnixSocketPath: /run/x.sock\nenableIPv4: true\nenableIPv6: false\nenableStatefulSet: false\n"
            "enableKubevirtStaticIP: false\nenableCleanOutdatedEndpoint: true\nenableSpiderSubnet: false\n"
            "enableAutoPoolForApplication: false\nenableIPConflictDetection: true\nenableGatewayDetection: true\n"
            "enableValidatingResourcesDeletedWebhook: true\nclusterSubnetDefaultFlexibleIPNumber: 4\n"
            "tuneSysctlConfig: false\npodResourceInject:\n  enabled: true\n  namespacesExclude: [kube-system]\n"
            "  namespacesInclude: [apps]\niaasNetworkProvider:\n  serverUrl: ''\n  httpRequestTimeout: 1m\n")
    got = spiderpool_conf.parse(text, cluster_network="kube-system/calico\n")
    assert got == spiderpool_conf.SpiderpoolConf(
        path="conf.yml", ipam_unix_socket_path="/run/x.sock", enable_ipv6=False, enable_statefulset=False,
        enable_kubevirt_static_ip=False, enable_clean_outdated_endpoint=True, enable_spider_subnet=False,
        enable_auto_pool_for_application=False, enable_ip_conflict_detection=True, enable_gateway_detection=True,
        enable_validating_resources_deleted_webhook=True, cluster_subnet_default_flexible_ip_number=4,
        tune_sysctl_config=False, pod_resource_inject=spiderpool_conf.PodResourceInject(True, ("kube-system",),
                                                                                      ("apps",)),
        iaas_http_request_timeout=60.0, cluster_network="kube-system/calico")


@pytest.mark.parametrize(("text", "message"), [
    ("enableIPv4: yes please", "enableIPv4 must be true or false, got 'yes please'"),
    ("clusterSubnetDefaultFlexibleIPNumber: -1", "clusterSubnetDefaultFlexibleIPNumber must not be negative"),
    ("ipamUnixSocketPath: relative.sock", "ipamUnixSocketPath 'relative.sock' must be an absolute path"),
    ("podResourceInject: {enabled: true, namespacesExclude: kube-system}",
     "podResourceInject.namespacesExclude must be a list of namespace names"),
    ("iaasNetworkProvider: {serverUrl: 'http://iaas'}", "Spiderweb has no IaaS network provider client"),
    ("iaasNetworkProvider: {httpRequestTimeout: soon}", "httpRequestTimeout 'soon' is not a duration"),
    ("agent: {networkResourcePlugin: {enabled: true}}", "Spiderweb has no network resource device plugin"),
    ("- a list", "expected a mapping of keys, got list"),
    ("enableIPv4: [", "not YAML"),
], ids=["bool", "negative", "socket", "namespaces", "iaas", "duration", "device-plugin", "list", "yaml"])
def test_a_bad_value_is_refused_with_a_message_naming_it(text, message):
    with pytest.raises(spiderpool_conf.ConfError) as refused:
        spiderpool_conf.parse(text, path="/tmp/spiderpool/config-map/conf.yml")
    assert message in str(refused.value) and "/tmp/spiderpool/config-map/conf.yml" in str(refused.value)


def test_a_missing_file_says_which_and_the_cluster_network_key_is_read_beside_it(tmp_path):
    with pytest.raises(spiderpool_conf.ConfError, match=r"cannot read .*nowhere.yml \(SPIDERWEB_CONFIG_PATH\)"):
        spiderpool_conf.load(str(tmp_path / "nowhere.yml"))
    (tmp_path / "conf.yml").write_text("enableIPv6: false\n")
    (tmp_path / "clusterNetwork").write_text("kube-system/macvlan-underlay")
    assert spiderpool_conf.load(str(tmp_path / "conf.yml")).cluster_network == "kube-system/macvlan-underlay"


def test_the_settings_cannot_be_edited_while_they_come_from_the_configmap(conf, admin_client):
    path = conf("enableIPv6: false\n")
    assert ClusterSettings.load().enable_ipv6 is False and ClusterSettings.objects.get(pk=1).enable_ipv6 is True
    with pytest.raises(Conflict, match=f"come from {path}"):
        services.cluster_settings_update(changes={"enable_ipv6": True})
    response = admin_client.post(reverse("admin:ipam_clustersettings_change", args=[1]),
                                 {"enable_ipv4": "on", "enable_ipv6": "on"})
    assert response.status_code == 403
    page = admin_client.get(reverse("admin:ipam_clustersettings_change", args=[1]), follow=True)
    assert f"Set by {path}" in page.content.decode()


# ------------------------------------------------------------------------------------------- key by key


@pytest.mark.parametrize("family", [4, 6])
def test_enable_ipv4_and_ipv6_decide_which_pools_may_exist(conf, family):
    subnet, ips = ("10.4.0.0/24", ["10.4.0.10"]) if family == 4 else ("fd04::/64", ["fd04::10"])
    f.pool(f"before-{family}", subnet, ips)
    conf(f"enableIPv{family}: false\n")
    with pytest.raises(SpecInvalid, match=f"IPv{family} is disabled"):
        f.pool(f"after-{family}", subnet, [ips[0].replace("10", "11")])


@pytest.mark.parametrize(("key", "kind"), [("enableStatefulSet", "StatefulSet"),
                                           ("enableKubevirtStaticIP", "VirtualMachineInstance")])
@pytest.mark.parametrize("on", [True, False])
def test_static_ip_switches_decide_whether_a_recreated_pod_keeps_its_address(conf, key, kind, on):
    conf(f"{key}: {str(on).lower()}\n")
    f.pool("p4", "10.5.0.0/24", ["10.5.0.10-10.5.0.20"])
    first = f.allocate(sts_pod("uid-1", kind=kind))["ips"][0]["address"]
    again = f.allocate(sts_pod("uid-2", kind=kind))["ips"][0]["address"]
    recreated = AddressHistory.objects.filter(pod_uid="uid-1", release_reason="pod-recreated").exists()
    assert (again == first, recreated) == ((True, False) if on else (False, True))


def test_enable_clean_outdated_endpoint_is_what_the_gc_reads(conf):
    conf("enableCleanOutdatedEndpoint: true\n")
    assert ClusterSettings.load().enable_clean_outdated_endpoint is True  # the GC's effect: tests/controllers/gc


def test_enable_spider_subnet_decides_whether_a_pool_joins_its_subnet(conf):
    subnet = services.subnet_create(tenant=f.tenant(), name="s", spec={"subnet": "10.6.0.0/24",
                                                                        "ips": ["10.6.0.10-10.6.0.90"]})
    assert f.pool("joined", "10.6.0.0/24", ["10.6.0.10"]).owner_subnet == subnet
    conf("enableSpiderSubnet: false\n")
    assert f.pool("alone", "10.6.0.0/24", ["10.6.0.11"]).owner_subnet is None


@pytest.mark.parametrize("key", ["enableSpiderSubnet", "enableAutoPoolForApplication"])
def test_auto_pools_need_both_subnet_switches(conf, key):
    from spiderweb.ipam.autopools import autopools_reconcile

    services.subnet_create(tenant=f.tenant(), name="s4", spec={"subnet": "10.7.0.0/24", "ips": ["10.7.0.10-10.7.0.40"]})
    app = App(api_version="apps/v1", kind="Deployment", namespace="default", name="web", uid=str(uuid.uuid4()))
    arguments = dict(app=app, requests=[SubnetRequest("eth0", v4="s4")], ip_number=IPNumber(True, 1), replicas=1,
                     reclaim=True)
    assert autopools_reconcile(**arguments)[0].desired == 2
    conf(f"{key}: false\n")
    with pytest.raises(InvalidInput, match="auto pools need enableSpiderSubnet and enableAutoPoolForApplication"):
        autopools_reconcile(**arguments)


@pytest.mark.parametrize(("key", "field"), [("enableIPConflictDetection", "enableIPConflictDetection"),
                                            ("enableGatewayDetection", "enableGatewayDetection")])
def test_detection_switches_reach_the_ipam_plugin_through_the_allocation(conf, key, field):
    f.pool("p4", "10.8.0.0/24", ["10.8.0.10-10.8.0.20"], gateway="10.8.0.1")
    assert f.allocate(sts_pod("u-a", kind="Pod", name="a"))["ips"][0][field] is False
    conf(f"{key}: true\n")
    assert f.allocate(sts_pod("u-b", kind="Pod", name="b"))["ips"][0][field] is True


def test_enable_validating_resources_deleted_webhook_refuses_deleting_a_pool_in_use(conf):
    from spiderweb.controllers.mirror.admission import admission_delete
    from spiderweb.k8s.admission import AdmissionRequest

    pool = f.pool("p4", "10.9.0.0/24", ["10.9.0.10-10.9.0.20"])
    f.allocate(sts_pod("u-1", kind="Pod", name="a"))
    request = AdmissionRequest(uid="r", kind="SpiderIPPool", operation="DELETE", name="p4", namespace="",
                               object=None, old_object={"metadata": {"name": "p4"}}, dry_run=True, username="u")
    admission_delete(kind="SpiderIPPool", request=request)  # off (Spiderpool's default): allowed
    conf("enableValidatingResourcesDeletedWebhook: true\n")
    with pytest.raises(PoolInUse, match="enableValidatingResourcesDeletedWebhook is on"):
        admission_delete(kind="SpiderIPPool", request=request)
    assert IPPool.objects.filter(pk=pool.pk).exists()


def test_cluster_subnet_default_flexible_ip_number_sizes_auto_pools(conf):
    from spiderweb.engine.autopool import ip_number_parse

    conf("clusterSubnetDefaultFlexibleIPNumber: 3\n")
    default = ClusterSettings.load().cluster_subnet_default_flexible_ip_number
    assert ip_number_parse(None, cluster_default=default).desired(2) == 5


def test_a_bad_file_stops_the_process_at_start_up(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "conf.yml").write_text("enableIPv4: maybe\n")
    env = {**os.environ, "SPIDERWEB_CONFIG_PATH": str(tmp_path / "conf.yml"), "SPIDERWEB_SECRET_KEY": "x"}
    run = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0
    assert f"invalid {tmp_path}/conf.yml: enableIPv4 must be true or false, got 'maybe'" in run.stderr
