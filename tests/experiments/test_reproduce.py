"""``make reproduce`` tells the truth: non-zero exit naming failed / missing systems, REPORT.md."""

import json
import subprocess
import sys
from pathlib import Path

from experiments import reproduce

REPO = Path(__file__).resolve().parents[2]
FAKES = "tests.experiments.fake_systems"  # moe works, style raises, safe is missing


def test_reproduce_exits_nonzero_and_names_failed_and_missing_systems(tmp_path):
    cmd = [sys.executable, "-m", "experiments.reproduce", "--package", FAKES]
    proc = subprocess.run(
        [*cmd, "--workdir", str(tmp_path)], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["NOT reproduced: style (failed), safe (not built)"]
    assert "reproduced 1 of 3 systems" in proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [summary[s]["status"] for s in ("moe", "style", "safe")] == [
        "done",
        "failed",
        "not built",
    ]
    assert summary["moe"]["full"] is False
    assert summary["style"]["error"] == "RuntimeError: style model diverged (fake failure)"
    assert "style model diverged" in (tmp_path / "style" / "traceback.txt").read_text()
    assert (
        summary["safe"]["error"]
        == "tests/experiments/fake_systems/reproduce_safe.py does not exist"
    )
    report = (tmp_path / "REPORT.md").read_text()
    assert "SimBal reached the LBL loss 1.5x sooner (fake)" in report
    assert "| simbal | 10 |" in report
    assert "![comparison](moe/plots/comparison.png)" in report
    assert (tmp_path / "moe" / "plots" / "comparison.png").exists()


def test_only_and_full_select_systems_and_mode(tmp_path):
    argv = ["--package", FAKES, "--workdir", str(tmp_path), "--only", "moe", "--full"]
    assert reproduce.main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary) == ["moe"]
    assert summary["moe"]["full"] is True
    assert "Mode: full CPU-sized comparisons" in (tmp_path / "REPORT.md").read_text()


def test_make_reproduce_full_passes_full_flag():
    def command(*args):
        out = subprocess.run(
            ["make", "-n", "reproduce", *args], cwd=REPO, capture_output=True, text=True
        ).stdout
        return [line for line in out.splitlines() if "experiments.reproduce" in line][-1].split()

    assert command("FULL=1")[-2:] == ["experiments.reproduce", "--full"]
    assert command()[-1] == "experiments.reproduce"
