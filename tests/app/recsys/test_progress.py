from __future__ import annotations

import logging

import pytest

from app.recsys.progress import LogProgress


def test_log_progress_writes_about_every_tenth_and_the_end(caplog: pytest.LogCaptureFixture) -> None:
    progress = LogProgress(logging.getLogger("test.progress"), step=0.25)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for done in range(0, 101):
            progress("publish", done, 100)
        progress("publish", 100, 100)  # a repeated final call logs nothing more
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "publish: 0/100 (0%)", "publish: 25/100 (25%)", "publish: 50/100 (50%)",
        "publish: 75/100 (75%)", "publish: 100/100 (100%)",
    ]


def test_log_progress_ignores_stages_of_unknown_size(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        LogProgress()("load", 10, None)
    assert not caplog.records
