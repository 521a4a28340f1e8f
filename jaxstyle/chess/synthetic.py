"""Synthetic chess players with a known style, and a resumable parallel game generator.

Player ``p`` picks a move ``m`` in position ``x`` with probability

    P(m | x, p) ∝ exp(−Δ(x, m) / τ_p + θ_p · φ(x, m))

* ``Δ`` — loss against the best move in pawns (:mod:`jaxstyle.chess.evaluator`);
* ``τ_p`` — skill temperature in pawns (larger = weaker), log-uniform in ``tau_range``;
* ``φ`` — readable 0/1 style features (:mod:`jaxstyle.chess.style_features`), including a
  ``book`` feature that marks the player's own deterministic opening repertoire move;
* ``θ_p = Σ_k w_pk θ_k + ε`` — a mixture of ``K`` archetypes with ``w_p ~ Dirichlet(α)``
  and Gaussian noise ``ε``: the skill-routing shape that MHR style vectors assume.

Games are written as ordinary PGN (``White``/``Black`` names, pseudo-Elo from ``τ``,
``TimeControl``, ``Event "Rated Blitz game"``), so the Lichess reader ingests them
unchanged. Every game has its own seed, so output does not depend on the number of worker
processes, and generation resumes chunk by chunk: finished ``pgn/games-NNNNN.pgn`` files are
kept and skipped. The ground truth (θ_p, τ_p, archetype weights, Elo) is written to
``players.json`` beside the PGN before any game.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import time
from collections.abc import Sequence
from pathlib import Path

import chess
import numpy as np
import tqdm

from jaxstyle.chess.evaluator import (
    PIECE_VALUES,
    FastEvaluator,
    MoveTable,
    StockfishEvaluator,
    analyse_moves,
)
from jaxstyle.chess.pgn import time_control_class
from jaxstyle.chess.sources import DataError
from jaxstyle.chess.style_features import FEATURES, move_features, theta_from_dict

ARCHETYPES: dict[str, dict[str, float]] = {
    "attacker": {"capture": 1.5, "check": 1.5, "pawn_storm": 1.0, "queen_trade": -1.0},
    "trader": {"queen_trade": 2.0, "capture": 1.0, "bishop_for_knight": 1.0},
    "fortress": {"castle_early": 2.5, "retreat": 0.8, "capture": -1.0, "king_move": -1.0},
    "king_walker": {"king_move": 2.0, "castle_early": -2.0, "castle_late": -1.0},
    "pawn_roller": {"pawn_push": 1.5, "pawn_storm": 1.0, "queen_move": -1.0},
    "knight_lover": {"knight_move": 2.0, "bishop_for_knight": 1.5, "bishop_move": -1.0},
    "queen_hunter": {"queen_move": 2.0, "check": 1.0, "queen_trade": -2.0},
    "bookworm": {"book": 3.0, "castle_late": 1.5, "advance": -0.8},
}
"""Default archetypes θ_k (K = 8), as ``{name: {feature: weight}}``."""


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Everything that determines a synthetic dataset (saved in ``players.json``).

    Attributes:
      num_players: number of players; every game is between two of them.
      games_per_player: games each player plays (one more for one player if odd count).
      seed: master seed.
      dirichlet_alpha: concentration of the archetype weights ``w_p``.
      theta_noise: standard deviation of ``ε`` added to ``θ_p``.
      tau_range: (strongest, weakest) skill temperature in pawns, sampled log-uniformly.
      max_plies: games still running at this many half-moves are adjudicated on material.
      opening_plies: the ``book`` feature is active for the first this-many half-moves.
      book_tolerance: repertoire moves are drawn from moves with Δ at most this (pawns).
      chunk_games: games per PGN file (the unit of parallelism and of resuming).
      time_control: ``TimeControl`` header written to every game.
      archetypes: ``{name: {feature: weight}}``; defaults to :data:`ARCHETYPES`.
      evaluator: ``"fast"`` (built-in) or ``"uci"`` (Stockfish or another UCI engine).
      engine_command: argv of the UCI engine; empty = ``stockfish`` on PATH.
      engine_depth: search depth of the UCI engine.
    """

    num_players: int = 400
    games_per_player: int = 100
    seed: int = 0
    dirichlet_alpha: float = 0.3
    theta_noise: float = 0.25
    tau_range: tuple[float, float] = (0.05, 1.0)
    max_plies: int = 160
    opening_plies: int = 12
    book_tolerance: float = 0.3
    chunk_games: int = 100
    time_control: str = "300+0"
    archetypes: dict[str, dict[str, float]] = dataclasses.field(
        default_factory=lambda: dict(ARCHETYPES)
    )
    evaluator: str = "fast"
    engine_command: tuple[str, ...] = ()
    engine_depth: int = 4

    def __post_init__(self):
        if self.evaluator not in ("fast", "uci"):
            raise ValueError(f"evaluator must be 'fast' or 'uci', got {self.evaluator!r}")
        if self.num_players < 2:
            raise ValueError("a synthetic dataset needs at least 2 players")
        if self.games_per_player < 1 or self.chunk_games < 1:
            raise ValueError("games_per_player and chunk_games must be positive")

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["tau_range"] = list(self.tau_range)
        data["engine_command"] = list(self.engine_command)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        data = dict(data)
        data["tau_range"] = tuple(data["tau_range"])
        data["engine_command"] = tuple(data.get("engine_command", ()))
        return cls(**data)

    def make_evaluator(self):
        """A fresh evaluator as configured (a UCI engine process for ``"uci"``)."""
        if self.evaluator == "uci":
            return StockfishEvaluator(list(self.engine_command) or None, depth=self.engine_depth)
        return FastEvaluator()


@dataclasses.dataclass(frozen=True)
class PlayerStyle:
    """Ground truth of one synthetic player.

    Attributes:
      name: PGN name, e.g. ``synth_0007``.
      theta: style weights ``float [NUM_FEATURES]`` in :data:`FEATURES` order.
      tau: skill temperature (pawns).
      weights: archetype mixture weights ``float [K]`` (sum to 1).
      elo: pseudo-Elo written to PGN (decreasing in ``tau``).
      repertoire_seed: seed of the deterministic opening repertoire.
    """

    name: str
    theta: tuple[float, ...]
    tau: float
    weights: tuple[float, ...]
    elo: int
    repertoire_seed: int

    def as_dict(self, archetype_names: Sequence[str]) -> dict:
        return {
            "name": self.name,
            "elo": self.elo,
            "tau": self.tau,
            "theta": dict(zip(FEATURES, self.theta)),
            "archetype_weights": dict(zip(archetype_names, self.weights)),
            "repertoire_seed": self.repertoire_seed,
        }

    @classmethod
    def from_dict(cls, data: dict, archetype_names: Sequence[str]) -> PlayerStyle:
        return cls(
            name=data["name"],
            theta=tuple(float(data["theta"].get(f, 0.0)) for f in FEATURES),
            tau=float(data["tau"]),
            weights=tuple(float(data["archetype_weights"][a]) for a in archetype_names),
            elo=int(data["elo"]),
            repertoire_seed=int(data["repertoire_seed"]),
        )


def elo_from_tau(tau: float, tau_range: tuple[float, float]) -> float:
    """Pseudo-Elo: 2400 at the strongest ``tau``, 1000 at the weakest, log-linear between."""
    lo, hi = math.log(tau_range[0]), math.log(tau_range[1])
    frac = (math.log(tau) - lo) / (hi - lo) if hi > lo else 0.0
    return 2400.0 - 1400.0 * frac


def make_players(config: GeneratorConfig) -> list[PlayerStyle]:
    """Draws the players' ground truth deterministically from ``config.seed``."""
    rng = np.random.default_rng([config.seed, 0])
    basis = np.stack([theta_from_dict(w) for w in config.archetypes.values()])  # [K, F]
    k = len(basis)
    players = []
    for i in range(config.num_players):
        weights = rng.dirichlet(np.full(k, config.dirichlet_alpha))
        theta = weights @ basis + rng.normal(0.0, config.theta_noise, size=basis.shape[1])
        lo, hi = config.tau_range
        tau = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        elo = int(round(elo_from_tau(tau, config.tau_range) + rng.normal(0.0, 50.0)))
        players.append(
            PlayerStyle(
                name=f"synth_{i:04d}",
                theta=tuple(float(x) for x in theta),
                tau=tau,
                weights=tuple(float(x) for x in weights),
                elo=elo,
                repertoire_seed=int(rng.integers(2**31)),
            )
        )
    return players


def repertoire_move(
    player: PlayerStyle, table: MoveTable, deltas: np.ndarray, tolerance: float
) -> chess.Move | None:
    """The player's own opening choice in this position: among moves with Δ ≤ ``tolerance``,
    the one with the smallest hash of (repertoire seed, position, move). Deterministic."""
    if not len(table):
        return None
    fen = table.board.fen()
    best, best_hash = None, None
    for move, delta in zip(table.moves, deltas):
        if delta > tolerance:
            continue
        digest = hashlib.blake2b(
            f"{player.repertoire_seed}|{fen}|{move.uci()}".encode(), digest_size=8
        ).digest()
        if best_hash is None or digest < best_hash:
            best, best_hash = move, digest
    return best


def move_logits(
    player: PlayerStyle, table: MoveTable, deltas: np.ndarray, phi: np.ndarray
) -> np.ndarray:
    """``float32 [n]``: −Δ/τ_p + θ_p·φ, the unnormalised log-probabilities of the legal moves."""
    return -deltas / player.tau + phi @ np.asarray(player.theta, dtype=np.float32)


@dataclasses.dataclass
class PlayedGame:
    """A finished game: SAN and UCI moves, result (``1-0`` …) and how it ended."""

    san: list[str]
    uci: list[str]
    result: str
    termination: str


def _material(board: chess.Board, color: chess.Color) -> float:
    return float(
        sum(PIECE_VALUES[pt] * chess.popcount(board.pieces_mask(pt, color)) for pt in range(1, 6))
    )


def play_game(
    white: PlayerStyle,
    black: PlayerStyle,
    rng: np.random.Generator,
    config: GeneratorConfig,
    evaluator=None,
) -> PlayedGame:
    """Plays one game between two synthetic players (sampling with the Gumbel-max trick)."""
    evaluator = evaluator or FastEvaluator()
    board = chess.Board()
    san: list[str] = []
    uci: list[str] = []
    while True:
        table = analyse_moves(board)
        if not len(table):
            if board.is_check():
                return PlayedGame(san, uci, "0-1" if board.turn else "1-0", "Normal")
            return PlayedGame(san, uci, "1/2-1/2", "Normal")
        if (
            board.is_insufficient_material()
            or board.halfmove_clock >= 100
            or (board.halfmove_clock >= 8 and board.is_repetition(3))
        ):
            return PlayedGame(san, uci, "1/2-1/2", "Normal")
        if len(uci) >= config.max_plies:
            balance = _material(board, chess.WHITE) - _material(board, chess.BLACK)
            result = "1-0" if balance >= 3 else "0-1" if balance <= -3 else "1/2-1/2"
            return PlayedGame(san, uci, result, "Adjudication")
        player = white if board.turn == chess.WHITE else black
        deltas = evaluator.deltas(table)
        book = None
        if len(uci) < config.opening_plies:
            book = repertoire_move(player, table, deltas, config.book_tolerance)
        phi = move_features(table, book)
        logits = move_logits(player, table, deltas, phi)
        choice = int(np.argmax(logits + rng.gumbel(size=len(logits))))
        move = table.moves[choice]
        san.append(board.san(move))
        uci.append(move.uci())
        board.push(move)


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


def game_pgn(
    game_id: str,
    white: PlayerStyle,
    black: PlayerStyle,
    played: PlayedGame,
    time_control: str,
) -> str:
    """One game as PGN text (Lichess-like headers, movetext wrapped at 80 columns)."""
    headers = [
        ("Event", f"Rated {time_control_class(time_control).capitalize()} game"),
        ("Site", "synthetic"),
        ("Date", "2026.01.01"),
        ("Round", "-"),
        ("White", white.name),
        ("Black", black.name),
        ("Result", played.result),
        ("WhiteElo", str(white.elo)),
        ("BlackElo", str(black.elo)),
        ("TimeControl", time_control),
        ("Termination", played.termination),
        ("GameId", game_id),
    ]
    tokens = []
    for ply, move in enumerate(played.san):
        if ply % 2 == 0:
            tokens.append(f"{ply // 2 + 1}.")
        tokens.append(move)
    tokens.append(played.result)
    lines, line = [], ""
    for token in tokens:
        if line and len(line) + 1 + len(token) > 80:
            lines.append(line)
            line = token
        else:
            line = f"{line} {token}" if line else token
    lines.append(line)
    head = "\n".join(f'[{k} "{v}"]' for k, v in headers)
    return f"{head}\n\n" + "\n".join(lines) + "\n\n"


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


def write_ground_truth(out_dir: Path, config: GeneratorConfig, players: list[PlayerStyle]):
    """Writes ``players.json``; refuses to mix with an existing one from another config."""
    path = out_dir / "players.json"
    names = list(config.archetypes)
    data = {
        "description": "Ground truth of synthetic players: "
        "P(m|x,p) ∝ exp(-Δ(x,m)/tau + theta·φ(x,m)); theta = Σ_k w_k θ_k + noise.",
        "features": list(FEATURES),
        "archetypes": {"names": names, "theta": [config.archetypes[a] for a in names]},
        "config": config.as_dict(),
        "players": [p.as_dict(names) for p in players],
    }
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("config") != data["config"]:
            raise DataError(
                f"{out_dir} holds a synthetic dataset made with another configuration; "
                "choose a new --out directory or delete the old one"
            )
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def load_ground_truth(out_dir: str | os.PathLike) -> tuple[GeneratorConfig, list[PlayerStyle]]:
    """Reads ``players.json`` written by :func:`generate`."""
    path = Path(out_dir) / "players.json"
    if not path.is_file():
        raise DataError(f"no synthetic ground truth at {path}")
    data = json.loads(path.read_text())
    config = GeneratorConfig.from_dict(data["config"])
    names = data["archetypes"]["names"]
    return config, [PlayerStyle.from_dict(p, names) for p in data["players"]]


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
