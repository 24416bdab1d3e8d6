"""Self-service REST API tokens (django-rest-knox): stored as a SHA-512 digest, expiring after
``SPIDERWEB_API_TOKEN_TTL_HOURS``, shown once in the response that issues them.

``POST auth/token/`` (user name and password over Basic auth, or a session) issues a token; ``POST
auth/token/rotate/`` with a token issues a new one and ends the one used; ``POST auth/token/logout/`` ends the one
used, ``auth/token/logout-all/`` every token of the user.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from knox import views as knox_views
from knox.auth import TokenAuthentication
from rest_framework import authentication, serializers

from spiderweb.tenancy.api_tokens import api_token_issue

_ISSUED = inline_serializer("IssuedToken", {
    "token": serializers.CharField(help_text="Shown once: only its digest is stored."),
    "expiry": serializers.DateTimeField(),
})


@extend_schema(tags=["auth"], request=None, responses={200: _ISSUED},
               summary="Issue an API token (Basic auth with user name and password, or a session)")
class TokenIssueView(knox_views.LoginView):
    authentication_classes = [authentication.BasicAuthentication, authentication.SessionAuthentication]

    def create_token(self):
        # The portal's token page issues through the same function (knox's view sends user_logged_in itself).
        return api_token_issue(user=self.request.user)


@extend_schema(tags=["auth"], request=None, responses={200: _ISSUED},
               summary="Rotate: issue a new token and end the one this request used")
class TokenRotateView(knox_views.LoginView):
    authentication_classes = [TokenAuthentication]

    def create_token(self):
        return api_token_issue(user=self.request.user)

    def get_post_response(self, request, token, instance):
        request.auth.delete()
        return super().get_post_response(request, token, instance)


@extend_schema(tags=["auth"], request=None, responses={204: None},
               summary="End the token this request used")
class TokenLogoutView(knox_views.LogoutView):
    pass


@extend_schema(tags=["auth"], request=None, responses={204: None},
               summary="End every token of the user")
class TokenLogoutAllView(knox_views.LogoutAllView):
    pass
