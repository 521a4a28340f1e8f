"""Style against skill: does a synthetic player's style show next to its strength?

For each style feature ``f`` the *property* is its rate ``r_f``: the expected share of a
player's moves with ``φ_f = 1``,

    r_f(θ, τ) = 1/N Σ_i Σ_m π_{θ,τ}(m | x_i) φ_f(x_i, m),
    π_{θ,τ}(m | x) = softmax_m(−Δ(x, m)/τ + θ·φ(x, m)).

Clones of the *average* player (θ̄ = mean θ of the players, τ̄ = exp(mean log τ)) are
shifted by one standard deviation: θ̄ ± σ_f e_f for every feature (σ_f = spread of θ_f over
the players) and τ̄ e^{±σ_τ} (σ_τ = spread of log τ). Every clone plays games against the
average player; the positions ``x_i`` are those *all* clones met, pooled, so every clone is
scored on the same positions with the exact expectation (no sampling noise in the
comparison), and the positions include what the shifted players themselves steer into.
:func:`on_policy_rates` gives the strictly on-policy rate of one player (its own positions
only) for checks on played games. Then

    style effect_f = [r_f(θ̄ + σ_f e_f, τ̄) − r_f(θ̄ − σ_f e_f, τ̄)] / 2
    skill effect_f = [r_f(θ̄, τ̄ e^{σ_τ}) − r_f(θ̄, τ̄ e^{−σ_τ})] / 2

are the moves of the rate per one standard deviation of style and of skill; the data
carry style when ``|style effect_f| ≥ |skill effect_f|`` for every feature.
"""

from __future__ import annotations

import dataclasses

import chess
import numpy as np

from jaxstyle.chess.evaluator import analyse_moves
from jaxstyle.chess.play import move_logits, repertoire_move
from jaxstyle.chess.players import GeneratorConfig, PlayerStyle, make_players
from jaxstyle.chess.style_features import FEATURES, move_features


def average_player(players: list[PlayerStyle]) -> PlayerStyle:
    """The clone template: mean θ, geometric-mean τ of ``players``."""
    theta = np.mean([p.theta for p in players], axis=0)
    tau = float(np.exp(np.mean(np.log([p.tau for p in players]))))
    return dataclasses.replace(players[0], name="average", theta=tuple(theta.tolist()), tau=tau)


def policy(player: PlayerStyle, deltas: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``float [n]``: the player's move probabilities π(m | x) (softmax of the logits)."""
    logits = move_logits(player, None, deltas, phi).astype(np.float64)
    p = np.exp(logits - logits.max())
    return p / p.sum()


@dataclasses.dataclass(frozen=True)
class Positions:
    """Padded positions: ``deltas float32 [N, M]``, ``phi float32 [N, M, F]``,
    ``mask bool [N, M]`` (``M`` = most legal moves in any position)."""

    deltas: np.ndarray
    phi: np.ndarray
    mask: np.ndarray

    @classmethod
    def stack(cls, rows: list[tuple[np.ndarray, np.ndarray]]) -> Positions:
        width = max(len(d) for d, _ in rows)
        deltas = np.zeros((len(rows), width), np.float32)
        phi = np.zeros((len(rows), width, len(FEATURES)), np.float32)
        mask = np.zeros((len(rows), width), bool)
        for i, (d, f) in enumerate(rows):
            deltas[i, : len(d)], phi[i, : len(d)], mask[i, : len(d)] = d, f, True
        return cls(deltas, phi, mask)


def play_positions(
    player: PlayerStyle,
    opponent: PlayerStyle,
    config: GeneratorConfig,
    games: int,
    seed: int = 0,
    evaluator=None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(Δ [n], φ [n, F])]`` of every position where ``player`` moved, in ``games`` games
    against ``opponent`` (colours alternate; game ``g`` uses seed ``(seed, 7, g)``)."""
    evaluator = evaluator or config.make_evaluator()
    rows = []
    for g in range(games):
        rng = np.random.default_rng([seed, 7, g])
        board = chess.Board()
        ours = chess.WHITE if g % 2 == 0 else chess.BLACK
        while not board.is_game_over() and board.ply() < config.max_plies:
            mover = player if board.turn == ours else opponent
            table = analyse_moves(board)
            deltas = evaluator.deltas(table)
            book = None
            if board.ply() < config.opening_plies:
                book = repertoire_move(mover, table, deltas, config.book_tolerance)
            phi = move_features(table, book)
            probs = policy(mover, deltas, phi)
            if mover is player:
                rows.append((deltas, phi))
            choice = int(np.argmax(np.log(probs + 1e-30) + rng.gumbel(size=len(probs))))
            board.push(table.moves[choice])
    return rows


def on_policy_rates(player, opponent, config, games, seed=0, evaluator=None) -> np.ndarray:
    """``float [F]``: ``player``'s expected feature rates over its own positions in
    ``games`` played games against ``opponent`` (see :func:`play_positions`)."""
    rows = play_positions(player, opponent, config, games, seed, evaluator)
    return sum(policy(player, d, f) @ f for d, f in rows) / max(len(rows), 1)


def feature_rates(positions: Positions, theta: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """``float [V, F]``: expected feature rates of ``V`` players (``theta [V, F]``,
    ``tau [V]``) over the same positions."""
    logits = -positions.deltas[None] / tau[:, None, None] + np.einsum(
        "nmf,vf->vnm", positions.phi, theta
    )
    logits = np.where(positions.mask[None], logits, -np.inf)
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return np.einsum("vnm,nmf->vf", probs, positions.phi) / positions.deltas.shape[0]


def style_balance(
    config: GeneratorConfig | None = None, games: int = 2, max_plies: int = 60, seed: int = 0
) -> dict:
    """Per feature: θ spread σ_f, the average clone's rate, style and skill effects, ratio.

    Each of the ``2F + 3`` clones plays ``games`` games of at most ``max_plies`` half-moves
    (the middlegame, where style and skill compete) against the average player; all clones
    are scored on the pooled positions. Returns ``{"features": {name: {...}}, "tau_mean",
    "log_tau_sd", "games", "max_plies", "positions", "min_ratio", "weakest_feature",
    "style_dominates"}`` (JSON-able).
    """
    config = config or GeneratorConfig()
    players = make_players(config)
    base = average_player(players)
    theta_sd = np.std([p.theta for p in players], axis=0)
    log_tau_sd = float(np.std(np.log([p.tau for p in players])))
    num = len(FEATURES)
    short = dataclasses.replace(config, max_plies=min(max_plies, config.max_plies))

    def clone(f: int | None = None, sign: float = 0.0, log_tau: float = 0.0) -> PlayerStyle:
        theta = np.asarray(base.theta, np.float64).copy()
        if f is not None:
            theta[f] += sign * theta_sd[f]
        tau = base.tau * float(np.exp(log_tau))
        return dataclasses.replace(base, theta=tuple(theta.tolist()), tau=tau)

    clones = [clone(f, +1.0) for f in range(num)] + [clone(f, -1.0) for f in range(num)]
    clones += [clone(log_tau=log_tau_sd), clone(log_tau=-log_tau_sd), clone()]
    evaluator = short.make_evaluator()
    try:
        rows = [r for c in clones for r in play_positions(c, base, short, games, seed, evaluator)]
    finally:
        if hasattr(evaluator, "close"):
            evaluator.close()
    pooled = Positions.stack(rows)
    thetas = np.array([c.theta for c in clones])
    taus = np.array([c.tau for c in clones])
    # a few clones at a time, to bound the [V, N, M] logits
    rates = np.concatenate(
        [
            feature_rates(pooled, thetas[i : i + 4], taus[i : i + 4])
            for i in range(0, len(clones), 4)
        ]
    )
    style = (np.diag(rates[:num]) - np.diag(rates[num : 2 * num])) / 2
    skill = (rates[2 * num] - rates[2 * num + 1]) / 2
    ratio = np.abs(style) / np.maximum(np.abs(skill), 1e-9)
    table = {
        name: {
            "theta_sd": float(theta_sd[f]),
            "rate": float(rates[-1, f]),
            "style_effect": float(style[f]),
            "skill_effect": float(skill[f]),
            "ratio": float(ratio[f]),
        }
        for f, name in enumerate(FEATURES)
    }
    return {
        "features": table,
        "tau_mean": base.tau,
        "log_tau_sd": log_tau_sd,
        "games": games,
        "max_plies": short.max_plies,
        "positions": len(rows),
        "min_ratio": float(ratio.min()),
        "weakest_feature": FEATURES[int(np.argmin(ratio))],
        "style_dominates": bool(ratio.min() >= 1.0),
    }


def format_balance(balance: dict) -> list[str]:
    """Markdown lines: one table row per feature."""
    lines = [
        f"Feature rates of clones of the average player (τ̄ = {balance['tau_mean']:.3f} pawns, "
        f"sd of log τ = {balance['log_tau_sd']:.2f}), scored on the {balance['positions']} "
        f"positions all clones met in {balance['games']} games each of ≤ "
        f"{balance['max_plies']} plies against it; effects are rate changes per one "
        "standard deviation.",
        "",
        "| feature | sd θ | rate | style effect | skill effect | style/skill |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in balance["features"].items():
        lines.append(
            f"| {name} | {row['theta_sd']:.2f} | {row['rate']:.3f} | {row['style_effect']:+.3f} "
            f"| {row['skill_effect']:+.3f} | {row['ratio']:.1f} |"
        )
    verdict = "style ≥ skill for every feature" if balance["style_dominates"] else "SKILL DOMINATES"
    lines += [
        "",
        f"Smallest ratio {balance['min_ratio']:.2f} ({balance['weakest_feature']}): {verdict}.",
    ]
    return lines
