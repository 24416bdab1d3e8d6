"""The actor of the current change, carried in a contextvar so services need no request argument."""

import contextvars
import uuid
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """Who is changing things: a user (web, API), a node agent, or a background task."""

    name: str
    user_id: int | None = None
    request_id: uuid.UUID | None = None


SYSTEM = Actor(name="system")
_current: contextvars.ContextVar[Actor] = contextvars.ContextVar("spiderweb_actor", default=SYSTEM)


def current_actor() -> Actor:
    return _current.get()


@contextmanager
def acting_as(actor: Actor):
    """Attribute every change made inside the block to `actor`."""
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def actor_for_user(user, request_id: uuid.UUID | None = None) -> Actor:
    return Actor(name=user.get_username(), user_id=user.pk, request_id=request_id or uuid.uuid4())
