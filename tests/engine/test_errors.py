"""Unit tests for spiderweb.engine.errors: stable codes, hierarchy and serialisation."""

import pytest

from spiderweb.engine.errors import (
    Conflict,
    Exhausted,
    FamilyDisabled,
    Forbidden,
    InvalidInput,
    IPAMError,
    NoPoolAvailable,
    NotFound,
    PoolInUse,
    Unavailable,
)


@pytest.mark.parametrize(
    ("cls", "code", "parent"),
    [
        (IPAMError, "internal", Exception),
        (InvalidInput, "invalid_input", IPAMError),
        (FamilyDisabled, "family_disabled", InvalidInput),
        (NotFound, "not_found", IPAMError),
        (Conflict, "conflict", IPAMError),
        (Exhausted, "ip_exhausted", IPAMError),
        (NoPoolAvailable, "no_pool_available", IPAMError),
        (PoolInUse, "pool_in_use", Conflict),
        (Forbidden, "forbidden", IPAMError),
        (Unavailable, "unavailable", IPAMError),
    ],
)
def test_every_error_has_its_stable_code_and_parent(cls, code, parent):
    error = cls("something went wrong")
    assert error.code == code
    assert isinstance(error, parent)
    assert error.message == "something went wrong"
    assert str(error) == "something went wrong"


def test_details_default_to_an_empty_dict_and_are_kept_as_given():
    assert InvalidInput("bad").details == {}
    holders = {"holders": ["default/web-0"]}
    assert PoolInUse("in use", details=holders).details is holders


def test_to_dict_renders_code_message_and_details():
    error = NoPoolAvailable("no pool", details={"candidates": [{"pool": "p", "reason": "pool is disabled"}]})
    assert error.to_dict() == {
        "code": "no_pool_available",
        "message": "no pool",
        "details": {"candidates": [{"pool": "p", "reason": "pool is disabled"}]},
    }


def test_repr_names_the_class():
    assert repr(NotFound("gone")) == "NotFound('gone', details={})"


def test_details_are_keyword_only():
    with pytest.raises(TypeError):
        IPAMError("message", {"a": 1})
