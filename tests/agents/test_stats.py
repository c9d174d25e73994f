"""Stats agents under Faust's test_context(), their changelog records, expiry; the live mirror helpers."""
from __future__ import annotations

import asyncio

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata, TopicPartition

from agents import batches, changelog, live, stats
from agents.folds import apply_user
from agents.trending import hour_key
from tables.stats import TRENDING_EXPIRES, TRENDING_STEP, TRENDING_WINDOW, film_plays_hourly, film_stats, film_viewers, user_stats
from tests.agents.test_folds import NOW, T0, USER_EVENTS, _fold, at, ev, public


class FakeProducer:
    """Stands in for the agents' changelog producer (no broker under test_context): keeps every
    record sent, per (topic, partition), and acknowledges at once."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(512 * 1024, 0)

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int):
        records = self.sent.setdefault((topic, partition), [])
        base = len(records)
        buffer = builder._builder  # the records as built, read back through aiokafka's own reader
        from aiokafka.record.default_records import DefaultRecordBatch
        batch = DefaultRecordBatch(bytes(buffer.build()))
        records += [(record.key, record.value) for record in batch]
        future = asyncio.get_running_loop().create_future()
        future.set_result(RecordMetadata(topic, partition, TopicPartition(topic, partition), base, -1, 0, 0))
        return future


@pytest.fixture
def producer(monkeypatch) -> FakeProducer:
    fake = FakeProducer()
    monkeypatch.setattr(stats, "changelog_producer", lambda settings: fake)
    return fake


async def folded(agent, value: bytes, partition: int) -> None:
    """Put a message and wait until the agent's iteration over it is done: the stream acks a message
    when the agent asks for the next one. `put` itself returns once the message is handed to the
    agent, and the fold then runs in the agent's thread."""
    event = await agent.put(value, partition=partition)
    deadline = asyncio.get_running_loop().time() + 30
    while not event.message.acked:
        assert asyncio.get_running_loop().time() < deadline, "the stats agent did not finish a message in 30 s"
        await asyncio.sleep(0.005)


def test_top_k_orders_by_score_then_film_and_drops_zeros() -> None:
    assert live.top_k([(3, 2), (1, 5), (2, 2), (4, 0)], k=3) == ([1, 2, 3], [5.0, 2.0, 2.0])


def test_merge_parts_sums_fresh_parts_and_reports_stale_ones() -> None:
    import msgpack

    parts = {b"a": msgpack.packb([100.0, [1, 2], [3.0, 1.0]]), b"b": msgpack.packb([95.0, [2, 3], [4.0, 1.0]]),
             b"old": msgpack.packb([10.0, [9], [100.0]])}
    assert live.merge_parts(parts, now=100.0, stale_s=30) == ([2, 1, 3], [5.0, 3.0, 1.0], [b"old"])


@pytest.fixture
def faust_app():
    from app.main import app

    app.finalize()  # store is memory:// by default (FAUST_STORE)
    app.flow_control.resume()
    return app


def test_each_partition_is_swept_at_most_once_per_interval() -> None:
    expiry = stats.Expiry(ttl_s=1000.0)
    assert expiry.every_s == 100.0
    assert expiry.due(0, NOW) and expiry.due(1, NOW)
    assert not expiry.due(0, NOW + 99.0)
    assert expiry.due(0, NOW + 100.0)
    assert stats.Expiry(ttl_s=30 * 86_400).every_s == 3600.0


@pytest.mark.redis_db(11)
async def test_user_agent_folds_a_batch_per_message(faust_app, producer, redis_settings, monkeypatch) -> None:
    from aiokafka.partitioner import DefaultPartitioner
    from faust.types import TP

    monkeypatch.setattr(stats, "settings", redis_settings)
    # No broker here: place changelog keys the way the (unstarted) Kafka producer would.
    partitions = list(range(redis_settings.topic_partitions))
    monkeypatch.setattr(faust_app.producer, "key_partition",
                        lambda topic, key: TP(topic, DefaultPartitioner()(key, partitions, partitions)))
    other = ev(50, 8, 3, "play", T0 + 5)
    second = at(0, [*USER_EVENTS[4:], other], first_offset=4)
    async with stats.user_stats_agent.test_context() as agent:
        await folded(agent, batches.encode(at(0, USER_EVENTS[:4])), 0)
        await folded(agent, b"corrupt", 0)  # logged and skipped, the stream goes on
        await folded(agent, batches.encode(second), 0)
        await folded(agent, batches.encode(second), 0)  # re-delivered: changes nothing
        assert public({7: user_stats[7], 8: user_stats[8]}) == {7: _fold(USER_EVENTS), 8: apply_user(None, other)}
    # one changelog record per user and batch, on the source partition, in Faust's own encoding
    records = producer.sent[(user_stats.changelog_topic_name, 0)]
    assert [key for key, _ in records] == [b"7", b"7", b"8", b"7", b"8"]
    key, value = records[-1]
    assert (key, value) == (user_stats.changelog_topic.prepare_key(8, None)[0],
                            user_stats.changelog_topic.prepare_value(user_stats[8], None)[0])


class Clock:
    """Stands in for the `time` module of agents.stats (the agents read the wall clock for expiry)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.mark.redis_db(11)
async def test_agents_expire_users_and_viewers_not_written_for_the_ttl(faust_app, producer, redis_settings,
                                                                       monkeypatch) -> None:
    from aiokafka.partitioner import DefaultPartitioner
    from faust.types import TP

    day = 86_400.0
    clock = Clock(NOW)
    monkeypatch.setattr(stats, "settings", redis_settings.with_overrides(stats_ttl_days=1.0))
    monkeypatch.setattr(stats, "time", clock)
    partitions = list(range(redis_settings.topic_partitions))
    monkeypatch.setattr(faust_app.producer, "key_partition",
                        lambda topic, key: TP(topic, DefaultPartitioner()(key, partitions, partitions)))
    q = batches.film_partition(77, redis_settings.topic_partitions)
    async with stats.user_stats_agent.test_context() as users, stats.film_stats_agent.test_context() as films:
        await folded(users, batches.encode(at(0, [ev(1, 901, 77, "play", T0)])), 0)
        await folded(films, batches.encode(at(0, [ev(1, 901, 77, "play", T0)])), q)
        clock.now = NOW + 0.75 * day  # 901 plays again: its viewer entry (older than TTL/2) is re-stamped
        await folded(films, batches.encode(at(0, [ev(2, 901, 77, "play", T0 + 1)], first_offset=1)), q)
        clock.now = NOW + 1.5 * day  # 901's user record is older than the TTL, its viewer entry is not
        await folded(users, batches.encode(at(0, [ev(3, 902, 77, "play", T0 + 2)], first_offset=2)), 0)
        await folded(films, batches.encode(at(0, [ev(3, 902, 77, "play", T0 + 2)], first_offset=2)), q)
        assert 901 not in user_stats and 902 in user_stats
        assert film_viewers["77:901"] == [0, 0, NOW + 0.75 * day] and "77:902" in film_viewers
        clock.now = NOW + 2.0 * day  # an hour (the sweep interval) later: 901's entry is older than the TTL
        await folded(films, batches.encode(at(0, [ev(4, 903, 77, "play", T0 + 3)], first_offset=3)), q)
        assert "77:901" not in film_viewers and "77:902" in film_viewers
        assert film_stats[77]["viewers"] == 3  # film records do not expire
    # the sweep's deletes are changelog tombstones (null values), as Faust writes them
    assert (b'"77:901"', None) in producer.sent[(film_viewers.changelog_topic_name, q)]
    assert (b"901", None) in producer.sent[(user_stats.changelog_topic_name, 0)]


def test_user_changelog_lands_on_the_source_partition() -> None:
    """use_partitioner is only right if a key's changelog partition is its source partition."""
    from aiokafka.partitioner import DefaultPartitioner

    from app.producer import message_key

    partitions = list(range(8))
    partition = DefaultPartitioner()
    for user_id in (1, 7, 123, 99_999, 2**40):
        changelog_key = user_stats.changelog_topic.prepare_key(user_id, None)[0]
        assert partition(changelog_key, partitions, partitions) == partition(message_key(user_id), partitions, partitions)


@pytest.mark.redis_db(11)
async def test_film_agent_counts_unique_viewers_and_plays_per_hour(faust_app, producer, redis_settings,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(stats, "settings", redis_settings)
    import time

    now = time.time()
    hour = 3600.0
    expiring = now - TRENDING_EXPIRES.total_seconds() - 3 * hour  # counted in its hour, out of every trending window
    old = now - (TRENDING_EXPIRES + TRENDING_WINDOW).total_seconds() - hour  # too old to be counted at all
    recent = now - now % hour - hour / 2  # the middle of the last hour: the three recent plays share it
    plays = [ev(i, user, 42, "play", ts) for i, (user, ts) in enumerate(
        ((1, recent + 1), (1, recent + 2), (2, recent + 3), (3, old), (4, expiring)))]
    async with stats.film_stats_agent.test_context() as agent:
        await folded(agent, batches.encode(at(0, plays[:2])), 0)
        await folded(agent, batches.encode(at(0, plays[2:], first_offset=2)), 0)
        await folded(agent, batches.encode(at(0, plays, first_offset=0)), 0)  # re-delivered: no change
        assert film_stats[42]["views"] == 5 and film_stats[42]["viewers"] == 4
        assert film_viewers["42:1"][:2] == [0, 0]  # made a viewer by the play at source offset 0
        # plays per hour: the three recent ones and the one 15 h old; the 19 h old one is not counted
        step = TRENDING_STEP.total_seconds()
        hours = {key: counts for key, counts in film_plays_hourly.data.items() if key.startswith("0:")}
        assert sum(counts["42"] for counts in hours.values()) == 4
        assert hour_key(0, old - old % step) not in hours
        assert stats.trending_at(now, partitions=[0]) == ([42], [3.0])  # the last 6 hours only
        assert stats.trending_at(expiring + 1, partitions=[0]) == ([42], [1.0])
        assert stats.trending_at(now, partitions=[1]) == ([], [])  # another partition's hours
        # the changelog's last record of each hour is the table's value (a few records per batch, not per play)
        last = dict(producer.sent[(film_plays_hourly.changelog_topic_name, 0)])
        assert {key: last[changelog.dumps(key)] for key in hours} == {k: changelog.dumps(v) for k, v in hours.items()}
        assert len(producer.sent[(film_plays_hourly.changelog_topic_name, 0)]) == 3  # one per hour and batch



@pytest.mark.redis_db(11)
async def test_trending_ends_with_the_newest_play_when_a_lagging_partition_is_folded_last(
        faust_app, producer, redis_settings, monkeypatch) -> None:
    """Partitions are folded in any order: the published window must not move back to an older
    batch's hour and drop the newer hour's plays."""
    import time

    import redis

    from app.storage import redis_keys
    from faust.types import TP

    monkeypatch.setattr(stats, "settings", redis_settings)
    topic = stats.film_batches_topic.get_topic_name()
    monkeypatch.setattr(stats.app.assignor, "assigned_actives", lambda: {TP(topic, 2), TP(topic, 3)})
    hour = TRENDING_STEP.total_seconds()
    newer = time.time() // hour * hour + 1  # this hour
    older = newer - hour  # the hour before: in the same window, not the window's last hour
    live = redis.Redis.from_url(redis_settings.redis_url, socket_timeout=5)
    async with stats.film_stats_agent.test_context() as agent:
        # films and partitions of their own (the tables outlive each test)
        await folded(agent, batches.encode(at(2, [ev(0, 1, 9002, "play", newer)])), 2)
        await folded(agent, batches.encode(at(3, [ev(1, 2, 9001, "play", older)])), 3)  # lagging, folded last
        deadline = asyncio.get_running_loop().time() + 30
        while (published := live.get(redis_keys.TRENDING)) is None or \
                redis_keys.decode_ranked(published) != ([9001, 9002], [1.0, 1.0]):
            assert asyncio.get_running_loop().time() < deadline, \
                f"trending never held both plays: {published and redis_keys.decode_ranked(published)}"
            await asyncio.sleep(0.05)


async def test_a_cancelled_agent_finishes_the_message_it_is_folding_first() -> None:
    """A stop or rebalance cancels the agent mid-message; the stream then acks that message on its
    way out, so its fold (in the thread), table writes and changelog flush must all still happen."""
    import threading

    release, done = threading.Event(), []

    async def message_work() -> None:
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 30)  # the fold, in a thread
        done.append("written")
        await asyncio.sleep(0)  # the flush
        done.append("flushed")

    task = asyncio.ensure_future(stats._completed(message_work()))
    await asyncio.sleep(0)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done == ["written", "flushed"]
