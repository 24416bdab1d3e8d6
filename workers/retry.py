"""How every controller task retries: transient failures (API server or database unreachable, a lock timeout, an
object that kept changing) back off exponentially; anything else is a bug or a permanent refusal and is not
retried in a loop."""

from django.db import InterfaceError, OperationalError

from spiderweb.engine.errors import Unavailable

TRANSIENT = (Unavailable, OperationalError, InterfaceError)
RETRY = dict(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=True, retry_backoff_max=60, retry_jitter=True,
             max_retries=10)
