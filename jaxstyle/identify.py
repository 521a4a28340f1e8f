"""Who played these games? Identify players in your own PGN files with a trained model.

    python -m jaxstyle.identify --run runs/style --reference known.pgn --query mystery.pgn

Loads the exported :class:`~jaxstyle.model.StylePolicy` of a run (a folder written by
:func:`jaxstyle.model_io.save`, or a run folder holding one), reads every player in the
``--reference`` PGN files and every player in the ``--query`` files, fits one style vector
per player on their moves (routing only, the model frozen; all players in one batched
fit), and prints, for each query player, the most likely reference player by cosine
similarity of style vectors and by the likelihood of the query moves under each
reference player's vector. Players with fewer than ``--min-games`` games are listed as
skipped, not silently dropped. Bad input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from jaxstyle.chess.sources import DataError


@dataclasses.dataclass
class PlayerGames:
    """One player's positions: ``planes uint8 [n, 18, 8, 8]``, ``legal_mask bool [n, 1880]``,
    ``move int32 [n]``, and the number of games they came from."""

    name: str
    games: int
    planes: np.ndarray
    legal_mask: np.ndarray
    move: np.ndarray


def read_players(paths: list[str], max_plies: int = 200) -> dict[str, PlayerGames]:
    """Every player named in ``paths`` (``.pgn`` / ``.pgn.zst`` files or folders) with the
    positions where they were to move (at most ``max_plies`` half-moves per game)."""
    import chess

    from jaxstyle.chess.encoding import board_planes, legal_mask, move_to_index
    from jaxstyle.chess.pgn import iter_games

    rows: dict[str, list] = defaultdict(list)
    games: dict[str, int] = defaultdict(int)
    for game in iter_games(paths):
        board = chess.Board(game.fen)
        games[game.white] += 1
        games[game.black] += 1
        for uci in game.moves[:max_plies]:
            move = chess.Move.from_uci(uci)
            name = game.white if board.turn == chess.WHITE else game.black
            rows[name].append((board_planes(board), legal_mask(board), move_to_index(board, move)))
            board.push(move)
    out = {}
    for name, items in rows.items():
        planes, legal, move = zip(*items)
        out[name] = PlayerGames(
            name, games[name], np.stack(planes), np.stack(legal), np.array(move, np.int32)
        )
    if not out:
        raise DataError(f"no games found in {', '.join(map(str, paths))}")
    return out


def find_model(run: str | Path) -> Path:
    """The saved model in ``run``: the folder itself, or the newest sub-folder holding one."""
    from jaxstyle.model_io import CONFIG_FILE

    run = Path(run)
    if not run.is_dir():
        raise DataError(f"run folder not found: {run}")
    if (run / CONFIG_FILE).is_file():
        return run
    found = sorted(run.rglob(CONFIG_FILE), key=lambda p: p.stat().st_mtime)
    if not found:
        raise DataError(f"no exported style model under {run} (no {CONFIG_FILE}); train one first")
    return found[-1].parent


def split_by_size(players: dict[str, PlayerGames], min_games: int):
    """``(kept names, {skipped name: games})``: players with at least ``min_games`` games."""
    kept = sorted(n for n, p in players.items() if p.games >= min_games)
    skipped = {n: p.games for n, p in sorted(players.items()) if p.games < min_games}
    return kept, skipped


def fit_players(model, players: list[PlayerGames], *, steps: int, learning_rate: float, seed: int):
    """``[len(players), R]`` style vectors, fitted together (one group per player)."""
    import jax

    from jaxstyle.training import fit_style_vectors

    group = np.concatenate([np.full(len(p.move), i) for i, p in enumerate(players)])
    return np.asarray(
        fit_style_vectors(
            model,
            np.concatenate([p.planes for p in players]),
            np.concatenate([p.legal_mask for p in players]),
            np.concatenate([p.move for p in players]),
            group,
            len(players),
            steps=steps,
            learning_rate=learning_rate,
            key=jax.random.PRNGKey(seed),
        )
    )


def identify(
    model,
    reference: dict[str, PlayerGames],
    query: dict[str, PlayerGames],
    *,
    min_games: int = 5,
    steps: int = 200,
    learning_rate: float = 0.1,
    seed: int = 0,
) -> dict:
    """Identification of every query player among the reference players.

    Returns ``{"matches": [{"query", "games", "cosine": [(name, similarity)…top 3],
    "likelihood": [(name, mean log p)…top 3]}], "skipped_reference": {name: games},
    "skipped_query": {name: games}, "min_games": k}``.
    """
    from jaxstyle.stylometry import cosine_similarity, likelihood_matrix

    ref_names, ref_skipped = split_by_size(reference, min_games)
    query_names, query_skipped = split_by_size(query, min_games)
    if not ref_names:
        raise DataError(
            f"no reference player has {min_games} games (the few-shot size); "
            f"found {dict(list(ref_skipped.items())[:5])}; lower --min-games"
        )
    if not query_names:
        raise DataError(
            f"no query player has {min_games} games (the few-shot size); "
            f"found {dict(list(query_skipped.items())[:5])}; lower --min-games"
        )
    people = [reference[n] for n in ref_names] + [query[n] for n in query_names]
    vectors = fit_players(model, people, steps=steps, learning_rate=learning_rate, seed=seed)
    ref_vec, query_vec = vectors[: len(ref_names)], vectors[len(ref_names) :]
    cosine = np.asarray(cosine_similarity(query_vec, ref_vec))
    qs = [query[n] for n in query_names]
    group = np.concatenate([np.full(len(p.move), i) for i, p in enumerate(qs)])
    loglik = likelihood_matrix(
        model,
        np.concatenate([p.planes for p in qs]),
        np.concatenate([p.legal_mask for p in qs]),
        np.concatenate([p.move for p in qs]),
        group,
        len(qs),
        ref_vec,
    )
    matches = []
    for i, name in enumerate(query_names):
        top_c = np.argsort(-cosine[i])[:3]
        top_l = np.argsort(-loglik[i])[:3]
        matches.append(
            {
                "query": name,
                "games": query[name].games,
                "cosine": [(ref_names[j], float(cosine[i, j])) for j in top_c],
                "likelihood": [(ref_names[j], float(loglik[i, j])) for j in top_l],
            }
        )
    return {
        "matches": matches,
        "skipped_reference": ref_skipped,
        "skipped_query": query_skipped,
        "min_games": min_games,
    }


def format_result(result: dict) -> str:
    """Plain-text report of :func:`identify`."""
    lines = []
    for m in result["matches"]:
        (c_name, c_sim), (l_name, l_lp) = m["cosine"][0], m["likelihood"][0]
        lines.append(
            f"{m['query']} ({m['games']} games): most likely {l_name} by likelihood "
            f"(mean log p {l_lp:.3f}), {c_name} by cosine ({c_sim:.3f}); runners-up "
            + ", ".join(n for n, _ in m["likelihood"][1:])
        )
    k = result["min_games"]
    for role in ("reference", "query"):
        skipped = result[f"skipped_{role}"]
        if skipped:
            names = ", ".join(f"{n} ({g})" for n, g in list(skipped.items())[:10])
            more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
            lines.append(f"skipped {len(skipped)} {role} player(s) with < {k} games: {names}{more}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jaxstyle.identify", description=__doc__.split("\n")[0]
    )
    p.add_argument("--run", required=True, help="trained run folder (or an exported model)")
    p.add_argument("--reference", nargs="+", required=True, help="PGN files of known players")
    p.add_argument("--query", nargs="+", required=True, help="PGN files of players to identify")
    p.add_argument("--min-games", type=int, default=5, help="few-shot size (games per player)")
    p.add_argument("--steps", type=int, default=200, help="style-vector fitting steps")
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.min_games < 1 or args.steps < 1:
            raise DataError("--min-games and --steps must be positive")
        model_dir = find_model(args.run)
        reference = read_players(args.reference)
        query = read_players(args.query)
        from jaxstyle import model_io

        model = model_io.load(model_dir)
        result = identify(
            model,
            reference,
            query,
            min_games=args.min_games,
            steps=args.steps,
            learning_rate=args.learning_rate,
            seed=args.seed,
        )
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
