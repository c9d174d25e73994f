"""The app's flow control keeps the agents' buffered messages when the flow resumes (app/flow_control.py).

Faust's own emptied them at the end of a table recovery, after the stream
partitions were resumed and seeked: a stats batch fetched in that window was
never folded, and the next commit went past it (lost statistics after a
rebalance, tests/integration/test_multiworker.py under load). These cases use
the real app object and the queues Faust's channels and table manager create.
"""
from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from app.flow_control import KeepingFlowControl
from app.main import app


def _event(partition: int, offset: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(topic="user-batches", partition=partition, offset=offset))


def test_the_app_uses_the_keeping_flow_control() -> None:
    assert isinstance(app.flow_control, KeepingFlowControl)


def test_resume_keeps_an_agents_buffer_and_empties_the_recovery_buffer(caplog) -> None:
    async def run() -> tuple[int, int]:
        stream_queue = app.channel().queue  # the queue type an agent's stream reads
        changelog_queue = app.tables.changelog_queue
        stream_queue.put_nowait(_event(5, 2))
        changelog_queue.put_nowait(_event(5, 9))
        with caplog.at_level(logging.INFO, logger="app.flow_control"):
            app.flow_control.resume()
        return stream_queue.qsize(), changelog_queue.qsize()

    kept, recovery = asyncio.run(run())
    assert (kept, recovery) == (1, 0)
    assert "kept" in caplog.text and "user-batches[5]@2" in caplog.text


def test_a_revocation_still_empties_every_buffer() -> None:
    async def run() -> int:
        stream_queue = app.channel().queue
        stream_queue.put_nowait(_event(1, 7))
        app.flow_control.suspend()
        app.flow_control.clear()  # what Faust calls when partitions are revoked
        app.flow_control.resume()
        return stream_queue.qsize()

    assert asyncio.run(run()) == 0


@pytest.mark.parametrize("flow_control", [FlowControlEvent, KeepingFlowControl])
def test_faust_drops_what_ours_keeps(flow_control) -> None:
    """The difference, side by side: Faust's flow control empties the buffer on resume."""
    async def run() -> int:
        event = FlowControlEvent() if flow_control is FlowControlEvent else KeepingFlowControl(set)
        queue = FlowControlQueue(maxsize=10, flow_control=event, clear_on_resume=True)  # as Faust makes them
        queue.put_nowait(_event(5, 2))
        event.resume()
        return queue.qsize()

    assert asyncio.run(run()) == (0 if flow_control is FlowControlEvent else 1)


def test_a_revocation_waits_for_the_batch_being_folded() -> None:
    """Faust waits for the agents' in-progress message on a revocation, so the table recovery
    that follows reads a changelog end that includes that batch's flush (docs/ingestion.md)."""
    assert app.conf.stream_wait_empty is True
