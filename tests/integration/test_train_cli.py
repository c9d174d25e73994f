"""`cinerec train`, `cinerec models`, `cinerec rollback` against real ClickHouse and Redis (app/cli/train.py)."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from app.cli import main
from app.recsys.training import pipeline, publish
from app.settings import Settings, get_settings
from app.storage.locks import retrain_lock
from app.storage.redis_client import connect

pytestmark = pytest.mark.redis_db(10)


@pytest.fixture
def settings(seeded_process_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TUNE_TRIALS", "4")  # quick; the tuning itself: tests/integration/test_retrain_tuning.py
    get_settings.cache_clear()
    return get_settings()


def _current(settings: Settings) -> str | None:
    conn = connect(settings)
    try:
        return publish.current_version(conn)
    finally:
        conn.close()


def test_train_prints_metrics_and_the_decision_then_models_lists_the_run(settings: Settings) -> None:
    runner = CliRunner()
    trained = runner.invoke(main, ["train", "--no-tune"])
    assert trained.exit_code == 0, trained.output
    version = _current(settings)
    # which candidate shipped and why (the two-level model only when it beat ALS), then the gate's verdict
    assert re.search(rf"^{version}: PUBLISHED: .*(als|two-level).*; (ALS|TWO-LEVEL) vs Popular: NDCG \+",
                     trained.output, re.MULTILINE), trained.output
    assert "ndcg@10" in trained.output and re.search(r"metric +als +two-level +popular\n", trained.output)
    assert re.search(r"^users +\d+ +\d+ +\d+ *$", trained.output, re.MULTILINE), trained.output  # counts, no decimals
    # 200 users, fewer than GATE_MIN_USERS (500): the share of events decides the holdout
    assert re.search(r"^holdout: \d+ users, 2\d\.\d% of the events \(decided by max_share\)$", trained.output,
                     re.MULTILINE), trained.output
    interval = r"\+0\.\d{4} \[\+0\.\d{4}, \+0\.\d{4}\]"
    any_interval = r"[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]"
    assert re.search(rf"^shipped: (als|two-level) \(two-level vs best single {any_interval}\); gate: pass; "
                     rf"NDCG@10 difference \[95% interval\] vs popular {interval}, vs served -$",
                     trained.output, re.MULTILINE), trained.output

    # untuned again: the served model's spec is the challenger's, a zero difference
    again = runner.invoke(main, ["train", "--no-tune"])
    assert again.exit_code == 0 and "vs served +0.0000 [+0.0000, +0.0000]" in again.output, again.output
    latest = _current(settings)

    listed = runner.invoke(main, ["models"])
    assert listed.exit_code == 0, listed.output
    shipped = rf"published +(als|two-level) +{any_interval} +pass"
    assert re.search(rf"^\*  {latest} .* {shipped} .* {interval} +\+0\.0000 \[\+0\.0000, \+0\.0000\] +"
                     r"\d+ \(max_share\)", listed.output, re.MULTILINE), listed.output
    assert re.search(rf"^r  {version} .* {shipped} .* {interval} +- +\d+ \(max_share\)", listed.output,
                     re.MULTILINE), listed.output
    assert f"served: {latest}" in listed.output


def test_train_tunes_by_default_and_prints_the_search_and_the_first_level(settings: Settings) -> None:
    trained = CliRunner().invoke(main, ["train"])
    assert trained.exit_code == 0, trained.output
    assert re.search(r"^tuned in \d+\.\ds on 200 of 200 users \(4 trials, stopped by trials, started from defaults\): "
                     r"ALS validation NDCG@10 0\.\d{4} with \{.*\}; EASE lambda \d+$", trained.output, re.MULTILINE), \
        trained.output
    for model in ("als", "popular", "trending", "ease", "item_knn", "fm"):
        assert re.search(rf"^{model} +[01]\.\d{{4}} +0\.\d{{4}} *$", trained.output, re.MULTILINE), trained.output
    listed = CliRunner().invoke(main, ["models"])
    assert re.search(r"published +\S+ +\S+ \[\S+, \S+\] +pass +0\.\d{4} +0\.\d{4} +0\.\d{4} ", listed.output), \
        listed.output  # shipped, two-level vs single, gate, ndcg, popular, tuned (val)


def test_rollback_command(settings: Settings) -> None:
    first_run = pipeline.retrain(settings)
    first = first_run.version
    assert first_run.published, first_run.reason
    second = pipeline.retrain(settings, pipeline.RetrainConfig(force=True)).version
    runner = CliRunner()

    result = runner.invoke(main, ["rollback", first])
    assert result.exit_code == 0, result.output
    assert _current(settings) == first

    unknown = runner.invoke(main, ["rollback", "20200101T000000Z-abcdef"])
    assert unknown.exit_code != 0 and "never published" in unknown.output
    assert _current(settings) == first
    assert second != first


def test_train_refuses_while_another_run_holds_the_lock(settings: Settings) -> None:
    with retrain_lock(settings) as held:
        assert held
        result = CliRunner().invoke(main, ["train"])
    assert result.exit_code != 0
    assert "lock:retrain" in result.output
    assert _current(settings) is None


def test_train_rejects_a_holdout_longer_than_the_window(settings: Settings) -> None:
    result = CliRunner().invoke(main, ["train", "--window-days", "5", "--holdout-days", "7"])
    assert result.exit_code != 0 and "holdout_days" in result.output
