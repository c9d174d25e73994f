"""The loader's ClickHouse side: one writer thread, retries, and what to do with errors
that retrying cannot fix (docs/ingestion.md, "Errors that retrying cannot fix").

An insert error is one of three kinds (`classify`):
- transient (connection refused, timeouts, too many parts, memory limit, and
  every code not listed below): retried with capped backoff until it succeeds;
- data: ClickHouse (or the driver, serialising a column) refuses the VALUES
  (type mismatch, a number out of the column's range, a parse error). Some
  records of the batch are bad; the batch is split in halves until each
  refused record is alone, the rest is stored, and the refused records are
  returned to be dead-lettered (`rejected_by_clickhouse`);
- schema: the table, a column or the database is missing, or access is
  refused. No record can be stored until an operator acts: `Fatal`.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, Sequence

from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from app import telemetry
from app.event_columns import EventColumns
from app.settings import Settings
from app.storage.clickhouse import client as clickhouse_client
from app.storage.interactions import insert_columns
from agents.retry import Fatal, retry_forever

log = logging.getLogger(__name__)

TRANSIENT, DATA, SCHEMA = "transient", "data", "schema"
# ClickHouse error codes (clickhouse_driver.errors.ErrorCodes) meaning "these values are bad".
DATA_CODES = frozenset({
    6, 22, 25, 26, 27, 38, 41,  # CANNOT_PARSE_*
    43, 53, 69, 70, 72,  # ILLEGAL_TYPE_OF_ARGUMENT, TYPE_MISMATCH, ARGUMENT_OUT_OF_BOUND, CANNOT_CONVERT_TYPE, CANNOT_PARSE_NUMBER
    117, 131, 321, 346, 376, 441,  # INCORRECT_DATA, TOO_LARGE_STRING_SIZE, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, ...
})
# ... and "nothing can be inserted here": missing table/column/database, no access.
SCHEMA_CODES = frozenset({
    8, 10, 16, 47, 60, 81,  # THERE_IS_NO_COLUMN, NOT_FOUND_COLUMN_IN_BLOCK, NO_SUCH_COLUMN_IN_TABLE, ..., UNKNOWN_TABLE/DATABASE
    164, 192, 193, 194, 291, 497, 516,  # READONLY, UNKNOWN_USER, WRONG/REQUIRED_PASSWORD, ACCESS_DENIED, AUTHENTICATION_FAILED
})
# Raised by the driver while serialising a column (types_check=False): a value the column cannot hold.
CLIENT_DATA_ERRORS = (struct.error, TypeError, ValueError, OverflowError)


def classify(exc: BaseException) -> str:
    """TRANSIENT, DATA or SCHEMA (see the module doc)."""
    code = getattr(exc, "code", None) if isinstance(exc, ch_errors.Error) else None
    if code in DATA_CODES:
        return DATA
    if code in SCHEMA_CODES:
        return SCHEMA
    if isinstance(exc, CLIENT_DATA_ERRORS) and not isinstance(exc, ch_errors.Error):
        return DATA
    return TRANSIENT


def _short(exc: BaseException, limit: int = 300) -> str:
    """One line: the server's message without its stack trace, whitespace collapsed, cut."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split("Stack trace:")[0].split())
    return text if len(text) <= limit else f"{text[:limit]}..."


async def store_or_reject(
    insert: Callable[[Sequence], Awaitable[object]], events: Sequence, what: str = "ClickHouse insert",
    on_retry: Callable[[], None] = lambda: None,
) -> list[tuple[int, str]]:
    """Insert `events` with `insert`, transient errors retried until they pass; returns the
    (index, why) of the events refused as bad data, everything else stored.

    A data error splits the batch in halves, recursively (about 2 log2(n)
    extra inserts per bad record); storing a half twice is harmless
    (duplicates collapse in the ReplacingMergeTree). A schema error raises `Fatal`.
    """

    async def attempt(lo: int, hi: int) -> list[tuple[int, str]]:
        piece = events[lo:hi]
        try:
            await retry_forever(lambda: insert(piece), f"{what} of {len(piece)} events", log, on_retry=on_retry,
                                permanent=lambda exc: classify(exc) != TRANSIENT)
            return []
        except Exception as exc:  # permanent by construction: retry_forever retried the rest
            if classify(exc) == SCHEMA:
                raise Fatal(f"ClickHouse refuses the insert itself ({_short(exc)}): check the table schema "
                            "(`cinerec db migrate`) and the user's rights") from exc
            if hi - lo == 1:
                return [(lo, _short(exc))]
            if hi - lo == len(events):
                log.warning("%s of %d events refused as bad data (%s); splitting it to find the bad records",
                            what, len(events), _short(exc))
            mid = (lo + hi) // 2
            return await attempt(lo, mid) + await attempt(mid, hi)

    return await attempt(0, len(events)) if events else []


class ClickHouseWriter:
    """Runs the blocking driver in one thread of its own, with its own connection.

    One thread keeps the (not thread-safe) client single-user and keeps the
    event loop free while ClickHouse works; a failed connection is dropped
    and re-opened on the next attempt.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-writer")
        self._conn: Client | None = None

    def _insert_blocking(self, events: EventColumns) -> int:
        if self._conn is None:
            self._conn = clickhouse_client(self.settings)
        try:
            return insert_columns(self._conn, events)
        except Exception:
            self._conn.disconnect()
            self._conn = None
            raise

    async def insert(self, events: EventColumns) -> int:
        """Insert once (may raise); see `store` for the retrying form."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._insert_blocking, events)

    async def store(self, events: EventColumns) -> list[tuple[int, str]]:
        """Insert, retrying transient errors until ClickHouse accepts; returns the refused records
        as (index, why) (`store_or_reject`)."""
        started = time.perf_counter()
        rejected = await store_or_reject(self.insert, events, on_retry=telemetry.INSERT_RETRIES.inc)
        telemetry.INSERT_SECONDS.observe(time.perf_counter() - started)
        return rejected
