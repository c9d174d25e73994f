import numpy as np
import pytest

from app.recsys.data.dataset import EventWeights, Interactions, build_dataset, event_codes
from app.schema import EVENT_TYPES


def events(**cols) -> Interactions:
    return Interactions.from_columns(cols)


def test_from_columns_accepts_names_or_codes_and_defaults_optional_columns():
    by_name = events(user_id=[1, 2], film_id=[5, 6], event_type=["click", "rate"], ts=[1.0, 2.0])
    by_code = events(
        user_id=[1, 2], film_id=[5, 6], event_type=[EVENT_TYPES.index("click"), EVENT_TYPES.index("rate")], ts=[1, 2]
    )
    assert by_name.event_type.tolist() == by_code.event_type.tolist()
    assert by_name.rating.tolist() == [0.0, 0.0]
    assert by_name.ts.dtype == np.float64 and len(by_name) == 2


def test_from_columns_reads_datetimes_as_utc_epoch_seconds():
    from datetime import datetime

    it = events(user_id=[1], film_id=[2], event_type=["play"], ts=[datetime(2020, 1, 1)])
    assert it.ts.tolist() == [1577836800.0]


def test_bad_columns_raise_clear_errors():
    with pytest.raises(ValueError, match="missing interaction column"):
        Interactions.from_columns({"user_id": [1], "film_id": [1], "ts": [1.0]})
    with pytest.raises(ValueError, match="unknown event_type"):
        events(user_id=[1], film_id=[1], event_type=["buy"], ts=[1.0])
    with pytest.raises(ValueError, match="length"):
        events(user_id=[1, 2], film_id=[1], event_type=["click"], ts=[1.0])


def test_split_by_time_and_select():
    it = events(user_id=[1, 1, 2], film_id=[1, 2, 3], event_type=["click"] * 3, ts=[10.0, 20.0, 30.0])
    before, after = it.split_by_time(20.0)
    assert before.film_id.tolist() == [1]
    assert after.film_id.tolist() == [2, 3]
    assert it.max_ts == 30.0
    assert it.select(np.array([2])).user_id.tolist() == [2]


def test_weights_base_completion_and_rating():
    it = events(
        user_id=[1, 1, 1, 1, 1],
        film_id=[1, 2, 3, 4, 5],
        event_type=["impression", "click", "complete", "progress", "rate"],
        ts=[1.0] * 5,
        watch_seconds=[0, 0, 3000, 1500, 0],
        duration_seconds=[0, 0, 6000, 6000, 0],
        rating=[0, 0, 0, 0, 4],
    )
    w = EventWeights(completion_bonus=2.0, rating_exponent=1.0, rating_scope="event").weights(it)
    # impression 0; click 1; complete 4 + 2 * 3000/6000 = 5; progress 0 + 2 * 0.25 = 0.5;
    # rate 3 * (4/10)^1 = 1.2
    assert w.tolist() == pytest.approx([0.0, 1.0, 5.0, 0.5, 1.2])
    assert w.dtype == np.float32
    # with the (default) pair scope the rating scales the pair in build_dataset, not the event
    assert EventWeights(rating_exponent=1.0).weights(it)[4] == pytest.approx(3.0)


def test_the_rating_scales_the_whole_pair_by_its_mean_rating():
    """An imported rating is play + complete + rate: the factor must reach all three, or it is inert."""
    it = events(
        user_id=[1, 1, 1, 1, 1, 2],
        film_id=[10, 10, 10, 20, 20, 10],
        event_type=["play", "complete", "rate", "rate", "rate", "play"],
        ts=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        rating=[0, 0, 5, 4, 8, 0],
    )
    flat = EventWeights(completion_bonus=0.0, rating_exponent=2.0)
    ds = build_dataset(it, flat)
    # user 1 film 10: (2 + 4 + 3) x (5/10)^2 = 2.25; film 20: (3 + 3) x (6/10)^2 = 2.16; user 2: play 2, unrated
    np.testing.assert_allclose(ds.matrix.toarray(), [[2.25, 2.16], [2.0, 0.0]], rtol=1e-6)
    per_event = build_dataset(it, EventWeights(completion_bonus=0.0, rating_exponent=2.0, rating_scope="event"))
    np.testing.assert_allclose(per_event.matrix.toarray(), [[2 + 4 + 0.75, 0.48 + 1.92], [2.0, 0.0]], rtol=1e-6)


def test_binary_and_half_life_act_per_pair():
    day = 86_400.0
    it = events(user_id=[1, 1, 1, 2], film_id=[10, 10, 20, 10], event_type=["play", "complete", "click", "click"],
                ts=[0.0, 10 * day, 0.0, 20 * day])
    binary = build_dataset(it, EventWeights(binary=True, completion_bonus=0.0))
    assert binary.matrix.toarray().tolist() == [[1.0, 1.0], [1.0, 0.0]]
    decayed = build_dataset(it, EventWeights(binary=True, half_life_days=10.0))
    # ages at the newest event (day 20): pair (1, 10) last seen day 10 -> 1/2; (1, 20) day 0 -> 1/4; (2, 10) -> 1
    np.testing.assert_allclose(decayed.matrix.toarray(), [[0.5, 0.25], [1.0, 0.0]], rtol=1e-6)


def test_weights_record_and_come_back_and_old_records_keep_their_scope():
    weights = EventWeights(rating_exponent=1.5, binary=True, half_life_days=30.0)
    assert EventWeights.from_params(weights.params()) == weights
    old = {"base": dict(weights.base), "completion_bonus": 2.0, "rating_exponent": 4.0}  # recorded before the scope
    assert EventWeights.from_params(old).rating_scope == "event"
    with pytest.raises(ValueError, match="rating_scope"):
        EventWeights(rating_scope="user")
    with pytest.raises(ValueError, match="half_life_days"):
        EventWeights(half_life_days=0.0)


def test_weights_reject_unknown_types_and_negatives():
    with pytest.raises(ValueError, match="unknown event types"):
        EventWeights(base={"buy": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        EventWeights(base={"click": -1.0})


def test_build_dataset_sums_duplicates_and_drops_zero_weight_and_page_views():
    it = events(
        user_id=[7, 7, 7, 9, 9, 9],
        film_id=[100, 100, 200, 100, 0, 300],
        event_type=["click", "play", "click", "complete", "page_view", "impression"],
        ts=[1.0, 5.0, 2.0, 3.0, 4.0, 6.0],
    )
    ds = build_dataset(it, EventWeights(completion_bonus=0.0))
    assert ds.users.external.tolist() == [7, 9]
    assert ds.items.external.tolist() == [100, 200]  # 300 only had a zero-weight impression
    # user 7, film 100: click 1 + play 2 = 3; user 7, film 200: click 1; user 9, film 100: complete 4
    assert ds.matrix.toarray().tolist() == [[3.0, 1.0], [4.0, 0.0]]
    # latest event per stored pair, aligned with matrix.data (CSR order)
    assert ds.last_ts.tolist() == [5.0, 2.0, 3.0]
    assert ds.now == 6.0


def test_build_dataset_with_given_maps_drops_unknown_ids():
    it = events(user_id=[1, 2, 3], film_id=[10, 20, 10], event_type=["click"] * 3, ts=[1.0, 2.0, 3.0])
    train = build_dataset(it.select(np.array([0, 1])))
    ds = build_dataset(it, users=train.users, items=train.items)
    assert ds.shape == (2, 2)
    assert ds.matrix.toarray().tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_event_codes_reject_out_of_range_codes():
    with pytest.raises(ValueError, match="codes"):
        event_codes(np.array([len(EVENT_TYPES)]))
