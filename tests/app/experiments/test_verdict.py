"""Verdict rules and the rollout policy on hand-made figures."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from app.experiments.model import Experiment, Guardrail, State
from app.experiments.stats import Difference, sample_ratio
from app.experiments.model import Action
from app.experiments.verdict import Evidence, Guard, Kind, Verdict, decide, guardrail_status, next_action

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
EXP = Experiment(
    "exp-1", "v1", "v2", share=0.5, min_users_per_arm=1000, created_at=T0,
    guardrails=(Guardrail("d1_retention", 0.05), Guardrail("ctr", 0.05)),
).moved_to(State.RUNNING, T0)
FLAT = Difference(0.0, -0.02, 0.02)
UP = Difference(0.08, 0.03, 0.13)
DOWN = Difference(-0.08, -0.13, -0.03)
NAN = Difference(math.nan, math.nan, math.nan)


def evidence(primary: Difference = UP, users: tuple[int, int] = (2000, 2000), needed: dict | None = None,
             **guards: Difference) -> Evidence:
    return Evidence(
        users=users,
        sample_ratio=sample_ratio(*users, 0.5),
        primary=primary,
        guardrails={"d1_retention": FLAT, "ctr": FLAT, **guards},
        needed=needed or {},
    )


@pytest.mark.parametrize(
    "diff, status",
    [
        (Difference(0.0, -0.02, 0.02), Guard.OK),  # low end -2 % >= -5 %
        (Difference(-0.01, -0.05, 0.03), Guard.OK),  # exactly at the tolerance
        (Difference(-0.03, -0.08, 0.02), Guard.UNCLEAR),  # could be worse than -5 %, not shown worse
        (Difference(-0.04, -0.07, -0.01), Guard.UNCLEAR),  # worse, but the estimate is within the tolerance
        (Difference(-0.09, -0.14, -0.04), Guard.BREACHED),  # worse, by more than the tolerance
        (NAN, Guard.UNCLEAR),
    ],
)
def test_guardrail_status(diff: Difference, status: Guard) -> None:
    assert guardrail_status(diff, 0.05) is status


def test_challenger_wins_when_primary_better_and_guardrails_hold() -> None:
    verdict = decide(EXP, evidence(UP))
    assert verdict.kind is Kind.CHALLENGER_WINS and verdict.text == "challenger wins"
    assert verdict.reasons == ("watch_time_per_user_day better: +8.0% [+3.0%, +13.0%]",)


def test_control_wins_when_primary_worse() -> None:
    assert decide(EXP, evidence(DOWN)).text == "control wins"


def test_control_wins_when_a_guardrail_is_breached_even_if_primary_is_better() -> None:
    verdict = decide(EXP, evidence(UP, ctr=Difference(-0.2, -0.3, -0.1)))
    assert verdict.kind is Kind.CONTROL_WINS
    assert verdict.reasons == ("guardrail ctr worse beyond its tolerance: -20.0% [-30.0%, -10.0%]",)


def test_sample_ratio_mismatch_invalidates_everything() -> None:
    verdict = decide(EXP, evidence(UP, users=(2200, 1800)))  # chi2 = 2 * 200^2 / 2000 = 40
    assert verdict.kind is Kind.INVALID and verdict.text == "invalid (sample ratio mismatch)"
    assert "chi-square 40.0" in verdict.reasons[0]


def test_no_verdict_before_the_planned_sample() -> None:
    # an arm is 300 users short of the planned 1000; the power need (800 per arm) is smaller
    verdict = decide(EXP, evidence(UP, users=(700, 700), needed={"watch_time_per_user_day": (800, 800)}))
    assert verdict.kind is Kind.NO_DIFFERENCE
    assert verdict.text == "no difference yet (300 more users per arm needed for the planned effect)"
    # a larger power need wins: 2500 - 700 = 1800
    verdict = decide(EXP, evidence(UP, users=(700, 700), needed={"watch_time_per_user_day": (2500, 2500)}))
    assert verdict.more_users_per_arm == 1800


def test_no_difference_says_how_many_more_users_the_planned_effect_needs() -> None:
    verdict = decide(EXP, evidence(FLAT, needed={"watch_time_per_user_day": (5000, 5000)}))
    assert verdict.text == "no difference yet (3000 more users per arm needed for the planned effect)"
    assert verdict.reasons == ("watch_time_per_user_day: +0.0% [-2.0%, +2.0%], interval not clear of zero",)


def test_an_unclear_guardrail_holds_back_a_better_primary() -> None:
    unclear = Difference(-0.03, -0.08, 0.02)
    verdict = decide(EXP, evidence(UP, d1_retention=unclear, needed={"d1_retention": (6000, 6000)}))
    assert verdict.kind is Kind.NO_DIFFERENCE and verdict.more_users_per_arm == 4000
    assert verdict.reasons == ("guardrail d1_retention not yet shown within its tolerance: -3.0% [-8.0%, +2.0%]",)


def test_more_users_are_counted_in_the_smaller_arm() -> None:
    # 10 % share: the power need is sized 9:1 (9000 control, 1000 challenger); with 4500 / 500 users
    # the challenger needs 500 more (and the control, filling 9:1, its 4500 with them)
    small = Experiment("exp-s", "v1", "v2", share=0.1, min_users_per_arm=100, created_at=T0,
                       guardrails=()).moved_to(State.RUNNING, T0)
    e = Evidence((4500, 500), sample_ratio(4500, 500, 0.1), FLAT, {}, {"watch_time_per_user_day": (9000, 1000)})
    assert decide(small, e).text == "no difference yet (500 more users per arm needed for the planned effect)"


def test_undefined_primary_is_no_difference() -> None:
    assert decide(EXP, evidence(NAN)).kind is Kind.NO_DIFFERENCE


@pytest.mark.parametrize(
    "kind, now, action",
    [
        (Kind.CHALLENGER_WINS, T0 + timedelta(days=1), Action.PROMOTE),
        (Kind.CONTROL_WINS, T0 + timedelta(days=1), Action.KEEP_CONTROL),
        (Kind.INVALID, T0 + timedelta(days=1), Action.KEEP_CONTROL),
        (Kind.NO_DIFFERENCE, T0 + timedelta(days=1), Action.CONTINUE),
        (Kind.NO_DIFFERENCE, T0 + timedelta(days=14), Action.KEEP_CONTROL),  # maximum duration reached
    ],
)
def test_rollout_policy(kind: Kind, now: datetime, action: Action) -> None:
    got, reason = next_action(EXP, Verdict(kind, 10), now)
    assert got is action
    assert reason.endswith(Verdict(kind, 10).text)


def test_reasons_say_when_there_is_no_interval_yet() -> None:
    verdict = decide(EXP, evidence(FLAT, d1_retention=Difference(0.5, math.nan, math.nan)))
    assert "guardrail d1_retention not yet shown within its tolerance: +50.0% [no interval yet]" in verdict.reasons
