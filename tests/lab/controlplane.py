"""A real, throw-away Kubernetes control plane for tests: etcd + kube-apiserver +
kube-controller-manager, run from binaries built by ``tests/lab/build.sh``.

Why not a mock: Spiderweb's webhooks, RBAC, CRDs, garbage collection and the
Multus/CNI chain all talk to a real apiserver in production; only a real one
validates, defaults, authorises and runs the workload controllers the same way.

Why these choices (see /work/shared/notes/k8s-lab.md for the research):

* Certificates are made in-process with ``cryptography`` (ECDSA P-256, one CA
  signing both serving and client certs), so no ``openssl`` call and nothing to
  download. The serving cert has an IP SAN for 127.0.0.1 because Python's ``ssl``
  checks it.
* Kubeconfigs embed the certificate data, so every consumer (the Python client,
  kubectl, Multus, the node agent) reads one self-contained file.
* All ports are random free loopback ports: a Debian etcd may own 2379/2380 and
  several labs (pytest-xdist, a developer's ``make lab``) may run at once.
* ``--advertise-address=127.0.0.1`` because the VM has no default route, and the
  apiserver dies looking for one without it.
* No kubelet and no scheduler run here: pods created by the controllers stay
  ``Pending``. Tests that need running pods drive pod status themselves.
"""

from __future__ import annotations

import atexit
import base64
import datetime as _dt
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LAB_DIR = Path(__file__).resolve().parent
BUILD_SH = LAB_DIR / "build.sh"
SERVICE_CIDR = "10.0.0.0/24"
# The pod CIDR the controller-manager is told (no node IPAM runs: it only shows in the flags, as in a kubeadm cluster).
POD_CIDR = "10.244.0.0/16"
CONTROL_PLANE_NODE = "lab-control-plane"
KCM_CONTROLLERS = "*,-node-lifecycle-controller,-taint-eviction-controller"


# --------------------------------------------------------------------------- build


def find_bin_dir() -> Path | None:
    """Return the bin dir of a finished build for the current pins, or None.

    ``$SPIDERWEB_LAB_BIN`` wins (for binaries built elsewhere); otherwise ask
    ``build.sh --bin-dir``, which computes the cache key without building.
    """
    if os.environ.get("SPIDERWEB_LAB_BIN"):
        p = Path(os.environ["SPIDERWEB_LAB_BIN"])
        return p if (p / "kube-apiserver").exists() else None
    try:
        r = subprocess.run(["bash", str(BUILD_SH), "--bin-dir"], capture_output=True, text=True)
    except OSError:
        return None
    return Path(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else None


def ensure_built() -> Path:
    """Run build.sh (a no-op on a cache hit) and return the bin dir it printed last."""
    r = subprocess.run(["bash", str(BUILD_SH)], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"tests/lab/build.sh failed with exit code {r.returncode}")
    print(r.stdout, end="")
    return Path(r.stdout.strip().splitlines()[-1])


def recorded_build_times(bin_dir: Path) -> dict[str, str]:
    """Last recorded 'cold' and 'warm' lines of <key>/build-times.txt (written by build.sh)."""
    times: dict[str, str] = {}
    f = Path(bin_dir).parent / "build-times.txt"
    if f.exists():
        for line in f.read_text().splitlines():
            kind, _, rest = line.partition(" ")
            times[kind] = rest
    return times


# --------------------------------------------------------------------------- certs


def _pem_cert(c: x509.Certificate) -> bytes:
    return c.public_bytes(serialization.Encoding.PEM)


def _pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class TinyCA:
    """Self-signed CA issuing serving and client certificates (7 days, ECDSA P-256).

    The apiserver maps a client cert to a user: CN is the user name and each O
    is a group, so ``O=system:masters`` is cluster-admin and a cert with no
    groups has no rights beyond the defaults RBAC gives ``system:authenticated``.
    """

    def __init__(self, cn: str = "spiderweb-lab-ca"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = _dt.datetime.now(_dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, cn: str, *, groups=(), server_ips=(), server_dns=()):
        """Return (cert, key). With server_ips/server_dns it is a serving cert, else a client cert."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        now = _dt.datetime.now(_dt.UTC)
        serving = bool(server_ips or server_dns)
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5))
            .not_valid_after(now + _dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if serving else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if serving:
            sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            sans += [x509.DNSName(d) for d in server_dns]
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(self.key, hashes.SHA256()), key


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A currently free loopback TCP port (tiny race window; fine for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary_version(path: Path) -> tuple[int, ...]:
    """Parse 'X.Y.Z' out of ``<binary> --version`` (used to decide etcd feature gates)."""
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- control plane


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in ``workdir``.

    Use as a context manager, or call ``start()`` / ``stop()``. After start:
    ``kubeconfig`` (admin, system:masters), ``server`` (https URL), ``ca_path``,
    ``startup_seconds`` (start() until the apiserver is ready and the
    controller-manager has created the ``default`` ServiceAccount, i.e. until
    every component has proven it works). Logs: ``workdir/<component>.log``.
    """

    def __init__(self, workdir, bin_dir, *, timeout: float = 120.0):
        self.workdir = Path(workdir).resolve()
        self.bin_dir = Path(bin_dir).resolve()
        self.timeout = timeout
        self.certs = self.workdir / "certs"
        self.ca_path = self.certs / "ca.crt"
        self.kubeconfig: Path | None = None
        self.server: str | None = None
        self.startup_seconds: float | None = None
        self.apiserver_ready_seconds: float | None = None
        self.etcd_url: str | None = None
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._ca: TinyCA | None = None
        self._ssl: ssl.SSLContext | None = None
        self.kcm_args: list[str] = []
        # The client certificate kube-apiserver presents to every admission webhook (its own CA, so a webhook that
        # trusts it trusts nothing else), given to the API server by its AdmissionConfiguration.
        self.webhook_client_ca_path = self.certs / "webhook-client-ca.crt"
        self.webhook_client_cert_path = self.certs / "webhook-client.crt"
        self.webhook_client_key_path = self.certs / "webhook-client.key"

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start everything and block until it all works; stop() on any failure."""
        t0 = time.monotonic()
        for name in ("etcd-data", "certs"):  # a lab is always fresh
            shutil.rmtree(self.workdir / name, ignore_errors=True)
        self.certs.mkdir(parents=True)
        atexit.register(self.stop)  # never leave orphans if the test run dies
        try:
            port = free_port()
            self.server = f"https://127.0.0.1:{port}"
            self._write_certs()
            self._start_etcd()
            self._start_apiserver(port)
            self.kubeconfig = self._write_kubeconfig("admin", self.certs / "admin.crt", self.certs / "admin.key")
            self._wait("kube-apiserver /readyz", lambda: self._get("/readyz") == 200)
            self.apiserver_ready_seconds = time.monotonic() - t0
            self._start_kcm()
            sa = "/api/v1/namespaces/default/serviceaccounts/default"
            self._wait("kube-controller-manager (default ServiceAccount)", lambda: self._get(sa) == 200)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """SIGTERM each component (reverse start order), SIGKILL after 10 s."""
        while self._procs:
            name, p = self._procs.pop()
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                except ProcessLookupError:
                    pass

    # -- identities --------------------------------------------------------

    def issue_client_kubeconfig(self, user_cn: str, groups=()) -> Path:
        """Write ``workdir/<user_cn>.kubeconfig`` for a new client cert (CN=user, O=groups).

        For least-privilege identities such as the node agent: it has no rights
        until a test or the Helm chart binds RBAC to the user or a group.
        """
        assert self._ca is not None, "start() first"
        cert, key = self._ca.issue(user_cn, groups=groups)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", user_cn)
        crt, kp = self.certs / f"{safe}.crt", self.certs / f"{safe}.key"
        crt.write_bytes(_pem_cert(cert))
        kp.write_bytes(_pem_key(key))
        kp.chmod(0o600)
        return self._write_kubeconfig(safe, crt, kp)

    # -- internals ---------------------------------------------------------

    def _write_certs(self) -> None:
        ca = self._ca = TinyCA()
        c = self.certs
        (c / "ca.crt").write_bytes(_pem_cert(ca.cert))
        (c / "ca.key").write_bytes(_pem_key(ca.key))
        # 10.0.0.1 is the in-cluster `kubernetes` Service IP of SERVICE_CIDR.
        srv, srv_key = ca.issue(
            "kube-apiserver",
            server_ips=["127.0.0.1", "10.0.0.1"],
            server_dns=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )
        (c / "apiserver.crt").write_bytes(_pem_cert(srv))
        (c / "apiserver.key").write_bytes(_pem_key(srv_key))
        adm, adm_key = ca.issue("admin", groups=["system:masters"])
        (c / "admin.crt").write_bytes(_pem_cert(adm))
        (c / "admin.key").write_bytes(_pem_key(adm_key))
        sa = ec.generate_private_key(ec.SECP256R1())  # service-account token signer
        (c / "sa.key").write_bytes(_pem_key(sa))
        (c / "sa.pub").write_bytes(
            sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        self._write_webhook_client_certs()
        for k in c.glob("*.key"):
            k.chmod(0o600)
        # Readiness polling uses the admin cert: anonymous /readyz is 403 until RBAC bootstrap ends.
        ctx = ssl.create_default_context(cafile=str(c / "ca.crt"))
        ctx.load_cert_chain(c / "admin.crt", c / "admin.key")
        self._ssl = ctx

    def _write_webhook_client_certs(self) -> None:
        """The API server's webhook client certificate and the AdmissionConfiguration that hands it out.

        The kubeconfig's user ``*`` matches every webhook host (Service or URL), as in a cluster whose admin wires
        the chart's client certificate into ``--admission-control-config-file`` (helm/README.md).
        """
        c = self.certs
        client_ca = TinyCA("spiderweb-lab-webhook-client-ca")
        self.webhook_client_ca_path.write_bytes(_pem_cert(client_ca.cert))
        crt, key = client_ca.issue("kube-apiserver-webhook-client")
        self.webhook_client_cert_path.write_bytes(_pem_cert(crt))
        self.webhook_client_key_path.write_bytes(_pem_key(key))
        kubeconfig = c / "webhook-client.kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1",
            "kind": "Config",
            "users": [{"name": "*", "user": {"client-certificate-data": _b64(_pem_cert(crt)),
                                             "client-key-data": _b64(_pem_key(key))}}],
        }, indent=2) + "\n")
        kubeconfig.chmod(0o600)
        webhook_admission = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "WebhookAdmissionConfiguration",
                             "kubeConfigFile": str(kubeconfig)}
        (c / "admission-config.json").write_text(json.dumps({
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration",
            "plugins": [{"name": plugin, "configuration": webhook_admission}
                        for plugin in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")],
        }, indent=2) + "\n")

    def _write_kubeconfig(self, user: str, crt: Path, key: Path) -> Path:
        """Kubeconfig with embedded data (JSON, which is valid YAML for every reader)."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "lab",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": _b64(self.ca_path.read_bytes()),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": _b64(crt.read_bytes()),
                        "client-key-data": _b64(key.read_bytes()),
                    },
                }
            ],
            "contexts": [{"name": user, "context": {"cluster": "lab", "user": user}}],
            "current-context": user,
        }
        path = self.workdir / f"{user}.kubeconfig"
        path.write_text(json.dumps(cfg, indent=2) + "\n")
        path.chmod(0o600)
        return path

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        """Start a component in its own process group, output to workdir/<name>.log."""
        with open(self.workdir / f"{name}.log", "wb") as log:
            p = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._procs.append((name, p))
        return p

    def _start_etcd(self) -> None:
        cport, pport = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{cport}"
        peer = f"http://127.0.0.1:{pport}"
        self._spawn(
            "etcd",
            [
                "--name=lab",
                f"--data-dir={self.workdir / 'etcd-data'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=lab={peer}",
                "--unsafe-no-fsync=true",  # tests don't need durability; fsync dominates latency
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(self.etcd_url + "/health", timeout=2) as r:
                    return json.load(r).get("health") == "true"
            except (OSError, ValueError):
                return False

        self._wait("etcd /health", healthy)

    def _start_apiserver(self, port: int) -> None:
        c = self.certs
        args = [
            f"--etcd-servers={self.etcd_url}",
            f"--secure-port={port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",  # no default route on the VM
            f"--cert-dir={c}",
            f"--tls-cert-file={c / 'apiserver.crt'}",
            f"--tls-private-key-file={c / 'apiserver.key'}",
            f"--client-ca-file={c / 'ca.crt'}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            f"--service-account-issuer={self.server}/",
            f"--service-account-key-file={c / 'sa.pub'}",
            f"--service-account-signing-key-file={c / 'sa.key'}",
            # No kubelet: no token volumes (ServiceAccount) and no not-ready taint that
            # only the (disabled) node-lifecycle controller would ever remove.
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
            "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
            # Webhooks may require the API server's client certificate (mutual TLS, as the chart's does).
            f"--admission-control-config-file={c / 'admission-config.json'}",
            # Keep a loopback IP out of the `kubernetes` Service endpoints.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]
        if binary_version(self.bin_dir / "etcd") < (3, 7, 0):
            # etcd < 3.7 has no RangeStream RPC; skip the apiserver's probe for it.
            args.append("--feature-gates=EtcdRangeStream=false")
        self._spawn("kube-apiserver", args)

    def kcm_pod_manifest(self, node_name: str = CONTROL_PLANE_NODE) -> dict:
        """The controller-manager's mirror pod as a kubeadm cluster shows it (``kube-system``, label
        ``component=kube-controller-manager``, its real command line): what SpiderCoordinator CIDR discovery reads
        when there is no ``kubeadm-config``. Bound to ``node_name``, which must exist (PodGC deletes pods bound to
        missing nodes)."""
        assert self.kcm_args, "start() first"
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"kube-controller-manager-{node_name}", "namespace": "kube-system",
                         "labels": {"component": "kube-controller-manager", "tier": "control-plane"}},
            "spec": {"nodeName": node_name, "hostNetwork": True, "priorityClassName": "system-node-critical",
                     "containers": [{"name": "kube-controller-manager",
                                     "image": "registry.k8s.io/kube-controller-manager:v1.37.2",
                                     "command": ["kube-controller-manager", *self.kcm_args]}]},
        }

    def _start_kcm(self) -> None:
        self.kcm_args = self._kcm_args()
        self._spawn("kube-controller-manager", self.kcm_args)

    def _kcm_args(self) -> list[str]:
        c = self.certs
        return (
            [
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                "--use-service-account-credentials=false",  # act as admin; no per-controller SAs
                f"--controllers={KCM_CONTROLLERS}",
                f"--root-ca-file={c / 'ca.crt'}",
                f"--service-account-private-key-file={c / 'sa.key'}",
                f"--cluster-signing-cert-file={c / 'ca.crt'}",
                f"--cluster-signing-key-file={c / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--cluster-cidr={POD_CIDR}",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
                # Its default, /usr/libexec/kubernetes/..., would be created on the host.
                f"--flex-volume-plugin-dir={self.workdir / 'flexvolume'}",
            ]
        )

    def _get(self, path: str) -> int:
        """HTTP status of an admin GET on the apiserver (0 if it does not answer)."""
        try:
            with urllib.request.urlopen(self.server + path, context=self._ssl, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def _wait(self, what: str, ok) -> None:
        """Poll ok() every 100 ms; fail fast with the log tail if a component died."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for name, p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {p.returncode} while waiting for {what}:\n" + self._tail(name)
                    )
            if ok():
                return
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {self.timeout}s waiting for {what}:\n" + self._tail(self._procs[-1][0]))

    def _tail(self, name: str, n: int = 30) -> str:
        try:
            return "\n".join((self.workdir / f"{name}.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
