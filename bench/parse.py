"""Event parsing on the loader's hot path: the column fast path (`app.event_columns.parse_columns`,
what the loader runs) vs `app.events.parse_event` value by value (the baseline, what it ran before).

    .venv/bin/python bench/parse.py [--events 20000 --rounds 5]

Simulated wire messages (app.simulator) in loader-sized batches; each variant
runs `--rounds` times, alternately, and keeps its best round, timed in CPU
seconds of this process (other work on the machine inflates wall time, not
CPU time). Prints events per CPU-second of each and the ratio.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.event_columns import parse_columns  # noqa: E402
from app.events import parse_event  # noqa: E402
from bench.ingest import simulated_messages  # noqa: E402


def rate(fn: Callable[[list[bytes]], object], values: list[bytes]) -> float:
    """Events per CPU-second of one pass of `fn` over `values`."""
    started = time.process_time()
    fn(values)
    return len(values) / (time.process_time() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="one loader batch (LOADER_BATCH_MAX)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be >= 1")
    values = [value for _, value in simulated_messages(args.events)]
    now = time.time()
    variants = {
        "columns": lambda vs: parse_columns(vs, now),
        "per event": lambda vs: [parse_event(v, now) for v in vs],
    }
    rates = dict.fromkeys(variants, 0.0)
    for _ in range(args.rounds):  # alternate, so machine load hits both alike
        for name, fn in variants.items():
            rates[name] = max(rates[name], rate(fn, values))
    print(f"parse_columns (column fast path, the loader): {rates['columns']:,.0f} events per CPU-second")
    print(f"baseline, parse_event per event: {rates['per event']:,.0f} events per CPU-second")
    print(f"ratio: {rates['columns'] / rates['per event']:.2f}")


if __name__ == "__main__":
    main()
