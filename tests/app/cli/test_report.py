"""`cinerec report` rendering: the summary dict as an aligned table (the
numbers themselves are tested in tests/app/analytics and tests/integration)."""
from __future__ import annotations

import re

from app.cli.report import render


def summary(**funnel: object) -> dict:
    rates = {k: {"retained": r, "eligible": 4, "rate": r / 4} for k, r in (("d1", 2), ("d7", 1), ("d30", 0))}
    return {
        "from": "2026-03-01",
        "to": "2026-03-02",
        "time_on_site": {"active_users": 3, "active_user_days": 5, "avg_time_on_site_s": 320.0},
        "retention": rates,
        "engagement": {
            "ratings": 3, "avg_rating": 8.0, "plays": 4, "completes": 1, "completion_rate": 0.25,
            "viewings": 3, "avg_watch_ratio": 1.25 / 3,
        },
        "funnel": {"impressions": 0, "clicks": 0, "ctr": 0.0, "watch_seconds": 0.0,
                   "by_model_version": [], "by_source": [], **funnel},
    }


def test_headline_metrics_with_their_counts() -> None:
    lines = render(summary()).splitlines()

    assert lines[0] == "cinerec business metrics, 2026-03-01 .. 2026-03-02 (UTC days)"
    values = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines[4:14])  # label, value
    assert values["avg time on site per active user-day"] == "5.3 min"  # 320 s / 60
    assert values["retention D1"] == "50.0 %  (2 of 4 users)"
    assert values["completion (completes / plays)"] == "25.0 %  (1 of 4)"
    assert values["avg watched share per viewing"] == "41.7 %  (3 viewings)"  # 1.25 / 3


def test_funnel_tables_align_and_name_the_empty_model_version() -> None:
    row = {"impressions": 1200, "clicks": 30, "ctr": 0.025, "clicked": 28, "watched": 20, "watch_seconds": 36000.0}
    text = render(summary(
        by_model_version=[{"model_version": "", **row}, {"model_version": "als-1", **row}],
        by_source=[],
    ))

    lines = text.splitlines()
    start = lines.index("recommendation funnel by model version") + 1
    header, rule, none_row, als_row = lines[start : start + 4]
    assert none_row.split() == ["(none)", "1200", "30", "2.5", "%", "28", "20", "10.0"]  # 36000 s = 10 h
    assert len(header) == len(rule) == len(none_row) == len(als_row)  # one width per column
    assert lines[-1] == "(no impressions or clicks in this range)"  # by source
