"""Resumable, parallel generation of a synthetic dataset (PGN + ground truth).

Games are written as ordinary PGN (``White``/``Black`` names, pseudo-Elo from ``τ``,
``TimeControl``, ``Event "Rated Blitz game"``), so the Lichess reader ingests them
unchanged. Every game has its own seed, so output does not depend on the number of worker
processes, and generation resumes chunk by chunk: finished ``pgn/games-NNNNN.pgn`` files are
kept and skipped. The ground truth (θ_p, τ_p, archetype weights, Elo) is written to
``players.json`` beside the PGN before any game.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import tqdm

from jaxstyle.chess.play import game_pgn, play_game
from jaxstyle.chess.players import (
    GeneratorConfig,
    PlayerStyle,
    load_ground_truth,
    make_players,
    write_ground_truth,
)


def schedule_games(config: GeneratorConfig) -> np.ndarray:
    """``int32 [n_games, 2]`` (white, black) player indices: ``games_per_player`` rounds of a
    random perfect pairing with random colours (an odd player out gets a random opponent)."""
    rng = np.random.default_rng([config.seed, 1])
    pairs = []
    n = config.num_players
    for _ in range(config.games_per_player):
        order = rng.permutation(n)
        if n % 2:
            spare = int(order[-1])
            partner = int(rng.choice(order[:-1]))
            pairs.append((spare, partner))
            order = order[:-1]
        pairs.extend(zip(order[0::2].tolist(), order[1::2].tolist()))
    games = np.array(pairs, dtype=np.int32)
    swap = rng.random(len(games)) < 0.5
    games[swap] = games[swap][:, ::-1]
    return games


# ---------------------------------------------------------------------------------------
# Parallel, resumable generation.

_WORKER: dict = {}


def _init_worker(players: list[PlayerStyle], config: GeneratorConfig, schedule: np.ndarray):
    _WORKER.update(players=players, config=config, schedule=schedule)


def _chunk_path(pgn_dir: Path, chunk: int) -> Path:
    return pgn_dir / f"games-{chunk:05d}.pgn"


def _generate_chunk(args: tuple[str, int]) -> dict:
    pgn_dir, chunk = Path(args[0]), args[1]
    players, config, schedule = _WORKER["players"], _WORKER["config"], _WORKER["schedule"]
    start = time.perf_counter()
    cpu = time.process_time()
    first = chunk * config.chunk_games
    last = min(first + config.chunk_games, len(schedule))
    texts, plies = [], 0
    evaluator = config.make_evaluator()
    try:
        for g in range(first, last):
            white, black = (players[i] for i in schedule[g])
            rng = np.random.default_rng([config.seed, 2, g])
            played = play_game(white, black, rng, config, evaluator)
            plies += len(played.uci)
            texts.append(game_pgn(f"g{g:07d}", white, black, played, config.time_control))
    finally:
        if hasattr(evaluator, "close"):
            evaluator.close()
    path = _chunk_path(pgn_dir, chunk)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text("".join(texts), encoding="utf-8")
    os.replace(tmp, path)
    return {
        "chunk": chunk,
        "games": last - first,
        "plies": plies,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
    }


@dataclasses.dataclass
class GenerationReport:
    """Throughput of one :func:`generate` call (only chunks generated in this call count)."""

    out_dir: str
    games_total: int
    games_generated: int
    chunks_reused: int
    plies: int
    wall_seconds: float
    workers: int
    games_per_s: float
    games_per_s_per_core: float

    def line(self) -> str:
        if not self.games_generated:
            return (
                f"synthetic: all {self.games_total} games already in {self.out_dir} "
                f"({self.chunks_reused} chunks reused)"
            )
        return (
            f"synthetic: {self.games_generated} games generated, {self.chunks_reused} chunks "
            f"reused, {self.games_total} total in {self.out_dir}; {self.games_per_s:.1f} games/s "
            f"with {self.workers} workers ({self.games_per_s_per_core:.2f} games/s/core)"
        )


def generate(
    out_dir: str | os.PathLike,
    config: GeneratorConfig | None = None,
    workers: int | None = None,
    progress: bool = True,
    max_chunks: int | None = None,
) -> GenerationReport:
    """Generates (or completes) a synthetic dataset in ``out_dir``.

    Writes ``players.json`` (ground truth), ``pgn/games-NNNNN.pgn`` (``chunk_games`` games
    each) and ``generation.json`` (throughput). Chunks already on disk are kept, so an
    interrupted run continues where it stopped. ``max_chunks`` caps the chunks generated in
    this call (the rest is left for a later call). ``workers`` processes (default: CPU
    count) run chunks in parallel; ``workers=1`` runs in this process.
    """
    config = config or GeneratorConfig()
    out = Path(out_dir)
    pgn_dir = out / "pgn"
    pgn_dir.mkdir(parents=True, exist_ok=True)
    players = make_players(config)
    write_ground_truth(out, config, players)
    schedule = schedule_games(config)
    n_chunks = math.ceil(len(schedule) / config.chunk_games)
    pending = [c for c in range(n_chunks) if not _chunk_path(pgn_dir, c).exists()]
    reused = n_chunks - len(pending)
    if max_chunks is not None:
        pending = pending[:max_chunks]
    workers = max(1, min(workers or os.cpu_count() or 1, len(pending) or 1))
    for stale in pgn_dir.glob("*.tmp*"):
        stale.unlink()

    start = time.perf_counter()
    results = []
    tasks = [(str(pgn_dir), c) for c in pending]
    bar = tqdm.tqdm(total=len(tasks), unit="chunk", desc="synthetic games", disable=not progress)
    if workers == 1:
        _init_worker(players, config, schedule)
        iterator = map(_generate_chunk, tasks)
        pool = None
    else:
        context = multiprocessing.get_context("spawn")
        pool = context.Pool(workers, initializer=_init_worker, initargs=(players, config, schedule))
        iterator = pool.imap_unordered(_generate_chunk, tasks)
    try:
        for result in iterator:
            results.append(result)
            bar.update(1)
            elapsed = time.perf_counter() - start
            bar.set_postfix(games_per_s=f"{sum(r['games'] for r in results) / elapsed:.1f}")
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    wall = time.perf_counter() - start
    games = sum(r["games"] for r in results)
    busy = sum(r["seconds"] for r in results)
    report = GenerationReport(
        out_dir=str(out),
        games_total=len(schedule),
        games_generated=games,
        chunks_reused=reused,
        plies=sum(r["plies"] for r in results),
        wall_seconds=wall,
        workers=workers,
        games_per_s=games / wall if wall > 0 else 0.0,
        games_per_s_per_core=games / busy if busy > 0 else 0.0,
    )
    if games:
        (out / "generation.json").write_text(json.dumps(dataclasses.asdict(report), indent=1))
    return report


def is_complete(out_dir: str | os.PathLike) -> bool:
    """Whether every chunk of the dataset in ``out_dir`` exists."""
    config, _ = load_ground_truth(out_dir)
    n_chunks = math.ceil(len(schedule_games(config)) / config.chunk_games)
    return all(_chunk_path(Path(out_dir) / "pgn", c).exists() for c in range(n_chunks))
