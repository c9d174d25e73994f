"""Event parsing on the loader's hot path: `app.events.parse_event` (orjson) vs the
same validation behind the standard library's `json.loads` (the baseline).

    .venv/bin/python bench/parse.py [--events 50000 --rounds 5]

Simulated wire messages (app.simulator); each variant runs `--rounds` times,
alternately, and keeps its best round. Prints events/s of each and the ratio.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.events import parse_event, validate  # noqa: E402
from bench.ingest import simulated_messages  # noqa: E402


def rate(fn: Callable[[bytes], object], values: list[bytes]) -> float:
    """Events/s of one pass of `fn` over `values`."""
    started = time.perf_counter()
    for value in values:
        fn(value)
    return len(values) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be >= 1")
    values = [value for _, value in simulated_messages(args.events)]
    now = time.time()
    rates = {"orjson": 0.0, "json": 0.0}
    for _ in range(args.rounds):  # alternate, so machine load hits both alike
        rates["orjson"] = max(rates["orjson"], rate(lambda v: parse_event(v, now), values))
        rates["json"] = max(rates["json"], rate(lambda v: validate(json.loads(v), now), values))
    print(f"parse_event (orjson + validate): {rates['orjson']:,.0f} events/s")
    print(f"baseline (json.loads + validate): {rates['json']:,.0f} events/s")
    print(f"ratio: {rates['orjson'] / rates['json']:.2f}")


if __name__ == "__main__":
    main()
