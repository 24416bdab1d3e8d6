"""A user's own REST API tokens (django-rest-knox): issue, list, rotate, revoke.

One home for the self-service, used by the REST endpoints (``auth/token/...``) and the portal's "My API tokens"
page. The secret exists only in the return value of `api_token_issue` / `api_token_rotate`: knox stores its
SHA-512 digest, and lists show the first characters (``token_key``) only.
"""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from knox.models import AuthToken, get_token_model
from knox.settings import knox_settings


class TokenNotFound(Exception):
    """The token is not one of the user's (or no longer exists)."""


def api_token_list(user):
    """The user's tokens, newest first (digest and secret are not for display: use `token_key`)."""
    return get_token_model().objects.filter(user=user).order_by("-created")


def api_token_issue(*, user, request=None) -> tuple[AuthToken, str]:
    """A new token for `user`, expiring after knox's TOKEN_TTL; returns the row and the secret (shown once).

    Sends ``user_logged_in`` as knox's login view does (it updates ``last_login``).
    """
    instance, token = get_token_model().objects.create(
        user=user, expiry=knox_settings.TOKEN_TTL, prefix=knox_settings.TOKEN_PREFIX
    )
    if request is not None:
        user_logged_in.send(sender=user.__class__, request=request, user=user)
    return instance, token


def api_token_revoke(*, user, token_key: str) -> None:
    """End one of the user's tokens; another user's token is answered like a missing one."""
    deleted, _ = get_token_model().objects.filter(user=user, token_key=token_key).delete()
    if not deleted:
        raise TokenNotFound(token_key)


def api_token_rotate(*, user, token_key: str, request=None) -> tuple[AuthToken, str]:
    """Issue a new token and end the one named, both or neither."""
    with transaction.atomic():
        api_token_revoke(user=user, token_key=token_key)
        return api_token_issue(user=user, request=request)
