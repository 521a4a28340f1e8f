"""The chess pipeline benchmark runs end to end on a tiny workload and reports its keys."""

from __future__ import annotations

from experiments.bench import style


def test_benchmark_reports_the_three_throughputs():
    result = style.run(games=8, repeats=1, players=4)
    for key in (
        "encode_positions_per_s",
        "synthetic_games_per_s_per_core",
        "array_record_positions_per_s",
    ):
        assert result[key] > 0, key
    assert result["positions_encoded"] >= result["train_records"] > 0
