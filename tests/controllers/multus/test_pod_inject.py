"""The pod resource-injection rules (spec §10.5) on dicts, and the webhook view's switches (no API server needed:
a pod it must leave alone never reaches Kubernetes)."""

from __future__ import annotations

import doctest
import json

import pytest

from spiderweb.engine.errors import InvalidInput
from spiderweb.k8s import podinject, spiderpool_conf

RDMA, NETWORK = "cni.spidernet.io/rdma-resource-inject", "cni.spidernet.io/network-resource-inject"


def smc(name, key, value, cni_type="macvlan", sub=None):
    return {"metadata": {"namespace": "net", "name": name, "labels": {key: value}},
            "spec": {"cniType": cni_type, **({cni_type.replace("-", ""): sub} if sub is not None else {})}}


def test_docstring_examples_hold():
    assert doctest.testmod(podinject).failed == 0


@pytest.mark.parametrize(("chosen", "message"), [
    (smc("o", RDMA, "x", "ovs", {"bridge": "br0"}), "cniType ovs cannot be injected"),
    (smc("m", RDMA, "x", "macvlan", {"master": ["e"], "rdmaResourceName": "r"}), "needs a resource name and at least"),
    (smc("s", NETWORK, "x", "sriov", {"resourceName": "vf"}), "a network with a resource name needs at least one"),
], ids=["ovs", "rdma-without-pools", "network-without-pools"])
def test_a_network_breaking_the_inject_rules_refuses_the_pod(chosen, message):
    key = next(iter(chosen["metadata"]["labels"]))
    pod = {"metadata": {"annotations": {key: "x"}}, "spec": {"containers": [{"name": "c"}]}}
    with pytest.raises(InvalidInput, match=message):
        podinject.pod_inject(pod, None, [chosen])


@pytest.fixture
def review(client):
    def post(namespace="apps", annotations=None):
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u1", "kind": {"kind": "Pod"}, "operation": "CREATE", "namespace": namespace,
            "object": {"metadata": {"name": "p", "annotations": annotations or {RDMA: "hca"}},
                       "spec": {"containers": [{"name": "c"}]}}, "userInfo": {"username": "u"}}}
        response = client.post("/mutate--v1-pod", json.dumps(body), content_type="application/json", secure=True)
        return response.json()["response"]
    return post


@pytest.mark.parametrize("text", [None, "podResourceInject: {enabled: false}",
                                  "podResourceInject: {enabled: true, namespacesExclude: [apps]}",
                                  "podResourceInject: {enabled: true, namespacesInclude: [other]}"],
                         ids=["no-conf", "disabled", "excluded", "not-included"])
def test_pods_the_settings_leave_out_are_admitted_unchanged(review, tmp_path, monkeypatch, text):
    if text is not None:
        (tmp_path / "conf.yml").write_text(text)
        monkeypatch.setenv(spiderpool_conf.ENV_PATH, str(tmp_path / "conf.yml"))
    spiderpool_conf.configured.cache_clear()
    try:
        answer = review()
    finally:
        monkeypatch.delenv(spiderpool_conf.ENV_PATH, raising=False)
        spiderpool_conf.configured.cache_clear()
    assert answer["allowed"] is True and "patch" not in answer
