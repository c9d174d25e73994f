"""retry_forever: keeps trying with capped, doubling delays, and says so in the log;
errors the caller calls permanent are raised at once."""
from __future__ import annotations

import itertools
import logging

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from agents.retry import backoff_delays, kafka_permanent, retry_forever


def test_delays_double_up_to_the_cap() -> None:
    assert list(itertools.islice(backoff_delays(0.2, 1.0), 5)) == [0.2, 0.4, 0.8, 1.0, 1.0]


async def test_retries_until_success_and_logs_each_failure(caplog: pytest.LogCaptureFixture) -> None:
    attempts = []
    retries = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 4:
            raise ConnectionError(f"down #{len(attempts)}")
        return "stored"

    with caplog.at_level(logging.INFO):
        result = await retry_forever(flaky, "insert", logging.getLogger("t"), on_retry=lambda: retries.append(1),
                                     first=0.001, cap=0.002)
    assert result == "stored"
    assert len(attempts) == 4 and len(retries) == 3
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [m.split(":")[0] for m in failures] == ["insert failed (attempt 1)", "insert failed (attempt 2)",
                                                   "insert failed (attempt 3)"]
    assert "down #3" in failures[-1]
    assert any("succeeded after 3 failed attempts" in r.getMessage() for r in caplog.records)


async def test_permanent_errors_are_raised_at_once_without_retry() -> None:
    attempts = []

    async def refused() -> None:
        attempts.append(1)
        raise MessageSizeTooLargeError()

    with pytest.raises(MessageSizeTooLargeError):
        await retry_forever(refused, "send", logging.getLogger("t"), first=0.001, permanent=kafka_permanent)
    assert len(attempts) == 1
    assert not kafka_permanent(KafkaConnectionError())
