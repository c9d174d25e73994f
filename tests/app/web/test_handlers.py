"""Input parsing of the handlers: only plain positive integers in range pass;
what an error message echoes of the input is short."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from app.web.handlers import ECHO_MAX, bounded_int, echo
from app.web.openapi import MAX_ID, MAX_LIMIT


@pytest.mark.parametrize("raw, expected", [("1", 1), ("100", 100), ("007", 7), (str(MAX_ID), MAX_ID)])
def test_accepts_positive_integers_in_range(raw: str, expected: int) -> None:
    assert bounded_int(raw, MAX_ID) == expected


@pytest.mark.parametrize(
    "raw", ["", "0", "-1", "+1", " 1", "1.0", "1e3", "abc", "²", "١٢", str(MAX_ID + 1), "9" * 5000, "0x10"]
)
def test_rejects_everything_else(raw: str) -> None:
    assert bounded_int(raw, MAX_ID) is None


def test_limit_bound() -> None:
    assert bounded_int(str(MAX_LIMIT), MAX_LIMIT) == MAX_LIMIT
    assert bounded_int(str(MAX_LIMIT + 1), MAX_LIMIT) is None


@pytest.mark.parametrize("value", ["", "abc", "x" * ECHO_MAX])
def test_short_values_are_echoed_whole(value: str) -> None:
    assert echo(value) == repr(value)


def test_a_5000_digit_id_is_cut_and_its_length_said() -> None:
    assert echo("1" * 5000) == repr("1" * ECHO_MAX)[:ECHO_MAX] + "... (5000 characters)"


@given(st.text(max_size=20_000))
def test_an_echo_is_never_much_longer_than_the_limit(value: str) -> None:
    text = echo(value)
    assert len(text) <= ECHO_MAX + len(f"... ({len(value)} characters)")
    assert text == repr(value) or text.endswith(f"... ({len(value)} characters)")


def test_answers_name_the_experiment_and_arm_only_when_one_chose_the_version() -> None:
    from app.web.handlers import answer_body
    from app.web.reader import Answer

    plain = answer_body(Answer([5], [0.5], ["Five"], "als", "v1"))
    assert plain == {"items": [{"film_id": 5, "score": 0.5, "title": "Five"}], "source": "als", "model_version": "v1"}
    armed = answer_body(Answer([5], [0.5], ["Five"], "als", "v2", experiment="exp-1", arm="challenger"))
    assert (armed["model_version"], armed["experiment"], armed["arm"]) == ("v2", "exp-1", "challenger")


def test_recommendations_name_model_and_stage_and_explain_per_film() -> None:
    from app.web.handlers import answer_body
    from app.web.reader import Answer

    reasons = [[{"name": "source:recent", "value": 0.2}], [{"name": "list:trending", "value": None}]]
    body = answer_body(Answer([5, 6], [0.5, 0.4], ["Five", None], "ranked", "v3", model="two-level",
                              stage="request-time", reasons=reasons))
    assert (body["model"], body["stage"], body["source"]) == ("two-level", "request-time", "ranked")
    assert [item["reasons"] for item in body["items"]] == reasons


@given(st.text(max_size=20))
def test_explain_is_a_flag_or_a_bad_request(raw: str) -> None:
    from aiohttp.test_utils import make_mocked_request
    from yarl import URL

    from app.web.handlers import EXPLAIN, BadRequest, parse_explain

    request = make_mocked_request("GET", str(URL("/v1/users/1/recommendations").with_query(explain=raw)))
    if raw in EXPLAIN:
        assert parse_explain(request) is EXPLAIN[raw]
    else:
        with pytest.raises(BadRequest, match="explain must be one of"):
            parse_explain(request)
    assert parse_explain(make_mocked_request("GET", "/v1/users/1/recommendations")) is False
