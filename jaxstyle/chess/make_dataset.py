"""Command line: build a chess-positions dataset from PGN, or from synthetic players.

Synthetic (default: 400 players × 100 games, ground truth in ``players.json``)::

    python -m jaxstyle.chess.make_dataset --out data/synthetic

A Lichess dump (``.pgn.zst`` streams without unpacking)::

    python -m jaxstyle.chess.make_dataset --out data/lichess-2013-01 \\
        --pgn lichess_db_standard_rated_2013-01.pgn.zst \\
        --time-control blitz --rated --min-elo 1000 --min-games 50 --max-players 400

Layout of ``--out``: ``pgn/`` + ``players.json`` + ``generation.json`` (synthetic only),
``tfds/`` (array_record shards, read with ``tfds.data_source``), ``card.md`` /
``card.json`` / ``games_per_player.png``. The build streams (bounded memory), runs
``--workers`` processes and resumes: a killed run continues from its last checkpoint, a
finished dataset is reused. One run per ``--out`` at a time (a lock). Bad input (missing
file, ``--out`` that is a file, no games, no player left, another run on ``--out``) ends
with one ``error:`` line and exit status 2, and a failed first run leaves no ``--out``.
Games that start from a ``FEN`` (Lichess studies) are skipped unless ``--allow-fen-start``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from jaxstyle.chess.pgn import TIME_CONTROL_CLASSES, GameFilter
from jaxstyle.chess.sources import DataError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jaxstyle.chess.make_dataset", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument(
        "--parser",
        choices=("auto", "rust", "python-chess"),
        default="auto",
        help="PGN parser of the encode stage (same output; auto = Rust reader when installed)",
    )
    parser.add_argument(
        "--pgn", nargs="+", help=".pgn / .pgn.zst files or folders (default: synthetic players)"
    )
    synth = parser.add_argument_group("synthetic players")
    synth.add_argument("--players", type=int, default=400)
    synth.add_argument("--games", type=int, default=100, help="games per player")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--chunk-games", type=int, default=100, help="games per PGN file")
    synth.add_argument("--max-plies", type=int, default=160)
    synth.add_argument(
        "--evaluator",
        choices=("fast", "uci"),
        default="fast",
        help="move-loss source: built-in evaluator or a UCI engine (stockfish on PATH)",
    )
    synth.add_argument("--engine-depth", type=int, default=4)
    filt = parser.add_argument_group("filters")
    filt.add_argument(
        "--time-control",
        action="append",
        choices=TIME_CONTROL_CLASSES + ("unknown",),
        help="keep only these time-control classes (repeatable)",
    )
    filt.add_argument("--rated", action="store_true", help="keep only rated games")
    filt.add_argument("--min-elo", type=int, default=None, help="minimum Elo of both players")
    filt.add_argument("--min-games", type=int, default=1, help="minimum games per player")
    filt.add_argument("--max-players", type=int, default=None, help="keep the N most active")
    filt.add_argument("--min-plies", type=int, default=1)
    filt.add_argument(
        "--player",
        action="append",
        metavar="NAME",
        help="keep only games of these players (repeatable; see also --player-list)",
    )
    filt.add_argument(
        "--player-list", type=Path, help="file with one player name per line (allow-list)"
    )
    filt.add_argument(
        "--allow-fen-start",
        action="store_true",
        help="keep games that start from a FEN position (e.g. Lichess studies)",
    )
    filt.add_argument("--allow-chess960", action="store_true", help="keep Chess960 games too")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Runs the stages under the ``--out`` lock; returns the dataset card."""
    from jaxstyle.chess.build import BuildLock

    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder; choose a folder")
    created = not out.exists()
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(f"cannot create --out {out}: {error.strerror}") from None
        with BuildLock(out / ".make_dataset.lock"):
            return _run_locked(args, out)
    except DataError:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _game_filter(args: argparse.Namespace) -> GameFilter:
    players = list(args.player or [])
    if args.player_list is not None:
        if not args.player_list.is_file():
            raise DataError(f"--player-list {args.player_list} does not exist")
        lines = args.player_list.read_text(encoding="utf-8").splitlines()
        players += [name.strip() for name in lines if name.strip()]
    return GameFilter(
        standard_only=not args.allow_chess960,
        standard_start_only=not args.allow_fen_start,
        time_controls=tuple(args.time_control) if args.time_control else None,
        rated_only=args.rated,
        min_elo=args.min_elo,
        min_plies=args.min_plies,
        min_games_per_player=args.min_games,
        players=tuple(players) if players else None,
        max_players=args.max_players,
    )


def _run_locked(args: argparse.Namespace, out: Path) -> dict:
    from jaxstyle.chess import build, synthetic, tfds_builder
    from jaxstyle.chess import card as card_lib
    from jaxstyle.chess.sources import resolve_sources

    game_filter = _game_filter(args)
    if args.pgn:
        sources = resolve_sources([Path(p) for p in args.pgn])
    else:
        config = synthetic.GeneratorConfig(
            num_players=args.players,
            games_per_player=args.games,
            seed=args.seed,
            chunk_games=args.chunk_games,
            max_plies=args.max_plies,
            evaluator=args.evaluator,
            engine_depth=args.engine_depth,
        )
        report = synthetic.generate(
            out, config, workers=args.workers, progress=not args.no_progress
        )
        print(report.line(), flush=True)
        sources = [out / "pgn"]

    data_dir = out / "tfds"
    _check_cached_filter(data_dir, game_filter)
    options = build.BuildOptions(
        workers=args.workers or os.cpu_count() or 1,
        progress=not args.no_progress,
        parser=args.parser,
    )
    builder = tfds_builder.build_dataset(data_dir, sources, game_filter, options=options)
    print(builder.info.metadata["read_summary"], flush=True)
    path = card_lib.write_card(data_dir, out)
    card = card_lib.dataset_card(data_dir)
    total = sum(card["positions"].values())
    print(f"dataset ready: {card['players']} players, {total} positions in {data_dir}; card {path}")
    return card


def _check_cached_filter(data_dir: Path, game_filter: GameFilter) -> None:
    """Refuses to silently reuse a dataset built with another filter."""
    from jaxstyle.chess import tfds_builder

    if not tfds_builder.is_prepared(data_dir):
        return
    stored = tfds_builder.load_builder(data_dir).info.metadata.get("filter", {})
    wanted = json.loads(json.dumps(game_filter.as_dict()))
    changed = {k: (stored.get(k), v) for k, v in wanted.items() if stored.get(k) != v}
    if changed:
        diff = ", ".join(f"{k}: built {old!r}, asked {new!r}" for k, (old, new) in changed.items())
        raise DataError(
            f"{data_dir} was built with another filter ({diff}); delete it or choose another --out"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
