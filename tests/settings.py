"""Settings for the test suite: the production settings with test defaults for the environment.

Tests run on the real PostgreSQL and Redis started by tests/infra/services.sh; `make test` exports the same URLs.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://spiderweb:spiderweb@127.0.0.1:5432/spiderweb")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("SPIDERWEB_SECRET_KEY", "test-only-secret")

from spiderweb.settings import *  # noqa: E402,F403
