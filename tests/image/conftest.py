"""The API tests' users for the image tests."""

from tests.api.conftest import staff  # noqa: F401
