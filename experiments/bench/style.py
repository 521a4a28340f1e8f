"""Chess data-pipeline throughput (JSON on stdout): ``python -m experiments.bench.style``.

Keys:
  encode_positions_per_s         PGN text → python-chess parse → packed planes + legal-move
                                 indices + move index, positions per second (one core)
  synthetic_games_per_s_per_core synthetic-player games per second in one process
  array_record_positions_per_s   records decoded per second through ``tfds.data_source``
                                 (``__getitems__`` in batches of 256, sequential)
  balanced_batch_positions_per_s ``BalancedBatches`` (random access, unpacked planes, masks)
  tfds_build_positions_per_s     train records / seconds of the whole tfds build (read the PGN,
                                 split, encode, write all three splits)

Each figure is the best of ``--repeats`` timed runs (the machine may be shared). The games
are synthetic and generated first into a temporary folder; ``--games`` sets how many.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

from experiments.bench.report import default_out, emit


def _best(fn, repeats: int) -> tuple[float, int]:
    """Best (seconds, items) over ``repeats`` calls of ``fn() -> items``."""
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        items = fn()
        seconds = time.perf_counter() - start
        if best is None or seconds < best[0]:
            best = (seconds, items)
    return best


def run(games: int = 120, repeats: int = 3, players: int = 12) -> dict:
    import chess
    import tensorflow_datasets as tfds

    from jaxstyle.chess import batching, encoding, pgn, synthetic, tfds_builder

    tfds.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = synthetic.GeneratorConfig(
            num_players=players,
            games_per_player=max(1, 2 * games // players),
            chunk_games=max(1, games // 4),
            seed=1,
        )
        n_games = len(synthetic.schedule_games(config))

        def gen():
            out = root / f"gen-{time.perf_counter_ns()}"
            synthetic.generate(out, config, workers=1, progress=False)
            return n_games

        gen_s, _ = _best(gen, 1)
        source = root / "pgn-source"
        synthetic.generate(source, config, workers=1, progress=False)

        def encode():
            positions = 0
            for game in pgn.iter_games(source / "pgn"):
                board = chess.Board(game.fen)
                for uci in game.moves:
                    move = chess.Move.from_uci(uci)
                    encoding.encode_board(board)
                    encoding.legal_move_indices(board)
                    encoding.move_to_index(board, move)
                    board.push(move)
                    positions += 1
            return positions

        encode_s, positions = _best(encode, repeats)

        data_dir = root / "tfds"
        build_start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # tfds prints progress; stdout is JSON
            tfds_builder.build_dataset(data_dir, source / "pgn")
        build_s = time.perf_counter() - build_start
        ds = tfds_builder.data_source(data_dir, "train")

        def read():
            for start in range(0, len(ds), 256):
                ds.__getitems__(list(range(start, min(start + 256, len(ds)))))
            return len(ds)

        read_s, records = _best(read, repeats)
        batches = batching.BalancedBatches(
            data_dir, "train", 256, players_per_batch=min(8, players)
        )

        def balanced():
            for _ in range(8):
                next(batches)
            return 8 * 256

        balanced_s, sampled = _best(balanced, repeats)

    return {
        "encode_positions_per_s": round(positions / encode_s, 1),
        "synthetic_games_per_s_per_core": round(n_games / gen_s, 2),
        "array_record_positions_per_s": round(records / read_s, 1),
        "balanced_batch_positions_per_s": round(sampled / balanced_s, 1),
        "tfds_build_positions_per_s": round(records / build_s, 1),
        "games": n_games,
        "positions_encoded": positions,
        "train_records": records,
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=default_out("style"), help="also write the JSON here")
    args = parser.parse_args(argv)
    emit(run(args.games, args.repeats), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
