"""The admission webhook listener requires the API server's client certificate (mutual TLS, issue 10 High 1).

A forged AdmissionReview from anyone who can reach the port would otherwise write the database (a default pool in
any tenant, another tenant's gateway, the change log's user name). The real kube-apiserver presents the client
certificate its AdmissionConfiguration names, so its calls still pass.
"""

import json
import socket
import ssl
import urllib.request
from urllib.parse import urlsplit

import pytest

from spiderweb.k8s.crd import GROUP, VERSION

from .lab import crs_delete_all

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]


def _forged_review() -> bytes:
    pool = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": "forged"},
            "spec": {"subnet": "10.77.0.0/24", "ips": ["10.77.0.10"], "default": True}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "forged-1", "kind": {"group": GROUP, "version": VERSION, "kind": "SpiderIPPool"},
        "resource": {"group": GROUP, "version": VERSION, "resource": "spiderippools"}, "name": "forged",
        "operation": "CREATE", "userInfo": {"username": "someone-else"}, "object": pool, "dryRun": False,
    }}).encode()


def test_a_caller_without_the_client_certificate_is_refused_in_the_tls_handshake(webhook_portal):
    # Given the webhook listener and a caller that trusts its serving certificate but has no client certificate
    url = urlsplit(webhook_portal.url)
    context = ssl.create_default_context(cafile=str(webhook_portal.ca_path))
    request = (f"POST /validate-spiderpool-spidernet-io-v2beta1-spiderippool HTTP/1.1\r\nHost: {url.netloc}\r\n"
               "Content-Type: application/json\r\nConnection: close\r\n").encode()
    body = _forged_review()
    # When it sends a forged AdmissionReview, then the TLS layer refuses it (TLS 1.3 reports the missing
    # certificate on the first read) and no HTTP answer comes back
    with (pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
          socket.create_connection((url.hostname, url.port), timeout=5) as raw,
          context.wrap_socket(raw, server_hostname=url.hostname) as tls):
        tls.sendall(request + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        answer = tls.recv(4096)
        if not answer:  # closed without an alert: still no answer
            raise ConnectionResetError("closed")
        pytest.fail(f"the webhook answered a caller without a client certificate: {answer[:200]!r}")
    # and urllib (what a script would use) fails the same way
    with pytest.raises(OSError):
        urllib.request.urlopen(urllib.request.Request(f"{webhook_portal.url}/webhook-health-check"),
                               context=context, timeout=5).read()


def test_a_certificate_from_another_ca_is_refused(webhook_portal, tmp_path):
    # Given a client certificate that the API server's client CA did not sign
    from tests.lab.controlplane import TinyCA, _pem_cert, _pem_key

    crt, key = TinyCA("someone-elses-ca").issue("kube-apiserver-webhook-client")
    (tmp_path / "c.crt").write_bytes(_pem_cert(crt))
    (tmp_path / "c.key").write_bytes(_pem_key(key))
    context = ssl.create_default_context(cafile=str(webhook_portal.ca_path))
    context.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
    # When it calls the webhook, then it is refused
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{webhook_portal.url}/webhook-health-check", context=context, timeout=5).read()


def test_the_api_servers_requests_still_pass(mirror_lab, webhook_portal, transactional_db):
    # Given the webhooks registered with the real API server, which presents its client certificate
    pool = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SpiderIPPool", "metadata": {"name": "through-apiserver"},
            "spec": {"subnet": "10.78.0.0/24", "ips": ["10.78.0.10"]}}
    try:
        # When a pool is created through the API server, then the webhook wrote it (the API server got an answer)
        mirror_lab.custom.create_cluster_custom_object(GROUP, VERSION, "spiderippools", pool)
        from spiderweb.ipam.models import IPPool

        assert IPPool.objects.filter(name="through-apiserver").exists()
    finally:
        crs_delete_all(mirror_lab)
