"""The publish gate: does a challenger beat Popular and hold up against the served model?"""
from __future__ import annotations

from typing import Mapping

from app.recsys.evaluation.metrics import NDCG


def gate(
    metrics: Mapping[str, float],
    baseline: Mapping[str, float],
    served: Mapping[str, float] | None,
    k: int,
    min_lift: float = 0.0,
    max_drop: float = 0.10,
) -> tuple[bool, str]:
    """Publish only if the model beats Popular on NDCG@k and is not clearly worse than what is served."""
    key = NDCG(k).key
    if not metrics.get("users") or key not in metrics or key not in baseline:
        return False, f"no {key}: the holdout has no users with new films to evaluate on"
    ours, popular = metrics[key], baseline[key]
    if not ours > popular * (1 + min_lift):
        lift = f" by {min_lift:.0%}" if min_lift else ""
        return False, f"ALS {key} {ours:.4f} does not beat Popular {popular:.4f}{lift}"
    if served and key in served and ours < served[key] * (1 - max_drop):
        return False, (f"ALS {key} {ours:.4f} is more than {max_drop:.0%} below "
                       f"the served version's {served[key]:.4f}")
    return True, f"ALS {key} {ours:.4f} > Popular {popular:.4f}"
