"""`cinerec simulate` / `cinerec import-movielens`: bad input is refused before any service is touched."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "--users", "0"], "Invalid value for '--users'"),
        (["simulate", "--days", "0"], "Invalid value for '--days'"),
        (["simulate", "--rate", "-1"], "Invalid value for '--rate'"),
        (["simulate", "--bad-fraction", "1.5"], "Invalid value for '--bad-fraction'"),
    ],
)
def test_simulate_refuses_bad_options(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output


def test_import_movielens_names_the_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["import-movielens", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path}/movies.csv not found" in result.output


def test_import_movielens_names_the_bad_line(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text("movieId,title,genres\nx,Heat (1995),Crime\n")
    result = CliRunner().invoke(main, ["import-movielens", str(tmp_path)])
    assert result.exit_code == 1
    assert "movies.csv:2: movieId must be a positive integer, got 'x'" in result.output
