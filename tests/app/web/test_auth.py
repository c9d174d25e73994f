"""Token policies of the serving port (app/web/auth.py): who may pass, and what a refusal says."""
from __future__ import annotations

import pytest

from app.settings import Settings
from app.web.auth import ADMIN, ANALYTICS, DEBUG

BASE = Settings.from_env({})


def test_the_right_token_passes_whatever_the_scheme_case_and_spacing() -> None:
    settings = BASE.with_overrides(admin_token="tok")
    for header in ("Bearer tok", "bearer  tok ", "BEARER tok"):
        assert ADMIN.check(settings, header) is None


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic dG9rOg==", "tok"])
def test_no_bearer_token_is_a_401_asking_for_one(header: str | None) -> None:
    denied = ADMIN.check(BASE.with_overrides(admin_token="tok"), header)
    assert (denied.status, denied.code) == (401, "missing")
    assert denied.headers() == {"WWW-Authenticate": 'Bearer realm="cinerec"'}


def test_a_wrong_token_is_a_403_without_a_challenge() -> None:
    denied = ADMIN.check(BASE.with_overrides(admin_token="s3cret"), "Bearer s3cre7")
    assert (denied.status, denied.code, denied.headers()) == (403, "rejected", {})
    assert "s3cre" not in denied.message  # never echo a token


def test_no_token_configured_closes_the_group_and_says_how_to_configure_it() -> None:
    for policy, setting in ((ADMIN, "ADMIN_TOKEN"), (DEBUG, "ADMIN_TOKEN"), (ANALYTICS, "ANALYTICS_TOKEN")):
        for header in (None, "Bearer ", "Bearer x", "Bearer "):
            denied = policy.check(BASE, header)
            assert (denied.status, denied.code) == (403, "unconfigured")
            assert setting in denied.message and denied.body() == {"error": denied.message, "auth": "unconfigured"}
    assert "ANALYTICS_OPEN=1" in ANALYTICS.check(BASE, None).message


def test_analytics_takes_its_own_token_or_the_admin_one() -> None:
    settings = BASE.with_overrides(analytics_token="an", admin_token="ad")
    assert ANALYTICS.check(settings, "Bearer an") is None
    assert ANALYTICS.check(settings, "Bearer ad") is None
    assert ANALYTICS.check(settings, "Bearer other").code == "rejected"
    assert ADMIN.check(settings, "Bearer an").code == "rejected"  # the analytics token is not an admin token
    assert ANALYTICS.check(BASE.with_overrides(admin_token="ad"), "Bearer ad") is None


def test_analytics_open_needs_no_token_but_admin_and_debug_stay_closed() -> None:
    settings = BASE.with_overrides(analytics_open=True)
    assert ANALYTICS.check(settings, None) is None
    assert ADMIN.check(settings, None).status == 403 and DEBUG.check(settings, None).status == 403


def test_a_non_ascii_token_is_refused_not_an_error() -> None:
    assert ADMIN.check(BASE.with_overrides(admin_token="tok"), "Bearer tök²").code == "rejected"
