"""A live portal for the CLI: gunicorn on the test database (one per module; each test's rows are its own, as
``transactional_db`` empties the tables after it), users with API tokens, and ``run`` to call the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from knox.models import AuthToken

from spiderweb.cli.commands import main
from tests import live
from tests.api.conftest import member, staff, tenant_a, tenant_b  # noqa: F401


@pytest.fixture(scope="module")
def portal(django_db_setup, django_db_blocker, tmp_path_factory):
    """The portal without Kubernetes (``check`` and ``gc`` answer 503 there)."""
    with django_db_blocker.unblock():
        process = live.portal_start(tmp_path_factory.mktemp("cli-portal"), live.live_env())
    yield process
    live.stop(process)


@pytest.fixture(scope="module")
def lab_portal(django_db_setup, django_db_blocker, mirror_lab, tmp_path_factory):
    """The portal pointed at the lab's API server (for ``check``)."""
    with django_db_blocker.unblock():
        env = live.live_env(KUBECONFIG=str(mirror_lab.plane.kubeconfig))
        process = live.portal_start(tmp_path_factory.mktemp("cli-lab-portal"), env)
    yield process
    live.stop(process)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def run(capsys):
    """``run(portal, user, *argv)`` -> Result; ``user=None`` sends no token."""

    def call(portal, user, *argv: str, token: str | None = None) -> Result:
        if token is None and user is not None:
            token = AuthToken.objects.create(user=user)[1]
        capsys.readouterr()
        args = ["--portal", portal.url, *argv] + (["--token", token] if token else [])
        code = main(args)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call
