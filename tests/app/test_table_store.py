"""The in-memory table store knows how far of each changelog partition it holds (app/table_store.py)."""
from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from app.table_store import KeepingMemoryStore
from tables.stats import user_stats

TOPIC = user_stats.changelog_topic_name
P0, P1, P2 = TP(TOPIC, 0), TP(TOPIC, 1), TP(TOPIC, 2)


def fresh_store() -> KeepingMemoryStore:
    store = user_stats._new_store_by_url("memory://")
    assert isinstance(store, KeepingMemoryStore)
    return store


def record(partition: int, offset: int, key: int, value: dict | None) -> SimpleNamespace:
    message = SimpleNamespace(topic=TOPIC, partition=partition, offset=offset, value=value)
    return SimpleNamespace(key=key, value=value, message=message)


def test_the_worker_s_tables_use_it_and_a_fresh_store_is_read_from_the_start() -> None:
    assert isinstance(user_stats.data, KeepingMemoryStore)
    assert fresh_store().persisted_offset(P0) is None


def test_written_offsets_are_held_and_never_go_back() -> None:
    store = fresh_store()
    store.set_persisted_offset(P0, 41)
    store.set_persisted_offset(P0, 7)  # an older flush acked late
    assert store.persisted_offset(P0) == 41 and store.persisted_offset(P1) is None


def test_recovered_records_advance_the_offset_of_their_partition() -> None:
    store = fresh_store()
    store.apply_changelog_batch([record(0, 5, 1, {"plays": 1}), record(0, 6, 2, {"plays": 2}),
                                 record(1, 3, 3, {"plays": 3})], to_key=lambda k: k, to_value=lambda v: v)
    assert (store.persisted_offset(P0), store.persisted_offset(P1)) == (6, 3)
    assert store[2] == {"plays": 2}


async def test_a_rebalance_forgets_the_partitions_revoked_or_gained_and_keeps_the_others() -> None:
    store = fresh_store()
    for tp, offset in ((P0, 10), (P1, 11), (P2, 12)):
        store.set_persisted_offset(tp, offset)
    # P0 kept, P1 revoked; P2 "newly assigned" (it was not ours in the previous generation)
    await store.on_rebalance(assigned={P0, P2}, revoked={P1}, newly_assigned={P2})
    assert (store.persisted_offset(P0), store.persisted_offset(P1), store.persisted_offset(P2)) == (10, None, None)


async def test_after_a_recovery_only_active_partitions_keep_their_offset_and_records() -> None:
    store = fresh_store()
    store.apply_changelog_batch([record(0, 1, 1, {"a": 1}), record(1, 1, 2, {"b": 1})],
                                to_key=lambda k: k, to_value=lambda v: v)
    await store.on_recovery_completed(active_tps={P0}, standby_tps={P1})
    # Faust's memory store drops the records of partitions not active here: their offset goes too
    assert store.persisted_offset(P0) == 1 and store.persisted_offset(P1) is None
    assert 1 in store and 2 not in store


def test_the_table_reports_the_held_offset_to_recovery() -> None:
    store = fresh_store()
    store.set_persisted_offset(P0, 99)
    table = SimpleNamespace(data=store)
    assert type(user_stats).persisted_offset(table, P0) == 99


def test_raw_data_is_the_memory_store_s_own_dict_and_any_other_store_itself() -> None:
    from app.table_store import raw_data

    data = raw_data(user_stats)
    assert type(data) is dict and data is user_stats.data.data
    data[424242] = {"events": 1}
    try:
        assert user_stats.data[424242] == {"events": 1}  # what the table's readers see
    finally:
        del data[424242]
    other = SimpleNamespace(data={"a": 1})  # a store that is not the memory one (RocksDB) is used as is
    assert raw_data(other) is other.data
