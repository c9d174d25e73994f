"""`cinerec report --from YYYY-MM-DD --to YYYY-MM-DD`: the business metrics of a
date range as a readable table in the terminal (same numbers as /v1/analytics/summary)."""
from __future__ import annotations

from typing import Any

import click

from app.cli import main
from app.settings import get_settings


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers, widths from the content."""
    cells = [tuple(str(c) for c in header), *(tuple(str(c) for c in row) for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    return [line(cells[0]), "  ".join("-" * w for w in widths), *(line(row) for row in cells[1:])]


def render(summary: dict[str, Any]) -> str:
    """The report text of an `app.analytics.api.summary` dict."""
    t, r, e, f = summary["time_on_site"], summary["retention"], summary["engagement"], summary["funnel"]
    retention = [
        (f"retention {k.upper()}", f"{_pct(r[k]['rate'])}  ({r[k]['retained']} of {r[k]['eligible']} users)")
        for k in ("d1", "d7", "d30")
    ]
    lines = [f"cinerec business metrics, {summary['from']} .. {summary['to']} (UTC days)", ""]
    lines += table(
        ("metric", "value"),
        [
            ("active users", t["active_users"]),
            ("avg time on site per active user-day", f"{t['avg_time_on_site_s'] / 60:.1f} min"),
            *retention,
            ("average rating (1..10)", f"{e['avg_rating']:.2f}  ({e['ratings']} ratings)"),
            ("completion (completes / plays)", f"{_pct(e['completion_rate'])}  ({e['completes']} of {e['plays']})"),
            ("avg watched share per viewing", f"{_pct(e['avg_watch_ratio'])}  ({e['viewings']} viewings)"),
            ("impressions / clicks / CTR", f"{f['impressions']} / {f['clicks']} / {_pct(f['ctr'])}"),
            ("watch time from clicks", f"{f['watch_seconds'] / 3600:.1f} h"),
        ],
    )
    header = ("impressions", "clicks", "CTR", "clicked films", "watched", "watch h")
    for key, title in (("model_version", "model version"), ("source", "source")):
        rows = [
            (row[key] or "(none)", row["impressions"], row["clicks"], _pct(row["ctr"]), row["clicked"], row["watched"],
             f"{row['watch_seconds'] / 3600:.1f}")
            for row in f[f"by_{key}"]
        ]
        lines += ["", f"recommendation funnel by {title}"]
        lines += table((title, *header), rows) if rows else ["(no impressions or clicks in this range)"]
    return "\n".join(lines)


@main.command()
@click.option("--from", "first", required=True, metavar="YYYY-MM-DD", help="First day (UTC), inclusive.")
@click.option("--to", "last", required=True, metavar="YYYY-MM-DD", help="Last day (UTC), inclusive.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of a table.")
def report(first: str, last: str, as_json: bool) -> None:
    """Business metrics of a date range: time on site, retention, ratings, completion, funnel."""
    import json

    from clickhouse_driver.errors import Error as ClickHouseError

    from app.analytics import api

    try:
        period = api.DateRange.parse(first, last)
    except api.InvalidRange as exc:
        raise click.UsageError(str(exc)) from None  # exit status 2
    settings = get_settings()
    try:
        summary = api.run(settings, api.summary, period)
    except api.ReportTimeout as exc:
        raise click.ClickException(f"{exc} (ANALYTICS_TIMEOUT_S={settings.analytics_timeout_s:g})") from None
    except (ClickHouseError, OSError) as exc:  # driver errors carry the server's message
        raise click.ClickException(f"ClickHouse at {settings.clickhouse_url}: {exc}") from None
    click.echo(json.dumps(summary, indent=2) if as_json else render(summary))
