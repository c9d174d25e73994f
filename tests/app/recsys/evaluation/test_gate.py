"""The publish gate on recorded metrics (the full pipeline: tests/integration/test_retrain.py)."""
from __future__ import annotations

from app.recsys.evaluation.gate import gate


def _metrics(ndcg: float, users: float = 50.0) -> dict[str, float]:
    return {"ndcg@10": ndcg, "recall@10": ndcg * 1.5, "users": users}


def test_gate_passes_when_als_beats_popular_and_nothing_is_served() -> None:
    ok, reason = gate(_metrics(0.20), _metrics(0.05), None, 10)
    assert ok, reason


def test_gate_rejects_als_not_better_than_popular() -> None:
    ok, reason = gate(_metrics(0.05), _metrics(0.05), None, 10)
    assert not ok
    assert "does not beat Popular" in reason


def test_gate_requires_the_configured_lift_over_popular() -> None:
    assert not gate(_metrics(0.07), _metrics(0.05), None, 10, min_lift=0.5)[0]
    assert gate(_metrics(0.08), _metrics(0.05), None, 10, min_lift=0.5)[0]


def test_gate_rejects_a_clear_drop_against_the_served_version() -> None:
    served = _metrics(0.30)
    ok, reason = gate(_metrics(0.26), _metrics(0.05), served, 10, max_drop=0.10)
    assert not ok
    assert "below the served version" in reason
    assert gate(_metrics(0.28), _metrics(0.05), served, 10, max_drop=0.10)[0]


def test_gate_rejects_a_holdout_without_evaluable_users() -> None:
    ok, reason = gate(_metrics(0.0, users=0), _metrics(0.0, users=0), None, 10)
    assert not ok
    assert "no users" in reason
