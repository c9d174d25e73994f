"""Simulator and producer benchmark: figures against baselines measured in the same run.

    .venv/bin/python bench/simulate.py [--events 1000000] [--produce 200000] [--naive 100000]
    .venv/bin/python bench/simulate.py --quality [--seeds 0,1,2]

1. Generation: `app.simulate.generate` (numpy, whole sessions with planted
   tastes) in events/s, as columns and as Event objects, against a naive
   per-event Python generator (random + uuid4 + Event per event, with
   popularity-only choices and no sessions: far less realistic).
2. Producing (needs Kafka): `app.producer.produce_messages` (acks=all,
   idempotent, linger, pipelined windows) in messages/s, against a bare
   aiokafka producer with default settings (acks=1, no linger) sending the
   same messages, each on a fresh topic that is deleted afterwards.
3. --quality (instead of 1 and 2): is the planted taste learnable? ALS with the
   shipped defaults vs Popular (the retrain gate's baseline), NDCG@10 on the
   7-day time holdout (the retrain gate's before it grew to GATE_MIN_USERS), for
   the `cinerec simulate` defaults and the `make demo` size, per seed: the gate
   needs ALS above Popular.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import itertools
import random
import sys
import time
import uuid
from dataclasses import fields
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.events import Event  # noqa: E402
from app.producer import produce_messages, to_message  # noqa: E402
from app.recsys.data.dataset import EventWeights, Interactions, build_dataset  # noqa: E402
from app.recsys.evaluation.evaluate import evaluate  # noqa: E402
from app.recsys.evaluation.splits import time_holdout  # noqa: E402
from app.recsys.models.registry import ALSRecommender, PopularRecommender  # noqa: E402
from app.schema import FILM_EVENT_TYPES  # noqa: E402
from app.settings import Settings, get_settings  # noqa: E402
from app.simulate import generate  # noqa: E402
from app.storage.kafka_admin import admin_client, ensure_topics  # noqa: E402

END = 1_750_000_000.0
TYPES = ("impression", "click", "play", "progress", "complete")
# (users, films, events) of `cinerec simulate` and of `make demo`; 30 days, as both use.
QUALITY_CONFIGS = ((5_000, 1_000, 200_000), (3_000, 800, 200_000))
HOLDOUT_DAYS = 7.0


def naive_events(n: int, users: int, films: int, seed: int) -> list[Event]:
    """The per-event Python way: one random draw, one uuid4 and one Event at a time."""
    rnd = random.Random(seed)
    film_cdf = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(films)))
    out = []
    for _ in range(n):
        film = bisect.bisect_right(film_cdf, rnd.random() * film_cdf[-1]) + 1
        out.append(Event(str(uuid.uuid4()), rnd.randint(1, users), min(film, films), rnd.choice(TYPES),
                         END - rnd.random() * 30 * 86_400))
    return out


def timed(label: str, fn):
    gc.collect()
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.2f}s", file=sys.stderr)
    return result, seconds


async def bare_produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=60_000)
    await asyncio.wait_for(producer.start(), settings.network_timeout_s * 2)
    try:
        futures = [await producer.send(settings.topic_interactions, value=v, key=k)
                   for k, v in tqdm(messages, desc="bare aiokafka", unit="ev", mininterval=1)]
        await asyncio.wait_for(asyncio.gather(*futures), 300)
    finally:
        await producer.stop()


async def produce_rates(base: Settings, messages: list[tuple[bytes, bytes]], rounds: int = 2) -> tuple[float, float]:
    """Best rate of each over `rounds` alternating rounds (a shared machine is noisy)."""
    rates: dict[str, float] = {"producer": 0.0, "baseline": 0.0}
    for name in ("baseline", "producer") * rounds:
        settings = base.with_overrides(topic_interactions=f"bench-sim-{name}-{uuid.uuid4().hex[:8]}",
                                       topic_dlq=f"bench-sim-dlq-{uuid.uuid4().hex[:8]}")
        await ensure_topics(settings)
        started = time.perf_counter()
        if name == "producer":
            await produce_messages(settings, messages, len(messages), desc="EventProducer")
        else:
            await bare_produce(settings, messages)
        rates[name] = max(rates[name], len(messages) / (time.perf_counter() - started))
        async with admin_client(settings) as admin:
            await asyncio.wait_for(admin.delete_topics([settings.topic_interactions, settings.topic_dlq]), 30)
    return rates["producer"], rates["baseline"]


def quality(users: int, films: int, events: int, seed: int) -> tuple[float, float]:
    """(ALS, Popular) NDCG@10 on the simulated month, split and weighted as the retrain pipeline does."""
    _, history = generate(users, films, events, seed, 30, END)
    interactions = Interactions.from_columns({f.name: getattr(history, f.name) for f in fields(Interactions)})
    # What the trainer loads: film events only (app.recsys.data.load).
    interactions = interactions.select(np.isin(history.event_type, sorted(FILM_EVENT_TYPES)) & (history.film_id != 0))
    train, test = time_holdout(interactions, HOLDOUT_DAYS)
    dataset = build_dataset(train, EventWeights())
    als = evaluate(ALSRecommender().fit(dataset), dataset, test)["ndcg@10"]
    return als, evaluate(PopularRecommender().fit(dataset), dataset, test)["ndcg@10"]


def print_quality(seeds: list[int]) -> None:
    runs = [(config, seed) for config in QUALITY_CONFIGS for seed in seeds]
    ratios = []
    for (users, films, events), seed in tqdm(runs, desc="fit + evaluate", unit="run"):
        als, popular = quality(users, films, events, seed)
        ratios.append(als / popular)
        tqdm.write(f"{users} users, {films} films, {events:,} events, seed {seed}: ALS NDCG@10 {als:.4f}; "
                   f"Popular baseline {popular:.4f}; ratio {als / popular:.2f}")
    print(f"ALS / Popular NDCG@10 over {len(runs)} runs: min ratio {min(ratios):.2f}, max {max(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events for the vectorised generator")
    parser.add_argument("--naive", type=int, default=100_000, help="events for the naive baseline")
    parser.add_argument("--produce", type=int, default=200_000, help="messages to produce (0 = skip Kafka)")
    parser.add_argument("--quality", action="store_true", help="ALS vs Popular on simulated months instead")
    parser.add_argument("--seeds", default="0,1,2", help="simulator seeds for --quality, comma-separated")
    args = parser.parse_args()
    if args.quality:
        print_quality([int(seed) for seed in args.seeds.split(",")])
        return

    print("generation", file=sys.stderr)
    gc.disable()  # both sides build many small objects; the cyclic collector would dominate
    (_, events), columns_s = timed(f"generate {args.events:,} events (columns)",
                                   lambda: generate(10_000, 2_000, args.events, 1, 30, END))
    _, objects_s = timed("  ... as Event objects", lambda: list(events))
    _, naive_s = timed(f"naive {args.naive:,} events", lambda: naive_events(args.naive, 10_000, 2_000, 1))
    gc.enable()
    naive = args.naive / naive_s
    for label, seconds in (("columns", columns_s), ("Event objects", columns_s + objects_s)):
        rate = args.events / seconds
        print(f"generate ({label}): {rate:,.0f} events/s; naive per-event baseline: {naive:,.0f} events/s; "
              f"ratio {rate / naive:.2f}")

    if args.produce:
        first = itertools.islice(events, args.produce)
        messages = [to_message(e) for e in tqdm(first, total=args.produce, desc="encode", unit="ev", mininterval=1)]
        ours, bare = asyncio.run(produce_rates(get_settings(), messages))
        print(f"produce: {ours:,.0f} msg/s (acks=all, idempotent); bare aiokafka baseline: {bare:,.0f} msg/s; "
              f"ratio {ours / bare:.2f}")


if __name__ == "__main__":
    main()
