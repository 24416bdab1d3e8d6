"""REST API tokens (issue 10 Low 7): stored hashed, expiring, rotated by their holder, never shown by the admin."""

import base64
import datetime as dt

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("carol", password="carol-password-1")


def _issue(user="carol", password="carol-password-1") -> dict:
    client = APIClient()
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    response = client.post(reverse("token-issue"), HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code == 200, response.content
    assert not response.cookies, "a token never travels in a cookie"
    return response.json()


def _with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_an_issued_token_is_stored_only_as_a_digest_and_expires(member):
    # Given a user, when they issue themselves a token with their password
    issued = _issue()
    token = issued["token"]
    # then it works
    assert _with(token).get(reverse("tenant-list")).status_code == 200
    # and the database holds no copy of it, only a digest (the table's every column, as text)
    [row] = AuthToken.objects.filter(user=member)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {AuthToken._meta.db_table}")
        stored = " ".join(str(value) for row_values in cursor.fetchall() for value in row_values)
    assert token not in stored and row.digest != token
    # and it expires after SPIDERWEB_API_TOKEN_TTL_HOURS
    ttl = dt.timedelta(hours=settings.API_TOKEN_TTL_HOURS)
    assert abs(row.expiry - (timezone.now() + ttl)) < dt.timedelta(minutes=1)
    AuthToken.objects.filter(pk=row.pk).update(expiry=timezone.now() - dt.timedelta(seconds=1))
    assert _with(token).get(reverse("tenant-list")).status_code == 401


def test_a_wrong_password_issues_nothing(member):
    basic = base64.b64encode(b"carol:wrong").decode()
    response = APIClient().post(reverse("token-issue"), HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code == 401 and not AuthToken.objects.exists()


def test_the_holder_rotates_their_token(member):
    # Given a token
    old = _issue()["token"]
    # When its holder rotates it
    response = _with(old).post(reverse("token-rotate"))
    # then a new token is shown once and works, and the old one no longer does
    assert response.status_code == 200 and not response.cookies
    new = response.json()["token"]
    assert new != old
    assert _with(new).get(reverse("tenant-list")).status_code == 200
    assert _with(old).get(reverse("tenant-list")).status_code == 401
    assert AuthToken.objects.filter(user=member).count() == 1


def test_logout_ends_the_token_and_logout_all_ends_every_token(member):
    first, second, third = (_issue()["token"] for _ in range(3))
    assert _with(first).post(reverse("token-logout")).status_code == 204
    assert _with(first).get(reverse("tenant-list")).status_code == 401
    assert _with(second).get(reverse("tenant-list")).status_code == 200
    assert _with(second).post(reverse("token-logout-all")).status_code == 204
    assert _with(third).get(reverse("tenant-list")).status_code == 401


def test_the_admin_never_shows_a_token_or_its_digest(client, django_user_model, member):
    # Given tokens and a superuser
    token = _issue()["token"]
    digest = AuthToken.objects.get(user=member).digest
    admin = django_user_model.objects.create_superuser("root", password="x")
    client.force_login(admin)
    # When the superuser opens the token list and the admin's index (recent actions)
    page = client.get(reverse("admin:knox_authtoken_changelist"))
    index = client.get(reverse("admin:index"))
    # then neither the token nor its digest appears, and the admin offers no add, change or delete
    assert page.status_code == 200 and "carol" in page.content.decode()
    for html in (page.content.decode(), index.content.decode()):
        assert token not in html and digest not in html and token[15:] not in html
    assert client.get(reverse("admin:knox_authtoken_add")).status_code == 403
    assert not LogEntry.objects.filter(object_repr__contains=digest).exists()


@pytest.mark.parametrize(("value", "hours"), [(None, 720), ("24", 24), ("0", None), ("a day", None)])
def test_token_lifetime_comes_from_the_environment_and_a_bad_value_stops_start_up(tmp_path, value, hours):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    environment = {k: v for k, v in os.environ.items() if k != "SPIDERWEB_API_TOKEN_TTL_HOURS"}
    environment |= {"SPIDERWEB_STATE_DIR": str(tmp_path)}
    if value is not None:
        environment["SPIDERWEB_API_TOKEN_TTL_HOURS"] = value
    run = subprocess.run([sys.executable, "-c", "import json, spiderweb.settings as s; "
                          "print(json.dumps(s.REST_KNOX['TOKEN_TTL'].total_seconds()))"],
                         env=environment, capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    if hours is None:
        assert run.returncode != 0 and "SPIDERWEB_API_TOKEN_TTL_HOURS" in run.stderr
    else:
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout) == hours * 3600
