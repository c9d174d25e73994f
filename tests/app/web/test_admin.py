"""Bearer-token check of the admin endpoint."""
from __future__ import annotations

import pytest

from app.web.admin import AdminDisabled, Forbidden, Unauthorized, check_bearer


def test_right_token_passes() -> None:
    check_bearer("tok", "Bearer tok")
    check_bearer("tok", "bearer  tok ")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dG9rOg==", "tok"])
def test_missing_token_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        check_bearer("tok", header)


def test_wrong_token_is_forbidden() -> None:
    with pytest.raises(Forbidden):
        check_bearer("tok", "Bearer tok2")


def test_unset_admin_token_disables_admin_whatever_the_header() -> None:
    for header in (None, "Bearer ", "Bearer x"):
        with pytest.raises(AdminDisabled):
            check_bearer("", header)
