"""The OCI image ``make image`` builds, imported into containerd and run with runc, as a node would run it.

A private containerd (its own root, state and socket under the test's directory, no CRI plugin) imports the
archive; containers run with host networking so the portal reaches the test PostgreSQL on 127.0.0.1. Skipped, with
the reason, only where the archive is not built (``make image``; ``make test`` builds it and sets
``SPIDERWEB_REQUIRE_IMAGE=1``, which turns that skip into a failure) or where containerd cannot run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from knox.models import AuthToken

from spiderweb import __version__
from tests import live
from tests.ipam import factories as f
from tests.lab.controlplane import free_port
from tests.mirror.lab import wait_for

CACHE = Path(os.environ.get("SPIDERWEB_IMAGE_CACHE", "/var/cache/spiderweb-image"))
ARCHIVE = Path(os.environ.get("SPIDERWEB_IMAGE_TAR", CACHE / f"spiderweb-{__version__}.oci.tar"))
REFERENCE = f"localhost/spiderweb:{__version__}"
NAMESPACE = "spiderweb-test"

pytestmark = pytest.mark.slow


def _missing(reason: str):
    if os.environ.get("SPIDERWEB_REQUIRE_IMAGE"):
        pytest.fail(f"{reason} (SPIDERWEB_REQUIRE_IMAGE is set)")
    pytest.skip(reason)


class Containerd:
    """A containerd of the test's own and ``ctr`` against it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "containerd.sock"
        self.log = workdir / "containerd.log"
        config = workdir / "config.toml"
        config.write_text(f'version = 2\nroot = "{workdir}/root"\nstate = "{workdir}/state"\n'
                          f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                          f'[grpc]\n  address = "{self.socket}"\n')
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(["containerd", "--config", str(config)], stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def ctr(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["ctr", "--address", str(self.socket), "--namespace", NAMESPACE, *args],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} exited {result.returncode}: {result.stderr[-2000:]}")
        return result

    def ready(self) -> bool:
        if self.process.poll() is not None:
            return False
        return self.socket.exists() and self.ctr("version", check=False).returncode == 0

    def remove(self, name: str) -> None:
        """Kill a container's task, delete it (its shim and rootfs mount go with it) and the container."""
        self.ctr("task", "kill", "--signal", "SIGKILL", name, check=False)
        self.ctr("task", "delete", "--force", name, check=False)
        self.ctr("container", "rm", name, check=False)

    def stop(self) -> None:
        """Remove every container left in the namespace, then stop containerd."""
        if self.ready():
            for name in self.ctr("container", "ls", "-q", check=False).stdout.split():
                self.remove(name)
        live.stop_process(self.process)
        shutil.rmtree(self.workdir / "root", ignore_errors=True)  # the unpacked image: hundreds of MB


@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    if not ARCHIVE.exists():
        _missing(f"no image archive at {ARCHIVE}: run `make image`")
    absent = [tool for tool in ("containerd", "ctr", "runc") if shutil.which(tool) is None]
    if absent:
        _missing(f"{', '.join(absent)} not installed (Debian packages containerd and runc; `make image` installs them)")
    runtime = Containerd(tmp_path_factory.mktemp("containerd"))
    deadline = time.monotonic() + 30
    while not runtime.ready():
        if runtime.process.poll() is not None or time.monotonic() > deadline:
            runtime.stop()
            pytest.skip(f"containerd cannot run on this machine: {runtime.log.read_text(errors='replace')[-1500:]}")
        time.sleep(0.2)
    runtime.ctr("image", "import", str(ARCHIVE), timeout=300)
    yield runtime
    runtime.ctr("image", "rm", REFERENCE, check=False)
    runtime.stop()


def run_once(runtime: Containerd, *command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``ctr run --rm`` the image with ``command``; returns the finished process (stdout/stderr captured)."""
    args = ["run", "--rm", "--net-host"]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    return runtime.ctr(*args, REFERENCE, f"once-{uuid.uuid4().hex[:8]}", *command, check=False, timeout=120)


def test_the_archive_is_an_oci_layout_that_names_the_chart_default():
    if not ARCHIVE.exists():
        _missing(f"no image archive at {ARCHIVE}: run `make image`")
    with tarfile.open(ARCHIVE) as archive:
        names = archive.getnames()
        index = json.load(archive.extractfile("index.json"))
        docker = json.load(archive.extractfile("manifest.json"))
    assert {"oci-layout", "index.json", "manifest.json"} <= set(names)
    manifest = index["manifests"][0]
    assert manifest["annotations"]["io.containerd.image.name"] == REFERENCE
    assert docker[0]["RepoTags"] == [REFERENCE]


def test_containerd_imports_it_and_the_agent_prints_its_version(containerd):
    listed = containerd.ctr("image", "ls", "-q").stdout.split()
    assert REFERENCE in listed
    result = run_once(containerd, "python", "-m", "agent", "--version")
    assert (result.returncode, result.stdout) == (0, f"spiderweb-agent {__version__}\n"), result.stderr


def test_the_image_holds_the_projects_wheel_with_its_metadata_and_console_script(containerd):
    script = ("import importlib.metadata as m; d = m.distribution('spiderweb'); "
              "print(d.version); print(d.metadata['Requires-Python']); "
              "print(sorted(e.name for e in d.entry_points)); print(len(d.requires))")
    result = run_once(containerd, "python", "-c", script)
    assert result.returncode == 0, result.stderr
    version, python, scripts, requires = result.stdout.splitlines()
    assert (version, python, scripts) == (__version__, ">=3.11", "['spiderweb']")
    pinned = [line for line in (live.REPO / "requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    assert int(requires) == len(pinned)
    cli = run_once(containerd, "spiderweb", "version")
    assert cli.stdout == f"spiderweb {__version__}\n"
    tools = run_once(containerd, "sh", "-c", "command -v iptables && test -x /opt/spiderweb/venv/bin/gunicorn "
                                             "&& test -f /opt/spiderweb/static/admin/css/base.css && echo ok")
    assert tools.stdout.strip().endswith("ok"), tools.stdout + tools.stderr


def test_the_portal_in_the_image_answers_its_health_check_against_postgresql(containerd, transactional_db, staff,
                                                                              tmp_path):
    # Given a pool in the test database and the portal from the image, as the chart runs it: a non-root user, a
    # read-only root filesystem with a writable /tmp, several gunicorn workers with multiprocess metrics
    f.pool("image-pool", "10.80.0.0/24", ["10.80.0.10-10.80.0.19"])
    token = AuthToken.objects.create(user=staff)[1]
    port = free_port()
    env = {k: v for k, v in live.live_env().items() if k in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env |= {"SPIDERWEB_SECRET_KEY": "image-test", "SPIDERWEB_STATE_DIR": "/tmp/spiderweb",
            "PROMETHEUS_MULTIPROC_DIR": "/tmp/spiderweb/prometheus-portal", "SPIDERWEB_DB_CONN_MAX_AGE": "0"}
    name = f"portal-{uuid.uuid4().hex[:8]}"
    args = ["run", "-d", "--net-host", "--read-only", "--mount", "type=tmpfs,src=tmpfs,dst=/tmp,options=rw:mode=1777"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    containerd.ctr(*args, REFERENCE, name, "setpriv", "--reuid=10001", "--regid=10001", "--clear-groups",
                   "gunicorn", "--config=python:spiderweb.gunicorn_conf", "spiderweb.wsgi:application",
                   f"--bind=127.0.0.1:{port}", "--workers=2", "--worker-tmp-dir=/tmp/spiderweb")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the portal in the container", lambda: live.http_ok(f"{url}/healthz"), timeout=60)
        # When the kubelet probes it
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            # Then it answers from PostgreSQL
            assert (response.status, json.load(response)) == (200, {"database": "ok"})
        # And its metrics read the same database
        scraped = live.scrape(f"{url}/metrics")
        assert scraped.value("spiderweb_database_up") == 1
        assert scraped.value("spiderpool_total_ippool_counts") == 1
        # And the CLI in the image talks to it
        cli = run_once(containerd, "spiderweb", "show", "pools", "-o", "json",
                       env={"SPIDERWEB_PORTAL_URL": url, "SPIDERWEB_TOKEN": token})
        assert cli.returncode == 0, cli.stderr
        assert [p["name"] for p in json.loads(cli.stdout)] == ["image-pool"]
        # And the admin's static files are served from the image
        with urllib.request.urlopen(f"{url}/static/admin/css/base.css", timeout=10) as response:
            assert response.status == 200
    finally:
        containerd.remove(name)
