"""The chart against a real kube-apiserver (the lab in tests/lab): what test_chart.py checks with a Python model of
apiextensions v1, checked here by the apiserver itself.

Given the lab control plane, when the chart's CRDs are created, then they become Established; Spiderpool's
example manifests are accepted with strict field validation and defaulted as Spiderpool's CRDs default them;
the invalid manifests of test_chart.py are refused; discovery shows the short names, the `spiderpool` category
and the status subresources; `kubectl get` tables show Spiderpool's columns; and every object `helm template`
renders passes a server-side dry run.

Skipped when the lab binaries are not built (unless SPIDERWEB_REQUIRE_LAB is set, as in tests/lab).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import utils as k8s_utils
from kubernetes.client.rest import ApiException
from kubernetes.config import new_client_from_config

from tests.helm.test_chart import (
    CRD_DIR,
    CRDS,
    EXAMPLE_DOCS,
    GROUP,
    HELM,
    INVALID,
    INVENTORY,
    MISSING,
    REQUIRED_SETS,
    _crd_kind_of,
    _example,
    _helm_run,
)
from tests.lab.controlplane import ControlPlane, ensure_built, find_bin_dir

pytestmark = pytest.mark.lab
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


@pytest.fixture(scope="module")
def api():
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if not os.environ.get("SPIDERWEB_REQUIRE_LAB"):
            pytest.skip("lab binaries not built (run tests/lab/build.sh, or set SPIDERWEB_REQUIRE_LAB=1)")
        bin_dir = ensure_built()
    with tempfile.TemporaryDirectory(prefix="spiderweb-helm-lab-") as wd, ControlPlane(wd, bin_dir) as lab:
        api = new_client_from_config(config_file=str(lab.kubeconfig))
        ext = k8s.ApiextensionsV1Api(api)
        for path in sorted(CRD_DIR.glob("*.yaml")):
            ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        deadline = time.monotonic() + 60
        pending = {crd["metadata"]["name"] for crd in CRDS.values()}
        while pending and time.monotonic() < deadline:
            for name in sorted(pending):
                conditions = ext.read_custom_resource_definition(name).status.conditions or []
                if {c.type for c in conditions if c.status == "True"} >= {"Established", "NamesAccepted"}:
                    pending.discard(name)
            time.sleep(0.2)
        assert not pending, f"CRDs not established: {pending}"
        yield api
        api.close()


def _create(api, doc: dict, *, dry_run: str | None = None) -> dict:
    kind = _crd_kind_of(doc)
    crd = CRDS[kind]["spec"]
    group, version, plural = crd["group"], crd["versions"][0]["name"], crd["names"]["plural"]
    objects = k8s.CustomObjectsApi(api)
    kwargs = {"field_validation": "Strict"} | ({"dry_run": dry_run} if dry_run else {})
    if crd["scope"] == "Namespaced":
        return objects.create_namespaced_custom_object(group, version, doc["metadata"]["namespace"], plural, doc,
                                                       **kwargs)
    return objects.create_cluster_custom_object(group, version, plural, doc, **kwargs)


def test_examples_are_accepted_and_defaulted_by_the_apiserver(api):
    created = {}
    for name, doc in EXAMPLE_DOCS:
        if _crd_kind_of(doc):
            created[name] = _create(api, copy.deepcopy(doc))
    assert len(created) == len([d for _, d in EXAMPLE_DOCS if _crd_kind_of(d)])
    pool = next(o for o in created.values() if o["metadata"]["name"] == "custom-ipv4-ippool")
    assert (pool["spec"]["default"], pool["spec"]["disable"]) == (False, False)
    smc = next(o for o in created.values() if o["metadata"]["name"] == "ipvlan-bond")
    assert smc["spec"]["disableIPAM"] is False and smc["spec"]["coordinator"]["hostRuleTable"] == 500
    endpoint = next(o for o in created.values() if o["kind"] == "SpiderEndpoint")
    assert [ip["vlan"] for ip in endpoint["status"]["current"]["ips"]] == [0, 0]


@pytest.mark.parametrize(("case", "kind", "name", "path", "value", "error"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_manifest_is_refused_by_the_apiserver(api, case, kind, name, path, value, error):
    doc = _example(kind, name)
    doc["metadata"]["name"] = f"invalid-{abs(hash(case)) % 10**8}"
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if value is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    with pytest.raises(ApiException) as exc:
        _create(api, doc, dry_run="All")
    assert exc.value.status in (400, 422), exc.value.body


def _get_json(api, path: str, accept: str = "application/json") -> dict:
    return api.call_api(path, "GET", header_params={"Accept": accept}, response_types_map={200: "object"},
                        auth_settings=["BearerToken"], _return_http_data_only=True)


def test_discovery_has_short_names_categories_and_status(api):
    resources = _get_json(api, f"/apis/{GROUP}/v2beta1")["resources"]
    by_name = {r["name"]: r for r in resources}
    for kind, want in INVENTORY.items():
        resource = by_name[want["plural"]]
        assert resource["kind"] == kind
        assert resource["shortNames"] == want["short"]
        assert resource["categories"] == ["spiderpool"]
        assert resource["namespaced"] is (want["scope"] == "Namespaced")
        assert (f"{want['plural']}/status" in by_name) is want["status"]


def test_tables_show_spiderpool_columns(api):
    def table(path):
        return _get_json(api, path, TABLE)

    objects = k8s.CustomObjectsApi(api)
    body = _example("SpiderIPPool", "static-ipv4-ippool")
    body["metadata"]["name"] = "table-pool"
    body["spec"]["podAffinity"] = {"matchLabels": {"ipam.spidernet.io/app-namespace": "web-ns"}}
    objects.create_cluster_custom_object(GROUP, "v2beta1", "spiderippools", body)
    status = objects.get_cluster_custom_object(GROUP, "v2beta1", "spiderippools", "table-pool")
    status["status"] = {"allocatedIPCount": 1, "totalIPCount": 4}
    objects.replace_cluster_custom_object_status(GROUP, "v2beta1", "spiderippools", "table-pool", status)

    pools = table(f"/apis/{GROUP}/v2beta1/spiderippools/table-pool")
    columns = [(c["name"], c["priority"]) for c in pools["columnDefinitions"]]
    assert columns == [("Name", 0), ("VERSION", 0), ("SUBNET", 0), ("ALLOCATED-IP-COUNT", 0), ("TOTAL-IP-COUNT", 0),
                       ("DEFAULT", 0), ("DISABLE", 10), ("NodeName", 10), ("MultusName", 10), ("APP-NAMESPACE", 10)]
    cells = pools["rows"][0]["cells"]
    assert cells[1:10] == [4, "172.18.41.0/24", 1, 4, False, False, None, None, "web-ns"]

    endpoints = table(f"/apis/{GROUP}/v2beta1/namespaces/default/spiderendpoints/web-0")
    assert [c["name"] for c in endpoints["columnDefinitions"]][1:7] == [
        "INTERFACE", "IPV4POOL", "IPV4", "IPV6POOL", "IPV6", "NODE"]
    assert endpoints["rows"][0]["cells"][1:7] == [
        "eth0", "ippool-test-ens192", "10.6.168.177/16", "ippool-test-ens192-v6", "fd00:10:6::177/64", "node1"]


@pytest.mark.skipif(HELM is None, reason="no helm binary (build one with tests/helm/build_helm.sh)")
def test_rendered_chart_passes_a_server_side_dry_run(api):
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": "spiderweb-system"}})
    extra = ["spiderpoolController.podResourceInject.enabled=true", "clusterDefaultPool.installIPv4IPPool=true",
             "clusterDefaultPool.ipv4Subnet=10.6.0.0/16", "clusterDefaultPool.ipv4IPRanges={10.6.168.100}"]
    out = _helm_run("template", "spiderweb", "--namespace", "spiderweb-system",
                    sets=REQUIRED_SETS + extra).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert len(docs) > 20
    for doc in docs:
        try:
            k8s_utils.create_from_dict(api, doc, namespace=doc["metadata"].get("namespace"), dry_run="All")
        except k8s_utils.FailToCreateError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc}")
    # the init Job's objects go through the same CRD validation as a user's
    objects = yaml.safe_load(next(d for d in docs if d["metadata"]["name"] == "spiderweb-init"
                                  and d["kind"] == "ConfigMap")["data"]["objects.json"])
    for obj in objects:
        obj["body"]["metadata"]["name"] = f"init-{obj['body']['metadata']['name']}"  # examples own "default"
        _create(api, obj["body"], dry_run="All")

