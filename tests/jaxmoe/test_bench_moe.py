"""The MoE benchmark runs end to end on tiny shapes and reports every key (no timing checks)."""

import sys

import pytest

from experiments.bench import moe

TINY = dict(tokens=256, d_model=32, num_experts=4, top_k=2, d_expert=16)
SPREAD = {"median", "min", "max"}


def test_benchmark_reports_every_figure_with_spread_on_tiny_shapes():
    result = moe.run(
        repeats=1,
        main=TINY,
        large=None,  # the large shape goes through the same code as the main one
        sharded=False,
        backends=moe.BACKENDS,
        diff_shape=TINY,
        lm=False,
        platform="tpu",  # the backend sets of a TPU (all three), run here on CPU
    )
    assert result["backend_sets_of"] == "tpu" and result["backend"] == "cpu"
    for key in ("moe_over_dense", "allexperts_over_moe", "capacity_over_dropless"):
        assert set(result[key]) == SPREAD and result[key]["min"] > 0, key
    assert set(result["ragged_dot_over_dense"]) == SPREAD
    assert result["simbal_overhead"] > 0 and result["gflops_fraction"] > 0
    assert result["sharded_over_single"] is None
    assert 1.0 <= result["rows_over_assignments"] < 2.0
    assert set(result["backends"]) == set(moe.BACKENDS)
    assert all(set(v["moe_over_dense"]) == SPREAD for v in result["backends"].values())
    assert set(result["backends_max_abs_diff"]) == {"ragged_dot", "megablox"}
    assert max(result["backends_max_abs_diff"].values()) < 1e-4  # same outputs and gradients
    assert "large" not in result and "lm_moe_over_dense" not in result


def test_sharded_figure_compares_expert_parallel_with_single_device():
    result = moe._sharded(TINY, repeats=1)  # the test process has 8 fake CPU devices
    assert result["sharded_s"] > 0 and result["single_s"] > 0
    assert set(result["ratio"]) == SPREAD


def test_lm_keys_are_skipped_only_when_the_lm_module_itself_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, moe.LM_MODULE, None)  # import now fails for that name
    assert moe._lm_results(quick=True) == {}


def test_default_backends_are_the_native_ones_per_platform():
    assert moe.default_backends("cpu") == ("tiled",)
    assert moe.default_backends("gpu") == ("tiled", "ragged_dot")
    assert moe.default_backends("tpu") == moe.BACKENDS


def test_unknown_backend_flag_is_a_usage_error():
    with pytest.raises(SystemExit):
        moe.main(["--backends", "tiled,cublas", "--out", ""])


def test_layer_only_run_reports_the_layer_keys_and_nothing_else():
    result = moe.run(repeats=1, main=TINY, large=None, layer_only=True)
    for key in ("moe_over_dense", "allexperts_over_moe", "capacity_over_dropless"):
        assert set(result[key]) == SPREAD, key
    for key in ("backends", "ragged_dot_over_dense", "backends_max_abs_diff", "lm_moe_over_dense"):
        assert key not in result, key
    assert result["sharded_over_single"] is None


def test_platform_flag_picks_that_platforms_backend_sets():
    assert moe.diff_backends("gpu") == ("tiled", "ragged_dot")  # megablox only interprets there
    assert moe.diff_backends("cpu") == moe.diff_backends("tpu") == moe.BACKENDS
    with pytest.raises(SystemExit):  # an unknown platform is a usage error
        moe.main(["--platform", "vax", "--out", ""])
