"""Chess data-pipeline benchmark (the data half of ``make bench-style``).

Every figure is timed through :mod:`experiments.bench.timing` (side by side, with spread);
the inputs are made here, offline: synthetic-player games for the encoder and reader keys,
and real shipped games replayed under many players (:mod:`jaxstyle.chess.replay`) for the
build keys.

Keys (rates in items per second, ``{"median", "min", "max"}`` over repeats):

  encode_positions_per_s         parse + planes + legal moves + move index (reference encoder)
  synthetic_games_per_s_per_core synthetic-player games, one process
  array_record_positions_per_s   records decoded through ``tfds.data_source`` (batches of 256)
  balanced_batch_positions_per_s ``BalancedBatches`` (random access, unpacked planes, masks)
  header_pass_games_per_s        header-only pass over the scale dump (``--scale-games``)
  header_pass_games_per_s_2proc  the same with 2 worker processes parsing the headers
  cut_games_per_s                decompress + cut into games (the build's sequential part)
  build_positions_per_s_1proc    whole streaming build, one process
  build_speedup_2proc            build time with 1 worker / with 2 workers (same bytes out)
  build_main_cpu_share_2proc     main process CPU / all CPU of the 2-worker build (load
                                 independent: the part that does not run in the workers)
  build_cpu_s_1proc, build_cpu_s_2proc_main_plus_workers
                                 CPU seconds of the two builds (their ratio is the parallel
                                 overhead: spawning, pickling, the pipes)
  build_peak_rss_mb_1x / _10x    peak RSS of a one-process build of N and 10 N games
  build_rss_ratio_10x_over_1x    target <= 1.2 (bounded memory)
  parse_encode_over_plain_parse  the build's parse+encode / a python-chess loop that only
                                 parses and pushes the moves, same games; target <= 1.3
  rust_reader_over_plain_parse   ``rust_pgn_reader_python_binding`` (Rust, shakmaty) parsing
  rust_reader_over_parse_encode  the same games with every position's legal moves, one
                                 thread, / the plain loop and / our parse+encode
  rust_reader_agrees_with_python_chess  its moves and legal-move counts equal python-chess's
  pgn_extract_over_plain_parse   Debian's ``pgn-extract -s`` (C, validates the moves) over the
                                 same games / the plain loop reading the same file
  estimated_hours_lichess_month  100M games, 7e9 positions, from the measured rates, on
                                 2 cores and on 64 cores: cutting the stream into games is
                                 sequential (main process, both passes); header parsing
                                 and parse+encode run in the workers and scale with the
                                 cores at the measured 2-process efficiency
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from experiments.bench import timing

DATA = Path(__file__).resolve().parents[2] / "tests" / "jaxstyle" / "data"
LICHESS_MONTH_GAMES = 100e6
LICHESS_MONTH_POSITIONS = 7e9


def _real_games():
    from jaxstyle.chess.pgn import iter_games

    return [g for g in iter_games(DATA) if g.fen.startswith("rnbqkbnr/pppppppp/8/8/8/8/")]


def _pipeline_keys(root: Path, games: int, players: int, repeats: int) -> dict:
    """The keys of the pre-issue-13 benchmark, on synthetic players."""
    import chess

    from jaxstyle.chess import batching, encoding, pgn, synthetic, tfds_builder

    config = synthetic.GeneratorConfig(
        num_players=players,
        games_per_player=max(1, 2 * games // players),
        chunk_games=max(1, games // 4),
        seed=1,
    )
    n_games = len(synthetic.schedule_games(config))
    source = root / "pgn-source"
    synthetic.generate(source, config, workers=1, progress=False)

    def generate():
        out = root / "gen"
        shutil.rmtree(out, ignore_errors=True)
        synthetic.generate(out, config, workers=1, progress=False)

    recorded = list(pgn.iter_games(source / "pgn"))
    n_positions = sum(g.num_plies for g in recorded)

    def encode():
        for game in recorded:
            board = chess.Board(game.fen)
            for uci in game.moves:
                move = chess.Move.from_uci(uci)
                encoding.encode_board(board)
                encoding.legal_move_indices(board)
                encoding.move_to_index(board, move)
                board.push(move)

    data_dir = root / "tfds"
    tfds_builder.build_dataset(data_dir, source / "pgn", options=_options(1))
    ds = tfds_builder.data_source(data_dir, "train")
    batches = batching.BalancedBatches(data_dir, "train", 256, players_per_batch=min(8, players))

    def read():
        for start in range(0, len(ds), 256):
            ds.__getitems__(list(range(start, min(start + 256, len(ds)))))

    def balanced():
        for _ in range(8):
            next(batches)

    timing.progress("synthetic generation, encoder, array_record reads, balanced batches")
    times = timing.side_by_side(
        {"generate": generate, "encode": encode, "read": read, "balanced": balanced},
        repeats,
        warm=False,
    )
    rates = timing.rates(
        times,
        {"generate": n_games, "encode": n_positions, "read": len(ds), "balanced": 8 * 256},
    )
    return {
        "encode_positions_per_s": rates["encode"],
        "synthetic_games_per_s_per_core": rates["generate"],
        "array_record_positions_per_s": rates["read"],
        "balanced_batch_positions_per_s": rates["balanced"],
        "games": n_games,
        "positions_encoded": n_positions,
        "train_records": len(ds),
    }


def _options(workers: int, games_per_bucket: int = 2_000):
    from jaxstyle.chess import build

    return build.BuildOptions(workers=workers, games_per_bucket=games_per_bucket, progress=False)


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its reaped children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def _header_keys(root: Path, scale_games: int, repeats: int) -> dict:
    from jaxstyle.chess import build, replay
    from jaxstyle.chess.build_plan import header_pass
    from jaxstyle.chess.pgn_filters import GameFilter
    from jaxstyle.chess.pgn_split import iter_file_games

    timing.progress(f"writing a {scale_games}-game replayed dump")
    dump = replay.write_replayed_dump(
        root / "scale.pgn.zst", _real_games(), scale_games, max(2, scale_games // 15), seed=3
    )
    game_filter = GameFilter(min_games_per_player=5)
    timing.progress("header pass (1 and 2 processes) and game cutting")
    with build.worker_pool(2) as pool:
        times = timing.side_by_side(
            {
                "header": lambda: header_pass([dump], game_filter),
                "header_2proc": lambda: header_pass([dump], game_filter, pool=pool, workers=2),
                "cut": lambda: sum(1 for _ in iter_file_games(dump)),
            },
            repeats,
            warm=False,
        )
    rates = timing.rates(times, dict.fromkeys(times, scale_games))
    return {
        "header_pass_games_per_s": rates["header"],
        "header_pass_games_per_s_2proc": rates["header_2proc"],
        "cut_games_per_s": rates["cut"],
        "scale_games": scale_games,
        "scale_dump_mb": round(dump.stat().st_size / 2**20, 2),
    }


def _build_keys(root: Path, build_games: int, repeats: int, max_plies: int | None) -> dict:
    from jaxstyle.chess import build, replay
    from jaxstyle.chess.pgn_filters import GameFilter

    dump = replay.write_replayed_dump(
        root / "build.pgn.zst",
        _real_games(),
        build_games,
        max(2, build_games // 10),
        seed=4,
        max_plies=max_plies,
    )
    game_filter = GameFilter(min_games_per_player=5)
    outs, cpu = {}, {}
    # ~10 stage-B buckets, as a real build has thousands (balanced across the workers)
    per_bucket = max(50, build_games // 5)

    def run(workers: int):
        out = root / f"build-{workers}"
        shutil.rmtree(out, ignore_errors=True)
        before = _cpu_seconds()
        build.build(out, dump, game_filter, options=_options(workers, per_bucket))
        after = _cpu_seconds()
        cpu.setdefault(workers, []).append([a - b for a, b in zip(after, before)])
        outs[workers] = out

    timing.progress(f"streaming build of {build_games} games, 1 and 2 worker processes")
    times = timing.side_by_side(
        {"1proc": lambda: run(1), "2proc": lambda: run(2)}, repeats, warm=False
    )
    same = _same_files(build.version_dir(outs[1]), build.version_dir(outs[2]))
    main, workers = np.asarray(cpu[2]).T  # the pool is joined inside build(): children reaped
    meta = build.version_dir(outs[1]) / "metadata.json"
    positions = sum(json.loads(meta.read_text())["positions"].values())
    return {
        "build_positions_per_s_1proc": timing.rates(times, {"1proc": positions, "2proc": 0})[
            "1proc"
        ],
        "build_speedup_2proc": timing.ratio(times, "1proc", "2proc"),
        "build_2proc_identical_output": same,
        "build_main_cpu_share_2proc": timing.spread(main / (main + workers)),
        "build_cpu_s_1proc": timing.spread(np.asarray(cpu[1])[:, 0]),
        "build_cpu_s_2proc_main_plus_workers": timing.spread(main + workers),
        "build_games": build_games,
        "build_positions": positions,
    }


def _same_files(a: Path, b: Path) -> bool:
    names = sorted(os.listdir(a))
    return names == sorted(os.listdir(b)) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


_RSS_CHILD = """
import resource, sys
from jaxstyle.chess import build
from jaxstyle.chess.pgn_filters import GameFilter
build.build(sys.argv[1], sys.argv[2], GameFilter(min_games_per_player=5),
            options=build.BuildOptions(workers=1, progress=False))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _rss_keys(root: Path, rss_games: int) -> dict:
    from jaxstyle.chess import replay

    games = _real_games()
    result = {}
    for factor in (1, 10):
        n = rss_games * factor
        dump = replay.write_replayed_dump(
            root / f"rss-{factor}.pgn.zst", games, n, 200, seed=5, max_plies=12
        )
        timing.progress(f"peak RSS of a one-process build of {n} games")
        done = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, str(root / f"rss-out-{factor}"), str(dump)],
            capture_output=True,
            text=True,
            check=True,
        )
        result[f"build_peak_rss_mb_{factor}x"] = round(int(done.stdout.split()[-1]) / 1024, 1)
    result["build_rss_ratio_10x_over_1x"] = round(
        result["build_peak_rss_mb_10x"] / result["build_peak_rss_mb_1x"], 3
    )
    result["rss_games_1x"] = rss_games
    return result


def _parse_ratio_keys(root: Path, repeats: int, ratio_games: int, max_plies: int | None) -> dict:
    """Our parse+encode against a bare python-chess parse-and-push loop, same games."""
    import chess.pgn

    from jaxstyle.chess import replay
    from jaxstyle.chess.build_encode import ChunkEncoder
    from jaxstyle.chess.build_plan import make_plan
    from jaxstyle.chess.pgn_filters import GameFilter
    from jaxstyle.chess.pgn_split import iter_chunks
    from jaxstyle.chess.sources import decode_pgn

    dump = replay.write_replayed_dump(
        root / "ratio.pgn.zst", _real_games(), ratio_games, 20, seed=6, max_plies=max_plies
    )
    plan = make_plan([dump], GameFilter(), (0.8, 0.1, 0.1), 2_000)
    chunks = list(iter_chunks([dump], 100))
    encoder = ChunkEncoder(plan)
    texts = [decode_pgn(g.data) for c in chunks for g in c.games]

    def ours():
        for chunk in chunks:
            encoder(chunk)

    def plain():
        for text in texts:
            game = chess.pgn.read_game(io.StringIO(text))
            board = game.board()
            for move in game.mainline_moves():
                board.push(move)

    def rust():
        _rust_parse(texts)

    timing.progress("parse+encode against python-chess and the Rust reader, same games")
    times = timing.side_by_side({"ours": ours, "plain": plain, "rust": rust}, repeats)
    return {
        "parse_encode_over_plain_parse": timing.ratio(times, "ours", "plain"),
        "rust_reader_over_plain_parse": timing.ratio(times, "rust", "plain"),
        "rust_reader_over_parse_encode": timing.ratio(times, "rust", "ours"),
        "rust_reader_agrees_with_python_chess": _rust_agrees(texts),
        **_pgn_extract_keys(root, texts, repeats),
    }


def _rust_parse(texts: list[str]):
    """``rust_pgn_reader_python_binding`` (shakmaty), one thread, with every position's legal
    moves: what our encoder needs from a parser (boards, castling, e.p., legal moves)."""
    import rust_pgn_reader_python_binding as rust_pgn  # noqa: PLC0415

    return rust_pgn.parse_games_from_strings(texts, num_threads=1, store_legal_moves=True)


def _rust_agrees(texts: list[str]) -> bool:
    """Every game's moves (from, to) and legal-move counts equal python-chess's."""
    import chess.pgn

    parsed = _rust_parse(texts)
    for i, text in enumerate(texts):
        game, view = chess.pgn.read_game(io.StringIO(text)), parsed[i]
        board, moves = game.board(), list(game.mainline_moves())
        theirs = list(zip(view.from_squares.tolist(), view.to_squares.tolist()))
        if theirs != [(m.from_square, m.to_square) for m in moves]:
            return False
        for move, legal in zip(moves, view.legal_moves):
            if len(legal) != board.legal_moves.count():
                return False
            board.push(move)
    return True


def _pgn_extract_keys(root: Path, texts: list[str], repeats: int) -> dict:
    """Debian's ``pgn-extract`` (C; checks every move's legality) over the same games as one
    plain PGN file, against the python-chess parse loop: both read and validate the moves."""
    import chess.pgn

    exe = shutil.which("pgn-extract") or shutil.which("pgn-extract", path="/usr/games")
    if exe is None:
        return {"pgn_extract_over_plain_parse": "not installed (apt-get install pgn-extract)"}
    path = root / "ratio.pgn"
    path.write_text("\n\n".join(texts) + "\n")

    def extract():
        subprocess.run(  # its warnings (e.g. "Result * inconsistent with mate") to null
            [exe, "-s", "-o", os.devnull, str(path)], check=True, stderr=subprocess.DEVNULL
        )

    def plain():
        with open(path, encoding="utf-8") as handle:
            while (game := chess.pgn.read_game(handle)) is not None:
                board = game.board()
                for move in game.mainline_moves():
                    board.push(move)

    times = timing.side_by_side({"pgn_extract": extract, "plain": plain}, repeats)
    return {"pgn_extract_over_plain_parse": timing.ratio(times, "pgn_extract", "plain")}


def _estimate(result: dict) -> dict:
    """Hours for a Lichess month (see the module docstring)."""
    header = result["header_pass_games_per_s"]["median"]
    cut = result["cut_games_per_s"]["median"]
    per_core = result["build_positions_per_s_1proc"]["median"]
    efficiency = result["build_speedup_2proc"]["median"] / 2
    out = {}
    for cores in (2, 64):
        parallel = max(1.0, cores * efficiency)
        # both passes: the main process cuts (sequential), the workers parse
        header_s = LICHESS_MONTH_GAMES / min(cut, header * parallel)
        encode_s = LICHESS_MONTH_POSITIONS / (per_core * parallel)
        stage_a = max(encode_s, LICHESS_MONTH_GAMES / cut)
        out[f"{cores}_cores"] = round((header_s + stage_a) / 3600, 1)
    return out


def run(
    games: int = 120,
    repeats: int = 3,
    players: int = 12,
    scale_games: int = 300_000,
    build_games: int = 6_000,
    rss_games: int = 1_000,
    ratio_games: int = 300,
    max_plies: int | None = None,
) -> dict:
    """All data keys (see the module docstring); sizes shrink for the tests (``max_plies``
    cuts the replayed games of the build and ratio keys)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        result = _pipeline_keys(root, games, players, repeats)
        result.update(_header_keys(root, scale_games, repeats))
        result.update(_build_keys(root, build_games, max(1, repeats - 1), max_plies))
        result.update(_rss_keys(root, rss_games))
        result.update(_parse_ratio_keys(root, repeats, ratio_games, max_plies))
    result["estimated_hours_lichess_month"] = _estimate(result)
    result["cpu_count"] = os.cpu_count()
    return result
