"""The dashboard as a person sees it: headless Chromium (Debian's, driven by
Playwright) opens /dashboard of the real aiohttp app over simulated traffic in
a test ClickHouse database. The page asks for the analytics token (a wrong one
is refused and asked again), then draws every chart with data; a reload in the
same tab does not ask again (sessionStorage). The console stays clean once the
token is in, and a screenshot is saved under the test's tmp_path. With a finished
experiment, its section shows the verdict, the per-arm days and the intervals;
`--update-screenshots` writes that section's screenshot to docs/experiment-dashboard.png."""
from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import ConsoleMessage, Error as PlaywrightError, Page, async_playwright

from app.experiments.model import State
from app.localstack.browser import CHROMIUM_FLAGS, chromium_path
from app.settings import REPO_ROOT, Settings
from tests.integration.analytics_support import TOKEN, VERSIONS, events, http, loaded  # noqa: F401 (fixtures)
from tests.integration.experiment_support import (
    CHALLENGER_VERSION,
    CONTROL,
    DAYS,
    EXPERIMENT_ID,
    RANGE,
    finished_experiment,
)
from tests.integration.web_support import running_client, sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(13), pytest.mark.slow]

CHARTS = ("chart-time", "chart-retention", "chart-engagement", "chart-ctr", "chart-ingest", "chart-runs")
EXPERIMENT_CHARTS = ("chart-experiment-daily", "chart-experiment-intervals")
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "experiment-dashboard.png"
BROWSER_TIMEOUT_MS = 60_000
REFUSAL_NOTE = r"^console error: Failed to load resource: .* status of 40[13] "
ASKING = "document.body.dataset.state === 'token' && document.getElementById('status').textContent.includes({text!r})"


def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.fail("chromium is not installed; run `make browser` (apt-get install chromium)", pytrace=False)
    return path


async def wait_ready(page: Page, problems: list[str]) -> None:
    try:
        await page.wait_for_selector('body[data-state="ready"]', timeout=BROWSER_TIMEOUT_MS)
    except PlaywrightError:
        status = await page.text_content("#status")
        pytest.fail(f"dashboard never became ready; it says {status!r}; problems: {problems}")


@contextlib.asynccontextmanager
async def browser_page(tmp_path: Path, problems: list[str]) -> AsyncIterator[Page]:
    """A page of a fresh headless Chromium profile; console errors, page errors, failed requests
    and HTTP errors are appended to `problems`."""

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=chromium(),
            headless=True,
            args=list(CHROMIUM_FLAGS),
            viewport={"width": 1400, "height": 1000},
            timeout=BROWSER_TIMEOUT_MS,
        )
        try:
            page = await context.new_page()
            page.on("console", on_console)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
            page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
            yield page
        finally:
            await context.close()


async def chart_points(page: Page, ids: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Per chart: data points drawn (-1: no chart) and its width in pixels."""
    return await page.evaluate(
        """ids => Object.fromEntries(ids.map(id => {
            const chart = Chart.getChart(id);
            const drawn = (n, d) => n + d.data.filter(v => v !== null).length;
            const points = chart ? chart.data.datasets.reduce(drawn, 0) : -1;
            return [id, {points, width: chart ? chart.width : 0}];
        }))""",
        list(ids),
    )


async def test_dashboard_asks_for_the_token_then_draws_every_chart(http: TestClient, tmp_path: Path) -> None:
    problems: list[str] = []
    async with browser_page(tmp_path, problems) as page:
        await page.goto(str(http.make_url("/dashboard?from=2026-03-01&to=2026-03-20")), timeout=BROWSER_TIMEOUT_MS)
        await page.wait_for_function(ASKING.format(text="enter the analytics token"), timeout=BROWSER_TIMEOUT_MS)
        await page.fill("#token-input", "not-the-token")
        await page.click("#token button")
        await page.wait_for_function(ASKING.format(text="refused"), timeout=BROWSER_TIMEOUT_MS)
        await page.fill("#token-input", TOKEN)
        await page.click("#token button")
        await wait_ready(page, problems)
        assert await page.evaluate("() => sessionStorage.getItem('cinerec.analyticsToken')") == TOKEN
        await page.reload(timeout=BROWSER_TIMEOUT_MS)  # same tab, same session: no second prompt
        await wait_ready(page, problems)
        assert await page.is_hidden("#token")
        drawn = await chart_points(page, CHARTS)
        labels = await page.locator(".kpi .label").all_text_contents()
        kpis = dict(zip(labels, await page.locator(".kpi .value").all_text_contents()))
        ctr_labels = await page.evaluate("() => Chart.getChart('chart-ctr').data.labels")
        no_experiment = await page.text_content("#experiment-title")
        await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # the only refusals: 401 (no token yet) and 403 (the wrong one), and Chromium's console note of each
    refusals = [p.split(":")[0] for p in problems if p.startswith("HTTP ")]
    assert refusals == ["HTTP 401", "HTTP 403"], problems
    others = [p for p in problems if not p.startswith("HTTP ") and not re.search(REFUSAL_NOTE, p)]
    assert others == [], problems
    for chart_id in CHARTS:
        assert drawn[chart_id]["points"] > 0, f"{chart_id} drew no data"
        assert drawn[chart_id]["width"] > 100, f"{chart_id} has no room on the page"
    summary = await (await http.get("/v1/analytics/summary", params={"from": "2026-03-01", "to": "2026-03-20"})).json()
    assert kpis["Active users"] == str(summary["time_on_site"]["active_users"])
    assert set(VERSIONS) <= set(ctr_labels)
    assert no_experiment.startswith("No experiment has started yet")
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


@pytest.fixture
def finished(clickhouse_settings: Settings, redis_settings: Settings) -> Settings:
    """A database holding a month and a finished week-long experiment (and its Redis db)."""
    conn = sync_redis(redis_settings)
    experiment = finished_experiment(clickhouse_settings, conn)
    conn.close()
    assert experiment.state is State.FINISHED, experiment
    return clickhouse_settings.with_overrides(redis_url=redis_settings.redis_url, analytics_token=TOKEN)


@pytest.fixture
async def experiment_http(finished: Settings) -> AsyncIterator[TestClient]:
    """The real app over that database."""
    async for test_client in running_client(finished, token=TOKEN):
        yield test_client


async def test_a_finished_experiment_shows_its_verdict_days_and_intervals(
    experiment_http: TestClient, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    problems: list[str] = []
    query = f"from={RANGE[0]}&to={RANGE[1]}"
    data = await (await experiment_http.get(f"/v1/analytics/experiment?{query}")).json()
    report = data["report"]
    assert len({row["day"] for row in data["daily"]}) == DAYS
    async with browser_page(tmp_path, problems) as page:
        await page.goto(str(experiment_http.make_url(f"/dashboard?{query}")), timeout=BROWSER_TIMEOUT_MS)
        await page.wait_for_function(ASKING.format(text="enter the analytics token"), timeout=BROWSER_TIMEOUT_MS)
        await page.fill("#token-input", TOKEN)
        await page.click("#token button")
        await wait_ready(page, problems)
        title = await page.text_content("#experiment-title")
        verdict = await page.text_content("#experiment-verdict")
        reasons = await page.locator("#experiment-reasons li").all_text_contents()
        drawn = await chart_points(page, EXPERIMENT_CHARTS)
        rows = await page.locator("#table-experiment tr").count()
        section = page.locator("#experiment")
        await section.screenshot(path=str(tmp_path / "experiment.png"))
        if request.config.getoption("--update-screenshots"):
            await section.screenshot(path=str(DOCS_SCREENSHOT))

    assert [p for p in problems if not p.startswith("HTTP 401") and not re.search(REFUSAL_NOTE, p)] == [], problems
    assert title.startswith(f"{EXPERIMENT_ID} (finished): {CONTROL} (control) vs {CHALLENGER_VERSION} (challenger, 50%")
    assert verdict == report["verdict"]["text"] == "challenger wins"
    assert "decision: promote: challenger wins" in reasons and any(r.startswith("sample ratio: ") for r in reasons)
    assert drawn["chart-experiment-daily"]["points"] == 4 * DAYS  # 2 arms x (line + bars) per day
    assert drawn["chart-experiment-intervals"]["points"] > 2 * 6  # intervals and estimates of most metrics
    assert rows == 1 + 5 + len(report["differences"])
    assert (tmp_path / "experiment.png").stat().st_size > 10_000
