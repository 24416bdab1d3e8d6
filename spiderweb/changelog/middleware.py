"""Attribute changes made during a request to its user, and return the request id (X-Request-ID)."""

import uuid

from spiderweb.changelog.context import Actor, acting_as


class ChangeActorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = uuid.uuid4()
        request.id = request_id
        user = getattr(request, "user", None)
        # DRF token users are only known inside the view; the API layer re-binds the actor there.
        if user is not None and user.is_authenticated:
            actor = Actor(name=user.get_username(), user_id=user.pk, request_id=request_id)
        else:
            actor = Actor(name="anonymous", request_id=request_id)
        with acting_as(actor):
            response = self.get_response(request)
        response["X-Request-ID"] = str(request_id)
        return response
