"""Test inputs shared by several test modules: real-file names, a PGN template, a fake engine."""

from __future__ import annotations

import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"
REAL_STANDARD_FILES = (
    "kasparov-deep-blue-1997.pgn",
    "molinari-bordais-1979.pgn",
    "nepomniachtchi-liren-game1.pgn",
    "chessbase-empty-line.pgn",
)
FAKE_ENGINE = [sys.executable, str(Path(__file__).parent / "fake_uci_engine.py")]

GAME = """[Event "Rated Blitz game"]
[Site "https://lichess.org/{site}"]
[White "{white}"]
[Black "{black}"]
[Result "1-0"]
[WhiteElo "{elo}"]
[BlackElo "1500"]
[TimeControl "{tc}"]

{moves} 1-0

"""


def game(site="a1", white="alice", black="bob", elo=1500, tc="300+0", moves="1. e4 e5 2. Nf3"):
    """One Lichess-style PGN game as text (ends with a blank line)."""
    return GAME.format(site=site, white=white, black=black, elo=elo, tc=tc, moves=moves)
