"""The Rust PGN reader's fast path of stage A gives the python-chess path's bytes."""

from __future__ import annotations

import random
import sys

import chess
import chess.pgn
import pytest

from jaxstyle.chess import build, replay, rust_reader, synthetic
from jaxstyle.chess.build_encode import ChunkEncoder
from jaxstyle.chess.build_plan import make_plan
from jaxstyle.chess.corpus import SPLIT_FRACTIONS
from jaxstyle.chess.pgn import GameFilter, iter_games
from jaxstyle.chess.pgn_split import iter_chunks

pytest.importorskip("rust_pgn_reader_python_binding")

FILTER = GameFilter(min_games_per_player=5)


def _options(parser: str) -> build.BuildOptions:
    return build.BuildOptions(
        workers=1, chunk_games=40, games_per_bucket=150, progress=False, parser=parser
    )


def _dataset_files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _same_build(tmp_path, sources, game_filter) -> dict[str, bytes]:
    rust = build.build(tmp_path / "rust", sources, game_filter, options=_options("rust"))
    slow = build.build(tmp_path / "python", sources, game_filter, options=_options("python-chess"))
    files = _dataset_files(rust)
    assert files == _dataset_files(slow)
    return files


def _fast_games(encoder: ChunkEncoder, chunks) -> int:
    return sum(len(encoder._rust_games(c, encoder.file_names[c.file_index])[0]) for c in chunks)


def test_build_of_replayed_real_games_is_byte_identical(real_data, tmp_path):
    games = [g for g in iter_games(real_data) if g.fen == chess.STARTING_FEN]
    dump = replay.write_replayed_dump(tmp_path / "replayed.pgn.zst", games, 240, 12, seed=5)
    files = _same_build(tmp_path, dump, FILTER)
    assert any("array_record" in name for name in files)
    plan = make_plan([dump], FILTER, SPLIT_FRACTIONS, 150)
    chunks = list(iter_chunks([dump], 40))
    assert _fast_games(ChunkEncoder(plan, "rust"), chunks) == 240  # all took the fast path


def test_build_of_a_synthetic_dump_is_byte_identical(tmp_path):
    config = synthetic.GeneratorConfig(
        num_players=4, games_per_player=6, chunk_games=6, max_plies=60, seed=7
    )
    synthetic.generate(tmp_path / "gen", config, workers=1, progress=False)
    game_filter = GameFilter(min_games_per_player=2)
    _same_build(tmp_path, tmp_path / "gen" / "pgn", game_filter)
    files = sorted((tmp_path / "gen" / "pgn").glob("*.pgn*"))
    chunks = list(iter_chunks(files, 40))
    plan = make_plan(files, game_filter, SPLIT_FRACTIONS, 150)
    games = sum(len(c.games) for c in chunks)
    assert games > 0 and _fast_games(ChunkEncoder(plan, "rust"), chunks) == games


def test_build_of_the_real_files_is_byte_identical(real_data, tmp_path):
    """Crazyhouse, null moves, variations, a FEN start, an empty header line, …"""
    loose = GameFilter(standard_only=False, standard_start_only=False)
    _same_build(tmp_path, real_data, loose)


def _random_game(rng: random.Random, white: str, black: str, plies: int) -> str:
    board = chess.Board()
    game = chess.pgn.Game({"Event": "Rated Blitz game", "White": white, "Black": black})
    node = game
    for _ in range(plies):
        moves = list(board.legal_moves)
        if not moves:
            break
        promotions = [m for m in moves if m.promotion]
        castles = [m for m in moves if board.is_castling(m)]
        move = rng.choice(promotions or castles or moves)
        node = node.add_variation(move)
        board.push(move)
    game.headers["Result"] = board.result(claim_draw=False)
    return str(game)


_H = '[Event "Rated Blitz game"]\n[White "{w}"]\n[Black "{b}"]\n[Result "{r}"]\n'
_EDGE = [
    # plain games (fast path), then each oddity
    _H + "\n1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 1-0\n",
    _H + "\n1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 4. Ba4\n",  # cut mid-movetext
    _H + "\n1. e4 e5 2. Nf3 1-0 Nc6 3. Bb5 a6 1-0\n",  # moves after a result
    '[FEN "4k3/8/8/8/8/8/8/R3K2R w KQ - 0 1"]\n'
    + _H
    + "\n1. O-O Kd7 2. Ra7+ Kc6 3. Kg2 Kb6 *\n",  # FEN start
    _H + "\n1. e4 e5 2. Ke3 Nc6 3. Bb5 a6 1-0\n",  # illegal move
    _H + "\n1. e4 e5 2. Nf3 -- 3. Bb5 a6 1-0\n",  # null move
    _H + "\n1. e4 1-0\n",  # too short
    _H + "\n1. e4 (1. d4 d5) e5 {a comment} 2. Nf3 $1 Nc6!? 3. Bb5 a6 1-0\n",  # variation
    _H + "\n1.e4 e5! 2.Nf3+ {[%clk 0:01:00]} Nc6?! 3.Bb5 $1 a6 1/2-1/2\n",  # glued tokens
    _H + "\n1. e4 e5\n2. Nf3 { two\nlines } Nc6 3. Bb5 a6 1-0\n",  # multi-line
    _H + "\n1. e4 e5 2. Nf3 Nc6\n; a line comment\n3. Bb5 a6 1-0\n",
    _H + "\n1. e4 e5 2. Nf3 Nc6\n% escape\n3. Bb5 a6 1-0\n",
    _H + "\n1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 4. e4e5 1-0\n",
    _H + "\n1. e4 d5 2. exd5 c6 3. dxc6 Qb6 4. cxb7 Qxb2 5. bxa8=Q Qxa1 6. Qxb8 *\n",
    _H + "\n1. e4 d5 2. exd5 c6 3. dxc6 Qb6 4. cxb7 Qxb2 5. bxa8Q Qxa1 *\n",  # no "="
    _H + "\n1. e4 d5 2. exd5 c6 3. dxc6 Qb6 4. cxb7 Qxb2 5. bxa8 Qxa1 *\n",  # no piece
    _H + "\n1. e4 a6 2. e5 d5 3. exd6 e6 4. d7+ Ke7 5. dxc8=N+ Qxc8 *\n",  # en passant
    _H + "\n1. e4 e5 2. Nf3 Nc6 3. Bc4 Bc5 4. Kg1 a6 1-0\n",  # castling as a king move
    _H + "\n1. e4 e5 2. Nf3 Nc6 3. Bc4 Bc5 4. 0-0 a6 1-0\n",  # zeros
    _H + "\n1. e4 e5 2. Ngf3 Nc6 3. Bc4 Bc5 4. O-O a6 1-0\n",  # wrong hint
    _H + "\n1. e4 e5 2. Nxf3 Nc6 3. Bc4 Bc5 4. O-O a6 1-0\n",  # capture mark, no capture
    _H + "\n\n1. e4 e5 2. Nf3 Nc6 1-0\n",  # two blank lines
    _H.replace("\n", "\r\n") + "\r\n1. e4 e5 2. Nf3 Nc6 1-0\r\n",  # CRLF
    _H + '[Site "a \\"quoted\\" site"]\n\n1. e4 e5 2. Nf3 Nc6 1-0\n',
    _H + '[White "{b}"]\n\n1. e4 e5 2. Nf3 Nc6 1-0\n',  # a repeated tag
    _H + "[Broken tag\n\n1. e4 e5 2. Nf3 Nc6 1-0\n",
    '[Event "x"]\n\n[White "{w}"]\n[Black "{b}"]\n\n1. e4 e5 2. Nf3 Nc6 1-0\n',
    _H + '[Variant "Standard"]\n\n1. e4 e5 2. Nf3 Nc6 1-0\n',
    _H + '[Variant "From Position"]\n\n1. e4 e5 2. Nf3 Nc6 1-0\n',
    _H + '[SetUp "1"]\n\n1. e4 e5 2. Nf3 Nc6 1-0\n',
    _H + '[Variant "Crazyhouse"]\n\n1. e4 e5 2. Nf3 Nc6 1-0\n',
    _H + "\n1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6 4. Qxf7# 1-0\n",
    _H + "\n1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6 4. Qxf7# Ke7 1-0\n",  # a move after mate
    "1. e4 e5 2. Nf3 Nc6 1-0\n",  # no headers
]


def _edge_dump(path) -> None:
    names = ["Alice", "Bob", "Chloé", "Dan"]
    texts = []
    for i, template in enumerate(_EDGE):
        w, b = names[i % 4], names[(i + 1) % 4]
        texts.append(template.replace("{w}", w).replace("{b}", b).replace("{r}", "1-0"))
    rng = random.Random(3)
    for i in range(24):
        texts.append(_random_game(rng, names[i % 4], names[(i + 2) % 4], rng.randint(40, 300)))
    data = "\n".join(t.rstrip("\n") + "\n" for t in texts).encode()
    latin = _H.replace("{w}", "Jos\xe9").replace("{b}", "Bob").replace("{r}", "1-0")
    latin_game = (latin + "\n1. d4 d5 2. c4 e6 0-1\n").encode("latin-1")
    path.write_bytes(data + b"\n" + latin_game)


def test_edge_cases_give_identical_chunk_results(tmp_path):
    path = tmp_path / "edge.pgn"
    _edge_dump(path)
    game_filter = GameFilter(standard_start_only=False, min_plies=4)
    plan = make_plan([path], game_filter, SPLIT_FRACTIONS, 150)
    rust, slow = ChunkEncoder(plan, "rust"), ChunkEncoder(plan, "python-chess")
    assert rust.reader is not None and slow.reader is None
    chunks = list(iter_chunks([path], 7))
    for chunk in chunks:
        assert rust(chunk) == slow(chunk)
    total = [slow(c) for c in chunks]
    skipped = sum((r.stats.skipped for r in total), start=type(total[0].stats.skipped)())
    assert {"unterminated", "illegal_move", "null_move", "too_short", "variant"} <= set(skipped)
    assert sum(r.stats.games_kept for r in total) > 30
    # the random games (castling, promotions, checks) and the plain ones took the fast path
    assert _fast_games(rust, chunks) >= 30


def test_rust_parser_without_the_package_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rust_pgn_reader_python_binding", None)
    assert rust_reader.load_reader() is None
    with pytest.raises(ImportError, match="rust_pgn_reader_python_binding"):
        rust_reader.resolve_parser("rust")
    assert rust_reader.resolve_parser("auto") is None  # python-chess then
    with pytest.raises(ValueError, match="unknown parser"):
        rust_reader.resolve_parser("shakmaty")
    path = tmp_path / "edge.pgn"
    _edge_dump(path)
    with pytest.raises(ImportError, match="parser='rust'"):
        build.build(tmp_path / "out", path, GameFilter(), options=_options("rust"))
    assert not (tmp_path / "out").exists()
    plan = make_plan([path], GameFilter(), SPLIT_FRACTIONS, 150)
    with pytest.raises(ImportError):
        ChunkEncoder(plan, "rust")
    assert ChunkEncoder(plan, "auto").reader is None
