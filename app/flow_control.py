"""Faust's stream flow control, except that resuming the flow keeps the agents' buffered messages.

Why (docs/ingestion.md, "Rebalances: no buffered message dropped"): Faust empties
every stream buffer each time it resumes the flow. At the end of a table
recovery it resumes the stream partitions, awaits the seek to the committed
offsets, and only then resumes the flow. A message fetched in that window sits
in an agent's buffer and was emptied with it, never to be fetched again (the
consumer's position is past it), and Faust's commit skips a single
unacknowledged message at the head of a partition (`Consumer._new_offset`
compares with `> 1`), so the next commit went past it. One stats batch message
holds a whole loader batch: a worker taking over a stopped worker's partitions
lost that batch's statistics (found by tests/integration/test_multiworker.py
under load; the Kafka state showed the message committed and no changelog
record of it).

Keeping them is safe: a message of an earlier consumer generation is skipped
by the stream itself (Faust compares generations), a revocation still empties
every buffer (`clear()`, called by Faust explicitly), and a message both kept
and fetched again after the seek is folded once (the source-offset marks,
agents/folds.py). The table manager's changelog buffer (recovery) is still
emptied on resume, as Faust does.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)


def _positions(queue: Any) -> list[str]:
    """`topic[partition]@offset` of the stream events buffered in `queue` (for the log)."""
    out = []
    for item in list(getattr(queue, "_queue", ())):  # asyncio.Queue's buffer; only read
        message = getattr(item, "message", None)
        if message is not None:
            out.append(f"{message.topic}[{message.partition}]@{message.offset}")
    return out


class KeepingFlowControl(FlowControlEvent):
    """`app.flow_control` whose `resume()` empties only the queues `cleared_on_resume()` names."""

    def __init__(self, cleared_on_resume: Callable[[], set[int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cleared_on_resume = cleared_on_resume

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()
        cleared = self._cleared_on_resume()
        kept: list[str] = []
        for queue in list(self._queues):
            if id(queue) in cleared:
                queue.clear()
            elif queue.qsize():
                kept.extend(_positions(queue))
        if kept:
            log.info("flow resumed with %d buffered stream message(s), kept (Faust would drop them): %s",
                     len(kept), ", ".join(kept[:20]))
