"""The MoE benchmark runs end to end on tiny shapes and reports every key (no timing checks)."""

from experiments.bench import moe

TINY = dict(tokens=256, d_model=32, num_experts=4, top_k=2, d_expert=16)


def test_benchmark_reports_every_figure_on_tiny_shapes():
    result = moe.run(repeats=1, main=TINY, large=TINY, sharded=False)
    for key in (
        "moe_over_dense",
        "allexperts_over_moe",
        "capacity_over_dropless",
        "simbal_overhead",
        "gflops_fraction",
        "ragged_dot_over_dense",
    ):
        assert result[key] > 0, key
    assert result["sharded_over_single"] is None
    assert 1.0 <= result["rows_over_assignments"] < 2.0
    assert set(result["large"]) >= {"moe_over_dense", "capacity_over_dropless", "gflops_fraction"}


def test_sharded_figure_compares_expert_parallel_with_single_device():
    result = moe._sharded(TINY, repeats=1)  # the test process has 8 fake CPU devices
    assert result["sharded_s"] > 0 and result["single_s"] > 0 and result["ratio"] > 0
