"""End-to-end scale build of the chess data (issue 13's "done when"), one JSON object out.

Exact command (6.5 minutes with the defaults on the shared, loaded 2-core machine)::

    nice python -m experiments.bench.chess_scale --workdir runs/chess_scale

What it does, offline (progress on stderr):

1. Writes two Lichess-style dumps with :func:`jaxstyle.chess.replay.write_replayed_dump`:
   real shipped games replayed under ``--pool`` player names (Zipf activity) and random
   dates — ``--games`` games (10×) and ``--games // 10`` (1×).
2. Builds both with ``--workers`` worker processes, each build in a child process so its
   peak RSS (main process and the largest worker) is its own. The header pass reads every
   game of the dump; the encode pass keeps the games of an allow-list of ``--select``
   players (ranks ``--select-from`` … of the activity law, ~260 games each at 10×), so
   it stays a size that finishes on 2 cores. Flat memory: RSS at 10× / RSS at 1×.
3. Builds the 10× dump again, SIGKILLs the build's process group once stage A has
   checkpointed past ``--kill-at`` of its chunks, builds again (resume) and compares every
   output file with the uninterrupted build.
4. Runs the same build under Apache Beam's DirectRunner (multi-processing, ``--workers``
   processes) from ``.venv-beam`` and compares every output file.

Keys: ``games_in_input`` (10×), ``games_in_input_1x``, ``players_in_pool``,
``players_selected`` (allow-list), ``players_in_dataset``, ``games_encoded``,
``positions_written``, ``build_wall_s`` (10×), ``header_pass_s``, ``peak_rss_mb_1x`` /
``peak_rss_mb_10x`` (``{"main", "worker"}``), ``rss_ratio_10x_over_1x`` (main process,
where the per-input state would live; workers hold one chunk), ``main_cpu_share`` (main
process CPU / all CPU of the 10× build, header pass included), ``main_cpu_share_stage_a``
(main CPU in stage A / (that + all worker CPU, stages A and B): what the main process adds
to the parallel part), ``main_cpu_s_by_phase``, ``resume_identical``, ``killed_at_chunk``,
``beam_identical``, ``beam_wall_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from experiments.bench import timing

ROOT = Path(__file__).resolve().parents[2]
BEAM_PYTHON = ROOT / ".venv-beam" / "bin" / "python"

_CHILD = """
import json, resource, sys, time
from jaxstyle.chess import build
from jaxstyle.chess.pgn_filters import GameFilter
phases = {}
def timed(name):
    inner = getattr(build, name)
    def wrapper(*args, **kwargs):
        cpu = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            phases[name] = phases.get(name, 0.0) + time.process_time() - cpu
    setattr(build, name, wrapper)
for name in ("_load_or_make_plan", "run_stage_a", "run_stage_b", "finalize"):
    timed(name)
if __name__ == "__main__":
    out, dump, filt, workers, per_bucket = sys.argv[1:6]
    start = time.perf_counter()
    build.build(out, dump, GameFilter.from_dict(json.loads(filt)),
                options=build.BuildOptions(workers=int(workers), progress=False,
                                           games_per_bucket=int(per_bucket)))
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"wall_s": time.perf_counter() - start,
                      "main_rss_kb": me.ru_maxrss, "worker_rss_kb": kids.ru_maxrss,
                      "main_cpu_s": me.ru_utime + me.ru_stime, "main_cpu_by_phase": phases,
                      "worker_cpu_s": kids.ru_utime + kids.ru_stime}))
"""


def _real_games():
    from jaxstyle.chess.pgn import iter_games

    data = ROOT / "tests" / "jaxstyle" / "data"
    return [g for g in iter_games(data) if g.fen.startswith("rnbqkbnr/pppppppp/8/8/8/8/")]


def _child_command(out: Path, dump: Path, filt: dict, args) -> list[str]:
    per_bucket = str(args.games_per_bucket)
    return [sys.executable, "-c", _CHILD, str(out), str(dump), json.dumps(filt)] + [
        str(args.workers),
        per_bucket,
    ]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _build(out: Path, dump: Path, filt: dict, args) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run(
        _child_command(out, dump, filt, args), capture_output=True, text=True, env=_env()
    )
    if done.returncode:
        raise RuntimeError(f"build of {dump.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _same_dataset(a: Path, b: Path) -> bool:
    from jaxstyle.chess import build

    a, b = build.version_dir(a), build.version_dir(b)
    names = sorted(os.listdir(a))
    return names == sorted(os.listdir(b)) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


def _killed_and_resumed(out: Path, dump: Path, filt: dict, args) -> int:
    """Starts a build, SIGKILLs its process group mid stage A, resumes; the killed chunk."""
    from jaxstyle.chess.build import WORK_NAME

    shutil.rmtree(out, ignore_errors=True)
    progress = out / WORK_NAME / "progress.json"
    child = subprocess.Popen(
        _child_command(out, dump, filt, args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        start_new_session=True,  # its own process group: the workers die with it
    )
    killed_at = -1
    try:
        while child.poll() is None:
            if progress.is_file():
                state = json.loads(progress.read_text() or "{}")
                if state.get("next_chunk", 0) >= args.kill_at_chunk:
                    os.killpg(child.pid, signal.SIGKILL)
                    killed_at = state["next_chunk"]
                    break
            time.sleep(0.2)
    finally:
        child.wait()
    if killed_at < 0:
        raise RuntimeError("the build finished before it could be killed: lower --kill-at")
    timing.progress(f"killed after chunk {killed_at}; resuming")
    resumed = subprocess.run(
        _child_command(out, dump, filt, args), capture_output=True, text=True, env=_env()
    )
    if resumed.returncode:
        raise RuntimeError(f"resumed build failed:\n{resumed.stderr[-3000:]}")
    return killed_at


def _beam(out: Path, dump: Path, filt: dict, args) -> float:
    if not BEAM_PYTHON.is_file():
        raise RuntimeError("no .venv-beam: run `make venv-beam` (the [beam] extra)")
    shutil.rmtree(out, ignore_errors=True)
    command = [str(BEAM_PYTHON), "-m", "jaxstyle.chess.beam", "--data-dir", str(out)]
    command += ["--pgn", str(dump), "--filter", json.dumps(filt)]
    command += ["--games-per-bucket", str(args.games_per_bucket), "--runner", "DirectRunner"]
    command += ["--direct_running_mode", "multi_processing"]
    command += ["--direct_num_workers", str(args.workers)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=_env())
    if done.returncode:
        raise RuntimeError(f"Beam build failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def run(args) -> dict:
    from jaxstyle.chess import build, replay

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    games = _real_games()
    dumps = {}
    for factor, n in ((1, args.games // 10), (10, args.games)):
        timing.progress(f"writing the {factor}x dump: {n} replayed games, {args.pool} players")
        dumps[factor] = replay.write_replayed_dump(
            work / f"scale-{factor}x.pgn.zst", games, n, args.pool, seed=13
        )
    selected = [f"player{i:06d}" for i in range(args.select_from, args.select_from + args.select)]
    filt = {"min_games_per_player": args.min_games, "players": selected}
    result = {
        "games_in_input": args.games,
        "games_in_input_1x": args.games // 10,
        "dump_mb": round(dumps[10].stat().st_size / 2**20, 1),
        "players_in_pool": args.pool,
        "players_selected": len(selected),
        "selection": f"allow-list: ranks {args.select_from}.. of the pool",
        "min_games_per_player": args.min_games,
        "workers": args.workers,
    }
    rss = {}
    for factor in (1, 10):
        timing.progress(f"building the {factor}x dump ({args.workers} workers)")
        rss[factor] = _build(work / f"out-{factor}x", dumps[factor], filt, args)
    reference = work / "out-10x"
    meta = json.loads((build.version_dir(reference) / "metadata.json").read_text())
    for factor in (1, 10):
        result[f"peak_rss_mb_{factor}x"] = {
            "main": round(rss[factor]["main_rss_kb"] / 1024, 1),
            "worker": round(rss[factor]["worker_rss_kb"] / 1024, 1),
        }
    result["rss_ratio_10x_over_1x"] = {
        part: round(result["peak_rss_mb_10x"][part] / result["peak_rss_mb_1x"][part], 3)
        for part in ("main", "worker")
    }
    result["buckets_1x_10x"] = [
        len(list(build.version_dir(work / f"out-{f}x").glob("*-train.array_record-*")))
        for f in (1, 10)
    ]
    ten = rss[10]
    result.update(
        players_in_dataset=len(meta["players"]),
        games_encoded=meta["num_games"],
        positions_written=sum(meta["positions"].values()),
        build_wall_s=round(ten["wall_s"], 1),
        main_cpu_share=round(ten["main_cpu_s"] / (ten["main_cpu_s"] + ten["worker_cpu_s"]), 4),
        build_cpu_s={"main": round(ten["main_cpu_s"], 1), "workers": round(ten["worker_cpu_s"], 1)},
        main_cpu_s_by_phase={
            k.strip("_"): round(v, 2) for k, v in ten["main_cpu_by_phase"].items()
        },
        main_cpu_share_stage_a=round(
            ten["main_cpu_by_phase"]["run_stage_a"]
            / (ten["main_cpu_by_phase"]["run_stage_a"] + ten["worker_cpu_s"]),
            4,
        ),
        read_summary=meta["read_summary"],
    )
    if not args.skip_resume:
        timing.progress("SIGKILL mid-build and resume")
        resumed = work / "out-resumed"
        result["killed_at_chunk"] = _killed_and_resumed(resumed, dumps[10], filt, args)
        result["resume_identical"] = _same_dataset(reference, resumed)
    if not args.skip_beam:
        timing.progress("the same build under Beam's DirectRunner")
        result["beam_wall_s"] = round(_beam(work / "out-beam", dumps[10], filt, args), 1)
        result["beam_identical"] = _same_dataset(reference, work / "out-beam")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/chess_scale")
    parser.add_argument("--games", type=int, default=300_000, help="games of the 10x dump")
    parser.add_argument("--pool", type=int, default=20_000, help="player names in the dump")
    parser.add_argument("--select", type=int, default=40, help="players in the allow-list")
    parser.add_argument("--select-from", type=int, default=200, help="first selected rank")
    parser.add_argument("--min-games", type=int, default=10, help="min games per player")
    parser.add_argument("--workers", type=int, default=2)
    # small enough that the 1x build has several buckets too (stage B in the workers)
    parser.add_argument("--games-per-bucket", type=int, default=400)
    parser.add_argument("--kill-at-chunk", type=int, default=600, help="of 1500 at 300k games")
    parser.add_argument("--skip-resume", action="store_true", help="no SIGKILL/resume step")
    parser.add_argument("--skip-beam", action="store_true", help="no Beam step")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
