"""The loader's ClickHouse error policy: transient errors retried, bad records found by
splitting the batch and returned, schema errors fatal. The insert is a function here
(the policy is what is tested); tests/integration/test_ingest_poison.py runs it on a real server."""
from __future__ import annotations

import struct

import pytest
from clickhouse_driver import errors as ch_errors

from app.events import Event
from agents.retry import Fatal
from agents.writer import DATA, SCHEMA, TRANSIENT, classify, store_or_reject

EVENTS = [Event(f"e{i}", 1, 1, "play", 1_700_000_000.0 + i) for i in range(37)]
BAD = {5, 6, 30}


class Server:
    """Refuses any insert holding a bad event (as ClickHouse refuses a whole block); fails transiently first."""

    def __init__(self, transient: int = 0, error: Exception | None = None) -> None:
        self.transient = transient
        self.error = error
        self.stored: set[str] = set()
        self.calls = 0

    async def insert(self, events) -> int:
        self.calls += 1
        if self.transient:
            self.transient -= 1
            raise ch_errors.NetworkError("connection reset")
        if self.error is not None:
            raise self.error
        if any(int(e.event_id[1:]) in BAD for e in events):
            raise ch_errors.ServerException("Value out of range", code=321)
        self.stored |= {e.event_id for e in events}
        return len(events)


@pytest.mark.parametrize("exc, kind", [
    (ch_errors.ServerException("x", code=53), DATA),  # TYPE_MISMATCH
    (ch_errors.TypeMismatchError("x"), DATA),
    (struct.error("ubyte format requires 0 <= number <= 255"), DATA),  # driver serialising a column
    (OverflowError("int too big"), DATA),
    (ch_errors.ServerException("x", code=60), SCHEMA),  # UNKNOWN_TABLE
    (ch_errors.ServerException("x", code=516), SCHEMA),  # AUTHENTICATION_FAILED
    (ch_errors.ServerException("x", code=252), TRANSIENT),  # TOO_MANY_PARTS
    (ch_errors.NetworkError("x"), TRANSIENT),
    (ConnectionRefusedError(), TRANSIENT),
    (TimeoutError(), TRANSIENT),
])
def test_errors_are_classified(exc: Exception, kind: str) -> None:
    assert classify(exc) == kind


async def test_bad_records_are_found_by_splitting_and_the_rest_is_stored() -> None:
    server = Server(transient=2)
    refused = await store_or_reject(server.insert, EVENTS)
    assert sorted(i for i, _ in refused) == sorted(BAD)
    assert all("Value out of range" in why for _, why in refused)
    assert server.stored == {e.event_id for i, e in enumerate(EVENTS) if i not in BAD}
    assert server.calls < 2 + 2 * len(BAD) * 7  # about 2 log2(n) inserts per bad record


async def test_a_clean_batch_is_one_insert() -> None:
    server = Server()
    assert await store_or_reject(server.insert, EVENTS[:5]) == []
    assert server.calls == 1
    assert await store_or_reject(server.insert, []) == []


async def test_a_schema_error_is_fatal() -> None:
    with pytest.raises(Fatal, match="UNKNOWN_TABLE|doesn't exist|check the table schema"):
        await store_or_reject(Server(error=ch_errors.ServerException("Table x doesn't exist", code=60)).insert,
                              EVENTS)
