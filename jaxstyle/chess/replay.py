"""Test input at scale, offline: real games replayed under many player names and dates.

No corpus of human games can be downloaded here, so tests and the benchmark build a
Lichess-style ``.pgn.zst`` by replaying real, shipped games (their exact movetext, so
python-chess parses real moves) under synthetic headers: ``num_players`` names whose game
counts follow a Zipf-like law (a few very active players, a long tail, as on Lichess),
random dates, Elo and unique ``Site`` URLs. ``max_plies`` cuts the movetext to keep builds
short. The file is written as one zstd stream (like a monthly dump), in bounded memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import chess
import numpy as np
import zstandard

from jaxstyle.chess.pgn import GameRecord

_TEMPLATE = (
    '[Event "Rated Blitz game"]\n[Site "https://lichess.org/{site}"]\n[Date "{date}"]\n'
    '[White "{white}"]\n[Black "{black}"]\n[Result "{result}"]\n[WhiteElo "{white_elo}"]\n'
    '[BlackElo "{black_elo}"]\n[TimeControl "300+0"]\n\n{moves} {result}\n\n'
)


def movetext(game: GameRecord, max_plies: int | None = None) -> str:
    """SAN movetext of a game's mainline (first ``max_plies`` plies)."""
    moves = [chess.Move.from_uci(u) for u in game.moves[:max_plies]]
    return chess.Board(game.fen).variation_san(moves)


def write_replayed_dump(
    path: str | os.PathLike,
    games: Sequence[GameRecord],
    num_games: int,
    num_players: int,
    *,
    seed: int = 0,
    max_plies: int | None = None,
    zipf: float = 1.1,
    level: int = 3,
) -> Path:
    """Writes ``num_games`` replayed games to ``path`` (``.pgn.zst``) and returns the path.

    Args:
      path: output file.
      games: real games to replay (standard start position).
      num_games: games to write.
      num_players: size of the player pool; White and Black are drawn independently with
        weights ``1 / rank**zipf`` (never the same player twice in one game).
      seed: the file is a pure function of the arguments.
      max_plies: cut each replayed game after this many plies (``None``: whole games).
      zipf: exponent of the activity law.
      level: zstd level.
    """
    if num_players < 2:
        raise ValueError("num_players must be at least 2")
    rng = np.random.default_rng(seed)
    texts = [movetext(g, max_plies) for g in games]
    weights = 1.0 / np.arange(1, num_players + 1) ** zipf
    weights /= weights.sum()
    path = Path(path)
    with open(path, "wb") as raw, zstandard.ZstdCompressor(level=level).stream_writer(raw) as out:
        for start in range(0, num_games, 4096):
            n = min(4096, num_games - start)
            white = rng.choice(num_players, size=n, p=weights)
            black = rng.choice(num_players, size=n, p=weights)
            black = np.where(black == white, (black + 1) % num_players, black)
            source = rng.integers(len(texts), size=n)
            elo = rng.integers(800, 2600, size=(n, 2))
            day = rng.integers(0, 28 * 12 * 8, size=n)
            parts = []
            for i in range(n):
                year, rest = divmod(int(day[i]), 28 * 12)
                month, mday = divmod(rest, 28)
                parts.append(
                    _TEMPLATE.format(
                        site=f"r{seed}x{start + i:09d}",
                        date=f"{2013 + year}.{month + 1:02d}.{mday + 1:02d}",
                        white=f"player{int(white[i]):06d}",
                        black=f"player{int(black[i]):06d}",
                        result="*",
                        white_elo=int(elo[i, 0]),
                        black_elo=int(elo[i, 1]),
                        moves=texts[int(source[i])],
                    )
                )
            out.write("".join(parts).encode())
    return path
