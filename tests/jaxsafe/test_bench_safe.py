"""The safeguard benchmark runs end to end on a tiny budget and reports every documented key."""

import json

import pytest

from experiments.bench import safe

RATIOS = (
    "cartpole_safeguard_over_bare",
    "multispec16_over_single",
    "env_automaton_speedup_vs_python",
    "tabular_protocol_speedup_vs_authors",
    "tabular_protocol_speedup_vs_lean_python",
)


@pytest.mark.slow
def test_bench_safe_prints_every_ratio_with_its_spread(capsys, tmp_path):
    out = tmp_path / "safe.json"
    argv = ["--repeats", "1", "--steps", "2048", "--python-steps", "2000", "--out", str(out),
            "--protocol-episodes", "4", "--protocol-seeds", "2", "--protocol-max-steps", "50",
            "--python-episodes", "2", "--protocol-repeats", "1", "--ppo", "off"]  # fmt: skip
    safe.main(argv)
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert set(printed["gridworld_safeguard_over_bare"]) == {"1", "64", "1024"}
    for key in RATIOS:
        r = printed[key]
        assert 0 < r["min"] <= r["median"] <= r["max"], key
    assert "speedup_vs_python" not in printed  # renamed: it is env + automaton only
    assert printed["steps_per_second"]["tabular_protocol_python"]["median"] > 0
    default = printed["tabular_protocol_default_xla"]  # the same protocol without the option
    for key in RATIOS[-2:]:
        assert 0 < default[key]["min"] <= default[key]["max"], key
    assert printed["steps_per_second"]["tabular_protocol_jax_default_xla"]["median"] > 0
    assert {"tabular_protocol", "tabular_protocol_default_xla"} <= set(printed["compile_seconds"])


@pytest.mark.parametrize("lean", [False, True])
def test_authors_loop_runs_its_episodes_and_counts_steps(lean):
    steps = safe.authors_training_loop(3, max_steps=40, lean=lean)
    assert 3 <= steps <= 3 * 40


def test_random_benchmark_specs_are_sixteen_distinct_automata():
    specs = safe.random_specs(16)
    tables = {spec.delta.tobytes() for spec in specs}
    assert len(tables) == 16 and {s.num_states for s in specs} == {2, 3, 4, 5, 6}
