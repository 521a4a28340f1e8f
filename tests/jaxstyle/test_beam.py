"""The Beam pipeline (DirectRunner, multi-processing) writes the local build's exact bytes.

apache-beam 2.77 cannot be installed beside the tested pins of constraints.txt, so it
lives in its own environment, ``.venv-beam`` (``make venv-beam``; ``make test`` builds it),
and the pipeline runs there as a subprocess. Without that environment the test fails and
says how to make it (it is never skipped).
"""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

import pytest

from jaxstyle.chess import build, replay
from jaxstyle.chess.pgn import GameFilter, iter_games

ROOT = Path(__file__).resolve().parents[2]
BEAM_PYTHON = ROOT / ".venv-beam" / "bin" / "python"


@pytest.mark.slow
def test_beam_direct_runner_multiprocessing_matches_the_local_build(real_data, tmp_path):
    assert BEAM_PYTHON.is_file(), "no .venv-beam: run `make venv-beam` (the [beam] extra)"
    games = [g for g in iter_games(real_data) if g.fen.startswith("rnbqkbnr/pppppppp/8/8/8/8/")]
    dump = replay.write_replayed_dump(tmp_path / "in.pgn.zst", games, 600, 30, seed=2, max_plies=8)
    local, beam = tmp_path / "local", tmp_path / "beam"
    options = build.BuildOptions(chunk_games=32, games_per_bucket=120, progress=False)
    build.build(local, dump, GameFilter(min_games_per_player=5), options=options)
    command = [str(BEAM_PYTHON), "-m", "jaxstyle.chess.beam", "--data-dir", str(beam)]
    command += ["--pgn", str(dump), "--filter", '{"min_games_per_player": 5}']
    command += ["--chunk-games", "32", "--games-per-bucket", "120", "--runner", "DirectRunner"]
    command += ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"]
    done = subprocess.run(
        command, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    names = sorted(os.listdir(build.version_dir(local)))
    assert sum("array_record" in n for n in names) > 3
    assert sorted(os.listdir(build.version_dir(beam))) == names
    for name in names:
        assert filecmp.cmp(build.version_dir(local) / name, build.version_dir(beam) / name, False)
