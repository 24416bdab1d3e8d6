"""Certificates for the admission webhooks: a private CA and a serving certificate signed by it.

The kube-apiserver calls webhooks over HTTPS only and verifies the serving certificate against the ``caBundle`` of
the webhook configuration, so outside Helm (which generates its own) something has to make both. ECDSA P-256 keys,
SANs for every name and address the API server may use (Python's and Go's TLS check SANs, not the CN). Never
imports Django.
"""

from __future__ import annotations

import base64
import datetime as _dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class WebhookCertificate:
    """Where the files went and the base64 CA to put into ``clientConfig.caBundle``."""

    ca_path: Path
    cert_path: Path
    key_path: Path
    ca_bundle: str


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def webhook_certificate_write(directory: Path | str, *, dns_names: list[str], ip_addresses: list[str] = (),
                              days: int = 365) -> WebhookCertificate:
    """Write ``ca.crt``, ``tls.crt`` and ``tls.key`` (mode 600) into ``directory`` and return the caBundle.

    ``dns_names`` and ``ip_addresses`` become the serving certificate's SANs; the first DNS name (or address)
    is also its CN. Raises ``ValueError`` for an address that does not parse or when no name is given.
    """
    if not dns_names and not ip_addresses:
        raise ValueError("give at least one DNS name or IP address for the serving certificate")
    addresses = [ipaddress.ip_address(a) for a in ip_addresses]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.UTC)
    not_before, not_after = now - _dt.timedelta(minutes=5), now + _dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spiderweb-webhook-ca")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cn = dns_names[0] if dns_names else str(addresses[0])
    sans = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(a) for a in addresses]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    paths = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(ca_pem)
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    paths[2].chmod(0o600)
    return WebhookCertificate(*paths, ca_bundle=base64.b64encode(ca_pem).decode())
