"""``make train-safe`` on the tiny config: one JSON line per run, resumable per stage."""

import json

import pytest

from experiments.configs.safe import get_config
from experiments.runner import RunError
from experiments.trainers import safe


@pytest.mark.slow
def test_train_safe_prints_one_json_line_and_resumes_from_its_stages(tmp_path, capsys):
    config = get_config("tiny")
    config.modes = "faithful"  # the corrected mode runs the same code path (test_qlearning.py)
    first = safe.train(config, tmp_path)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(line) == first
    for mode in ("faithful",):
        summary = first[mode]
        assert summary["seeds"] == 2
        for key in safe.SUMMARY_KEYS:
            assert key in summary and f"{key}_std" in summary
        assert summary["test_success_pct"] + summary["test_violation_pct"] == pytest.approx(100)
        records = (tmp_path / mode / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["step"] for r in records] == [1, 2, 3, 4]  # one per stage
    again = safe.train(config, tmp_path)  # every stage checkpointed: restored, not retrained
    assert again == first


def test_unknown_modes_are_a_one_line_error():
    config = get_config("tiny")
    config.modes = "faithful,greedy"
    with pytest.raises(RunError, match="unknown"):
        safe.modes_of(config)
    with pytest.raises(ValueError, match="unknown variant"):
        get_config("huge")
