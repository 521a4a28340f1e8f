"""A tiny UCI engine for tests: scores captures +300 cp, checks +50 cp, other moves 0 cp.

Run as ``python fake_uci_engine.py``; it speaks just enough UCI for python-chess'
``SimpleEngine.analyse(..., multipv=N)``.
"""

import sys

import chess


def score(board: chess.Board, move: chess.Move) -> int:
    return 300 * board.is_capture(move) + 50 * board.gives_check(move)


def main() -> None:
    board = chess.Board()
    multipv = 1
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        command = parts[0]
        if command == "uci":
            print("id name FakeEngine")
            print("option name MultiPV type spin default 1 min 1 max 500")
            print("uciok")
        elif command == "isready":
            print("readyok")
        elif command == "setoption" and parts[2] == "MultiPV":
            multipv = int(parts[4])
        elif command == "position":
            if parts[1] == "startpos":
                board = chess.Board()
                moves = parts[3:] if len(parts) > 2 else []
            else:
                end = parts.index("moves") if "moves" in parts else len(parts)
                board = chess.Board(" ".join(parts[2:end]))
                moves = parts[end + 1 :]
            for uci in moves:
                board.push_uci(uci)
        elif command == "go":
            ranked = sorted(board.legal_moves, key=lambda m: (-score(board, m), m.uci()))
            for k, move in enumerate(ranked[:multipv], start=1):
                print(f"info depth 1 multipv {k} score cp {score(board, move)} pv {move.uci()}")
            print(f"bestmove {ranked[0].uci()}")
        elif command == "quit":
            return
        sys.stdout.flush()


if __name__ == "__main__":
    main()
