"""Synthetic players: who they are (archetypes, configuration, ground truth on disk).

Player ``p`` picks a move ``m`` in position ``x`` with probability

    P(m | x, p) ∝ exp(−Δ(x, m) / τ_p + θ_p · φ(x, m))

* ``Δ`` — loss against the best move in pawns (:mod:`jaxstyle.chess.evaluator`);
* ``τ_p`` — skill temperature in pawns (larger = weaker), log-uniform in ``tau_range``;
* ``φ`` — readable 0/1 style features (:mod:`jaxstyle.chess.style_features`), including a
  ``book`` feature that marks the player's own deterministic opening repertoire move;
* ``θ_p = Σ_k w_pk θ_k + ε`` — a mixture of ``K`` archetypes with ``w_p ~ Dirichlet(α)``
  and Gaussian noise ``ε``: the skill-routing shape that MHR style vectors assume.

The defaults are balanced so that style is visible next to skill: a one-standard-deviation
change of any style weight moves its feature's rate at least as much as a one-standard-
deviation change of ``log τ`` does (:mod:`jaxstyle.chess.balance` measures it; the
dataset card reports it). Moves are played by :mod:`jaxstyle.chess.play`; datasets are
written by :mod:`jaxstyle.chess.generation`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxstyle.chess.evaluator import FastEvaluator, StockfishEvaluator
from jaxstyle.chess.sources import DataError
from jaxstyle.chess.style_features import FEATURES, theta_from_dict

ARCHETYPES: dict[str, dict[str, float]] = {
    "attacker": {
        "capture": 6.0,
        "check": 3.0,
        "pawn_storm": 2.0,
        "bishop_move": 2.0,
        "queen_trade": -2.0,
    },
    "trader": {"queen_trade": 4.0, "capture": 4.0, "bishop_for_knight": 2.0},
    "fortress": {"castle_early": 5.0, "retreat": 1.6, "capture": -4.0, "king_move": -2.0},
    "king_walker": {"king_move": 4.0, "castle_early": -4.0, "castle_late": -2.0},
    "pawn_roller": {"pawn_push": 3.0, "pawn_storm": 2.0, "queen_move": -2.0},
    "knight_lover": {"knight_move": 4.0, "bishop_for_knight": 3.0, "bishop_move": -2.0},
    "queen_hunter": {"queen_move": 4.0, "check": 2.0, "queen_trade": -4.0},
    "bookworm": {"book": 6.0, "castle_late": 3.0, "advance": -1.6},
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
    theta_noise: float = 0.5
    tau_range: tuple[float, float] = (0.3, 1.2)
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
