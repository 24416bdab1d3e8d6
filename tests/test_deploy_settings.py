"""Production transport and session settings: `manage.py check --deploy` is clean with them (issue 10, Medium 6).

Each case runs in a fresh interpreter, because settings are read once per process.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "SPIDERWEB_HTTPS": "true",
    "SPIDERWEB_TRUST_X_FORWARDED_PROTO": "true",
    "SPIDERWEB_ALLOWED_HOSTS": "ipam.example.com",
    "SPIDERWEB_SECRET_KEY": "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz",
}


def manage(tmp_path, *args, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIDERWEB_")}
    environment |= {"SPIDERWEB_STATE_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "spiderweb.settings", **env}
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=environment, capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_check_deploy_is_clean_with_the_production_settings(tmp_path):
    run = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no issues" in run.stdout


@pytest.mark.parametrize("missing", ["SPIDERWEB_HTTPS"])
def test_check_deploy_complains_without_https(tmp_path, missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    run = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **env)
    assert run.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in run.stderr, run.stderr


PRINT = ("import json, spiderweb.settings as s; print(json.dumps([s.SECURE_PROXY_SSL_HEADER, s.SESSION_COOKIE_SECURE,"
         " s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_REDIRECT_EXEMPT]))")


def test_the_internal_api_and_probes_are_exempt_from_the_redirect(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIDERWEB_")}
    environment |= {"SPIDERWEB_STATE_DIR": str(tmp_path), **PRODUCTION}
    run = subprocess.run([sys.executable, "-c", PRINT], env=environment, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    import json

    proxy, session, csrf, redirect, hsts, exempt = json.loads(run.stdout)
    assert proxy == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert session and csrf and redirect and hsts == 31_536_000
    assert "^api/internal/" in exempt
