import numpy as np

from app.recsys.data.dataset import EventWeights, build_dataset
from app.recsys.evaluation.evaluate import evaluate_on
from app.recsys.models.popularity import PopularRecommender
from app.recsys.tuning.space import ALSPoint
from app.recsys.tuning.validation import ValidationSplit


def test_the_target_is_each_trial_users_latest_share_of_the_training_part(planted):
    split = ValidationSplit.carve(planted, fraction=0.25, min_users=10_000)
    assert split.users == split.total_users == len(np.unique(planted.user_id))
    assert len(split.fit_events) + len(split.target_events) == len(planted)
    for user in np.unique(planted.user_id)[:20]:
        fit = split.fit_events.ts[split.fit_events.user_id == user]
        target = split.target_events.ts[split.target_events.user_id == user]
        assert len(target) == max(1, int(0.25 * (len(fit) + len(target)))) and fit.max() <= target.min()


def test_trials_run_on_a_fixed_user_subsample(planted):
    users = len(np.unique(planted.user_id))  # 160
    small = ValidationSplit.carve(planted, min_users=40, user_share=0.1)
    assert small.users == 40 and small.total_users == users  # the larger of 40 and 10% (16)
    assert len(np.unique(np.r_[small.fit_events.user_id, small.target_events.user_id])) == 40
    again = ValidationSplit.carve(planted, min_users=40, user_share=0.1)
    np.testing.assert_array_equal(small.fit_events.user_id, again.fit_events.user_id)  # fixed: seeded
    assert ValidationSplit.carve(planted, min_users=10, user_share=0.5).users == 80


def test_score_is_the_specs_ndcg_on_the_target(planted):
    split = ValidationSplit.carve(planted)
    als = split.score(ALSPoint(alpha=2.0, rho=1.0, factors=32).spec(split.span_days, 10))
    dataset = build_dataset(split.fit_events, EventWeights())
    popular = evaluate_on(PopularRecommender().fit(dataset), dataset, split.holdout).metrics["ndcg@10"]
    assert als > 1.3 * popular > 0
    assert split.span_days == (planted.ts.max() - planted.ts.min()) / 86_400
