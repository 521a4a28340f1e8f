"""The safeguard benchmark runs end to end on a tiny budget and reports every documented key."""

import json

from experiments.bench import safe


def test_bench_safe_prints_all_ratio_keys(capsys, tmp_path):
    out = tmp_path / "safe.json"
    argv = ["--repeats", "1", "--steps", "2048", "--python-steps", "2000", "--out", str(out)]
    result = safe.main(argv)
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert set(printed["gridworld_safeguard_over_bare"]) == {"1", "64", "1024"}
    for key in ("cartpole_safeguard_over_bare", "multispec16_over_single", "speedup_vs_python"):
        assert printed[key] > 0 and result[key] > 0
    assert printed["steps_per_second"]["python_reference"] > 0


def test_random_benchmark_specs_are_sixteen_distinct_automata():
    specs = safe.random_specs(16)
    tables = {spec.delta.tobytes() for spec in specs}
    assert len(tables) == 16 and {s.num_states for s in specs} == {2, 3, 4, 5, 6}
