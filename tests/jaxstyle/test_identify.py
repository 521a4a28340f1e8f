"""The identify command: a saved model + PGN files → who most likely played each query."""

from __future__ import annotations

import shutil

import pytest

from jaxstyle import identify, model_io
from jaxstyle.chess import synthetic
from tests.jaxstyle.tiny_style import tiny_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("identify")
    config = synthetic.GeneratorConfig(
        num_players=3, games_per_player=8, chunk_games=6, max_plies=24, seed=4
    )
    synthetic.generate(root / "games", config, workers=1, progress=False)
    pgn = sorted((root / "games" / "pgn").glob("*.pgn"))
    (root / "ref").mkdir()
    (root / "query").mkdir()
    for path in pgn[:2]:
        shutil.copy(path, root / "ref")
    for path in pgn[2:]:
        shutil.copy(path, root / "query")
    model_io.save(tiny_model(num_players=3), None, root / "run" / "export")
    return root


def test_identify_prints_a_most_likely_player_for_every_query_player(setup, capsys):
    argv = ["--run", str(setup / "run"), "--reference", str(setup / "ref")]
    argv += ["--query", str(setup / "query"), "--min-games", "2", "--steps", "20"]
    assert identify.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    names = {f"synth_{i:04d}" for i in range(3)}
    assert len(out) == 3 and all("most likely" in line for line in out)
    assert {line.split(" ")[0] for line in out} == names
    assert all(any(f"likely {n} by" in line for n in names) for line in out)


def test_players_below_the_few_shot_size_are_reported_not_dropped(setup):
    reference = identify.read_players([str(setup / "ref")])
    query = identify.read_players([str(setup / "query")])
    counts = {n: p.games for n, p in query.items()}
    k = max(counts.values())
    assert min(counts.values()) < k  # the split leaves someone short
    result = identify.identify(tiny_model(num_players=3), reference, query, min_games=k, steps=10)
    assert result["skipped_query"] == {n: g for n, g in sorted(counts.items()) if g < k}
    reported = {m["query"] for m in result["matches"]} | set(result["skipped_query"])
    assert reported == set(query)
    text = identify.format_result({**result, "skipped_query": {"someone": 1}})
    assert "skipped 1 query player(s) with <" in text and "someone (1)" in text


def test_bad_input_ends_with_one_error_line(setup, tmp_path, capsys):
    ref, query = str(setup / "ref"), str(setup / "query")
    (tmp_path / "empty").mkdir()
    (tmp_path / "blank.pgn").write_text("\n")
    cases = {
        "missing run": (
            ["--run", str(tmp_path / "nope"), "--reference", ref, "--query", query],
            "run folder not found",
        ),
        "no model": (
            ["--run", str(tmp_path / "empty"), "--reference", ref, "--query", query],
            "no exported style model",
        ),
        "missing pgn": (
            ["--run", str(setup / "run"), "--reference", str(tmp_path / "x.pgn"), "--query", query],
            "not found",
        ),
        "no games": (
            [
                "--run",
                str(setup / "run"),
                "--reference",
                ref,
                "--query",
                str(tmp_path / "blank.pgn"),
            ],
            "no games found",
        ),
        "too few games": (
            [
                "--run",
                str(setup / "run"),
                "--reference",
                ref,
                "--query",
                query,
                "--min-games",
                "99",
            ],
            "few-shot size",
        ),
    }
    for name, (argv, message) in cases.items():
        code = identify.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (name, err)
