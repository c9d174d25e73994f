"""The MovieLens loader of bench/quality.py: the import's events, what it refuses and what it drops."""
import importlib.util
import sys
from pathlib import Path

import pytest

from app.schema import EVENT_TYPES

_SPEC = importlib.util.spec_from_file_location("bench_quality", Path(__file__).parents[2] / "bench" / "quality.py")
quality = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = quality  # dataclasses look their module up there
_SPEC.loader.exec_module(quality)

MOVIES = "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n2,Jumanji (1995),(no genres listed)\n"


def write(tmp_path: Path, ratings: str) -> Path:
    (tmp_path / "movies.csv").write_text(MOVIES)
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + ratings)
    return tmp_path


def test_loads_ratings_as_the_imports_events_and_drops_unknown_films(tmp_path):
    # the last line has no newline and a film movies.csv does not know (as in the shared copy)
    data = write(tmp_path, "1,1,4.5,964982703\n1,2,0.5,964982704\n999,999999,5.0,1493846415")
    interactions, films, dropped = quality.load_ml(data)
    assert dropped == 1
    assert interactions.film_id.tolist() == [1, 1, 1, 2, 2, 2]
    assert [EVENT_TYPES[c] for c in interactions.event_type] == ["play", "complete", "rate"] * 2
    assert interactions.rating.tolist() == [0, 0, 9.0, 0, 0, 1.0]
    assert films.genres == [["Animation", "Comedy"], []]


@pytest.mark.parametrize("line, problem", [("1,1,4.0", "4 fields"), ("1,x,4.0,964982703", "movieId"),
                                           ("1,1,7.0,964982703", "rating")])
def test_refuses_malformed_lines_with_their_line_number(tmp_path, line, problem):
    with pytest.raises(quality.DataError, match=f"ratings.csv:2: .*{problem}"):
        quality.load_ml(write(tmp_path, line + "\n"))


def test_missing_folder_names_the_option(tmp_path):
    with pytest.raises(quality.DataError, match="--data"):
        quality.load_ml(tmp_path / "nowhere")


def test_protocols_hold_out_each_users_last_fifth_and_the_newest_tenth(tmp_path):
    interactions, _, _ = quality.load_ml(write(tmp_path, "".join(
        f"{u},{1 + i % 2},4.0,{964982703 + 1000 * i + u}\n" for u in (1, 2) for i in range(10))))
    split = quality.protocols(interactions)
    train, test, rule = split["P1"]
    assert len(test) == 12 and len(train) == 48  # 2 users x 2 of their 10 ratings x 3 events
    assert rule == "per_user"  # the two-level ranker's labels are cut like the protocol
    train, test, rule = split["P2"]
    assert test.ts.min() >= train.ts.max() and 0.05 < len(test) / len(interactions) <= 0.15
    assert rule == "auto"
