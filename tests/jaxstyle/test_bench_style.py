"""The chess data benchmark runs end to end on a tiny workload and reports its keys."""

from __future__ import annotations

import pytest

from experiments.bench import style, style_data

SPREAD = {"median", "min", "max"}


@pytest.mark.slow
def test_data_benchmark_reports_every_key_with_spread():
    result = style_data.run(
        games=8,
        repeats=1,
        players=4,
        scale_games=400,
        build_games=60,
        rss_games=20,
        ratio_games=20,
        max_plies=10,
    )
    for key in (
        "encode_positions_per_s",
        "synthetic_games_per_s_per_core",
        "array_record_positions_per_s",
        "balanced_batch_positions_per_s",
        "header_pass_games_per_s",
        "build_positions_per_s_1proc",
        "build_speedup_2proc",
        "parse_encode_over_plain_parse",
    ):
        assert set(result[key]) == SPREAD and result[key]["min"] > 0, key
    assert result["build_2proc_identical_output"] is True
    assert result["build_peak_rss_mb_10x"] > 0 and result["build_peak_rss_mb_1x"] > 0
    assert set(result["estimated_hours_lichess_month"]) == {"2_cores", "64_cores"}
    hours = result["estimated_hours_lichess_month"]
    assert hours["64_cores"] <= hours["2_cores"]


def test_style_benchmark_merges_data_and_model_keys(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("experiments.bench.style_model")
    fake.run = lambda **sizes: {"model_key": sizes}
    monkeypatch.setitem(sys.modules, "experiments.bench.style_model", fake)
    monkeypatch.setattr(style_data, "run", lambda **sizes: {"data_key": sizes})
    merged = style.run({"games": 2}, {"players": 3})
    assert merged == {"data_key": {"games": 2}, "model_key": {"players": 3}}


def test_style_benchmark_says_when_the_model_half_is_missing(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(style.importlib, "import_module", missing)
    assert "not written yet" in style._model_keys()["model"]


def test_style_benchmark_only_runs_the_requested_half(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("experiments.bench.style_model")
    fake.run = lambda **sizes: {"model_key": 1}
    monkeypatch.setitem(sys.modules, "experiments.bench.style_model", fake)
    monkeypatch.setattr(style_data, "run", lambda **sizes: {"data_key": 2})
    assert style.run(only="model") == {"model_key": 1}
    assert style.run(only="data") == {"data_key": 2}
    emitted = []
    monkeypatch.setattr(style, "emit", lambda result, out: emitted.append(result))
    assert style.main(["--only", "model", "--out", ""]) == 0
    assert emitted == [{"model_key": 1}]
