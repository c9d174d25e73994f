"""Progress reporting for long recsys work, decoupled from how it is shown.

The pipeline only calls `progress(stage, done, total)`; the CLI and the
benchmark show tqdm bars, the Celery task writes log lines. `total` is None
when unknown.
"""
from __future__ import annotations

import logging
from typing import Protocol

from tqdm import tqdm

log = logging.getLogger(__name__)


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int | None) -> None: ...


def no_progress(stage: str, done: int, total: int | None) -> None:
    """For callers that do not want any display."""


class TqdmProgress:
    """One tqdm bar per stage, for terminals (CLI, benchmark)."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit="it", leave=True, dynamic_ncols=True)
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


class LogProgress:
    """Log lines at every 10% of a stage, for workers whose output is a log."""

    def __init__(self, logger: logging.Logger = log, step: float = 0.1) -> None:
        self._logger = logger
        self._step = step
        self._next: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not total:
            return
        fraction = done / total
        if fraction >= self._next.get(stage, 0.0):
            self._logger.info("%s: %d/%d (%.0f%%)", stage, done, total, 100 * fraction)
            self._next[stage] = min(1.0, fraction + self._step)
            if done >= total:
                self._next[stage] = float("inf")
