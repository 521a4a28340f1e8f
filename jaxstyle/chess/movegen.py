"""Legal moves of many positions at once, in NumPy, from the mirrored bitboards.

The build needs every position's legal-move set (the dataset's ``legal`` feature); asking
python-chess position by position costs more than parsing the game. This module computes
the same sets for a whole game at once on the Maia-2 view (side to move = White, see
:mod:`jaxstyle.chess.encoding`): pseudo-legal moves from attack tables and ray scans, then
the king-safety test on the board after each move, vectorised over all candidate moves.
Standard chess only (castling e1g1/e1c1 with the rook on h1/a1); Chess960 and positions
from a FEN keep python-chess' generator. Tests compare it with python-chess, the
authority on legality, on thousands of random-playout positions.
"""

from __future__ import annotations

import numpy as np

_U = np.uint64
_ONE = _U(1)
_DIRS = {"n": (1, 0), "s": (-1, 0), "e": (0, 1), "w": (0, -1)}
_DIRS |= {"ne": (1, 1), "nw": (1, -1), "se": (-1, 1), "sw": (-1, -1)}
_POSITIVE = {"n", "e", "ne", "nw"}  # the first blocker is the lowest set bit
_ORTHO = ("n", "s", "e", "w")
_DIAG = ("ne", "nw", "se", "sw")


def _bit(rank: int, file: int) -> int:
    return 1 << (rank * 8 + file) if 0 <= rank < 8 and 0 <= file < 8 else 0


def _tables():
    rays = {d: np.zeros(64, dtype=_U) for d in _DIRS}
    knight = np.zeros(64, dtype=_U)
    king = np.zeros(64, dtype=_U)
    pawn = np.zeros(64, dtype=_U)  # squares a white pawn on s attacks
    for s in range(64):
        r, f = divmod(s, 8)
        for d, (dr, df) in _DIRS.items():
            bb, rr, ff = 0, r + dr, f + df
            while 0 <= rr < 8 and 0 <= ff < 8:
                bb |= _bit(rr, ff)
                rr, ff = rr + dr, ff + df
            rays[d][s] = bb
        jumps = [(1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1)]
        knight[s] = sum(_bit(r + a, f + b) for a, b in jumps)
        king[s] = sum(_bit(r + a, f + b) for a in (-1, 0, 1) for b in (-1, 0, 1) if a or b)
        pawn[s] = _bit(r + 1, f - 1) | _bit(r + 1, f + 1)
    return rays, knight, king, pawn


_RAYS, _KNIGHT, _KING, _PAWN = _tables()
_LINES = np.bitwise_or.reduce(np.stack(list(_RAYS.values())), axis=0)  # queen rays of a square
_SQ = np.left_shift(_ONE, np.arange(64, dtype=_U))


def _index32(x: np.ndarray) -> np.ndarray:
    """Index of the highest set bit of values < 2**32 (exact: float64 holds them)."""
    return np.frexp(x.astype(np.float64))[1].astype(np.int64) - 1


def _msb(x: np.ndarray) -> np.ndarray:
    hi = x >> _U(32)
    return np.where(hi != 0, 32 + _index32(hi), _index32(x & _U(0xFFFFFFFF)))


def _lsb(x: np.ndarray) -> np.ndarray:
    return _msb(x & (~x + _ONE))


def _first_blocker(direction: str, blockers: np.ndarray) -> np.ndarray:
    """Square of the first blocker along ``direction`` (``blockers`` != 0 required)."""
    return _lsb(blockers) if direction in _POSITIVE else _msb(blockers)


def _ray_targets(direction: str, squares: np.ndarray, occupied: np.ndarray) -> np.ndarray:
    ray = _RAYS[direction][squares]
    blockers = ray & occupied
    hit = blockers != 0
    first = _first_blocker(direction, np.where(hit, blockers, _ONE))
    return np.where(hit, ray & ~_RAYS[direction][first], ray)


def _slider_attacks(squares, occupied, directions) -> np.ndarray:
    out = np.zeros(len(squares), dtype=_U)
    for d in directions:
        out |= _ray_targets(d, squares, occupied)
    return out


def attacked(squares, occupied, opp: np.ndarray) -> np.ndarray:
    """Whether ``squares [m]`` are attacked by the opponent's pieces ``opp [m, 6]``
    (pawn … king, Black's, moving down the board) given ``occupied [m]``."""
    hit = (_PAWN[squares] & opp[:, 0]) != 0
    hit |= (_KNIGHT[squares] & opp[:, 1]) != 0
    hit |= (_KING[squares] & opp[:, 5]) != 0
    diagonal = opp[:, 2] | opp[:, 4]
    straight = opp[:, 3] | opp[:, 4]
    hit |= (_slider_attacks(squares, occupied, _DIAG) & diagonal) != 0
    hit |= (_slider_attacks(squares, occupied, _ORTHO) & straight) != 0
    return hit


def _bits(boards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, square) of every set bit of ``boards [m]`` uint64."""
    bits = np.unpackbits(
        boards.astype("<u8").view(np.uint8).reshape(-1, 8), axis=1, bitorder="little"
    )
    return np.nonzero(bits)


def legal_keys(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Legal moves of positions given as mirrored bitboards.

    Args:
      planes: ``uint64 [n, 18]`` Maia-2 planes as bitboards (own pieces 0–5, opponent's
        6–11, own castling 13–14, en-passant square 17), side to move = White.

    Returns:
      ``(rows, keys)``: ``int64 [m]`` position index and move key
      ``(from << 9) | (to << 3) | promotion`` of every legal move (unordered).
    """
    n = len(planes)
    own_t, opp_t = planes[:, 0:6], planes[:, 6:12]
    own = np.bitwise_or.reduce(own_t, axis=1)
    opp = np.bitwise_or.reduce(opp_t, axis=1)
    occ = own | opp
    ep = planes[:, 17]
    king_sq = _lsb(np.where(own_t[:, 5] != 0, own_t[:, 5], _ONE))

    rows_list, froms_list, targets_list, types_list = [], [], [], []
    for piece in range(6):
        rows, squares = _bits(own_t[:, piece])
        sq = squares.astype(np.int64)
        if piece == 0:
            one = _SQ[np.minimum(sq + 8, 63)] & ~occ[rows]
            one = np.where(sq < 56, one, _U(0))
            two = np.where(
                (sq // 8 == 1) & (one != 0), _SQ[np.minimum(sq + 16, 63)] & ~occ[rows], _U(0)
            )
            targets = one | two | (_PAWN[sq] & (opp[rows] | ep[rows]))
        elif piece == 1:
            targets = _KNIGHT[sq] & ~own[rows]
        elif piece == 5:
            targets = _KING[sq] & ~own[rows]
        else:
            dirs = {2: _DIAG, 3: _ORTHO, 4: _DIAG + _ORTHO}[piece]
            targets = _slider_attacks(sq, occ[rows], dirs) & ~own[rows]
        rows_list.append(rows)
        froms_list.append(sq)
        targets_list.append(targets)
        types_list.append(np.full(len(rows), piece))
    inst_row = np.concatenate(rows_list)
    inst_from = np.concatenate(froms_list)
    inst_type = np.concatenate(types_list)
    which, to = _bits(np.concatenate(targets_list))
    row, frm, kind, to = inst_row[which], inst_from[which], inst_type[which], to.astype(np.int64)

    # board after the move, seen by the mover's king
    to_bb, from_bb = _SQ[to], _SQ[frm]
    is_ep = (kind == 0) & (to_bb == ep[row]) & ((to_bb & occ[row]) == 0)
    ep_victim = np.where(is_ep, _SQ[np.maximum(to - 8, 0)], _U(0))
    removed = to_bb | ep_victim
    occ_after = (occ[row] & ~from_bb & ~ep_victim) | to_bb
    opp_after = opp_t[row] & ~removed[:, None]
    king_after = np.where(kind == 5, to, king_sq[row])
    # only a king move, an en-passant capture, a piece on a line from the king (maybe
    # pinned) or any move out of check can leave the king attacked
    in_check_now = attacked(king_sq, occ, opp_t)
    risky = (kind == 5) | is_ep | in_check_now[row] | ((_LINES[king_sq[row]] & from_bb) != 0)
    legal = np.ones(len(row), dtype=bool)
    legal[risky] = ~attacked(king_after[risky], occ_after[risky], opp_after[risky])
    row, frm, to, kind = row[legal], frm[legal], to[legal], kind[legal]

    base = (frm << 9) | (to << 3)
    promote = (kind == 0) & (to >= 56)
    keys = [base[~promote]]
    rows_out = [row[~promote]]
    for promo in (5, 4, 3, 2):
        keys.append(base[promote] | promo)
        rows_out.append(row[promote])

    # castling (standard chess: king e1, rooks h1/a1 while the right is held)
    in_check = in_check_now | ((own_t[:, 5] & _SQ[4]) == 0)
    for flag_plane, path, safe, target in ((13, (5, 6), (5, 6), 6), (14, (1, 2, 3), (3, 2), 2)):
        ok = (planes[:, flag_plane] != 0) & ~in_check
        for sq in path:
            ok &= (occ & _SQ[sq]) == 0
        for sq in safe:
            ok &= ~attacked(np.full(n, sq), occ, opp_t)
        rows_c = np.nonzero(ok)[0]
        keys.append(np.full(len(rows_c), (4 << 9) | (target << 3), dtype=np.int64))
        rows_out.append(rows_c)
    return np.concatenate(rows_out), np.concatenate(keys)
