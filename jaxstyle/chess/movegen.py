"""Legal moves of many positions at once, in NumPy, from the mirrored bitboards.

The build needs every position's legal-move set (the dataset's ``legal`` feature); asking
python-chess position by position costs more than parsing the game. This module computes
the same sets for a whole chunk of games at once on the Maia-2 view (side to move = White,
see :mod:`jaxstyle.chess.encoding`): pseudo-legal moves from attack tables, then the
king-safety test on the board after each move that could expose the king, vectorised over
all candidate moves. Standard chess only (castling e1g1/e1c1 with the rook on h1/a1);
Chess960 and positions from a FEN keep python-chess' generator. Tests compare it with
python-chess, the authority on legality, on thousands of random-playout positions.

Sliding attacks use *hyperbola quintessence* on ``uint64`` arrays (NumPy wraps unsigned
arithmetic modulo :math:`2^{64}`): for a line mask :math:`M` through square :math:`s`
(file, diagonal or anti-diagonal, :math:`s` excluded), occupancy :math:`o` and the byte swap
:math:`\\sigma` (a vertical mirror of the board, which reverses the order of the squares
of these lines),

.. math::

    A(s) = \\big[(o M - 2^s) \\oplus \\sigma(\\sigma(o M) - 2^{s \\oplus 56})\\big]\\, M .

Ranks are not reversed by :math:`\\sigma`; their attacks come from a ``[8 files, 256
occupancies]`` table instead.
"""

from __future__ import annotations

import numpy as np

_U = np.uint64
_ONE = _U(1)
_SQ = np.left_shift(_ONE, np.arange(64, dtype=_U))


def _bit(rank: int, file: int) -> int:
    return 1 << (rank * 8 + file) if 0 <= rank < 8 and 0 <= file < 8 else 0


def _line(square: int, dr: int, df: int) -> int:
    """Both rays of the line through ``square`` with direction ``(dr, df)``, square excluded."""
    r, f = divmod(square, 8)
    out = 0
    for sign in (1, -1):
        rr, ff = r + sign * dr, f + sign * df
        while 0 <= rr < 8 and 0 <= ff < 8:
            out |= _bit(rr, ff)
            rr, ff = rr + sign * dr, ff + sign * df
    return out


def _rank_table() -> np.ndarray:
    """``uint64 [8, 256]``: attacks along a rank byte from ``file`` given the byte's occupancy."""
    table = np.zeros((8, 256), dtype=_U)
    for file in range(8):
        for occ in range(256):
            attacks = 0
            for step in (1, -1):
                f = file + step
                while 0 <= f < 8:
                    attacks |= 1 << f
                    if occ >> f & 1:
                        break
                    f += step
            table[file, occ] = attacks
    return table


def _tables():
    knight = np.zeros(64, dtype=_U)
    king = np.zeros(64, dtype=_U)
    pawn = np.zeros(64, dtype=_U)  # squares a white pawn on s attacks
    lines = {name: np.zeros(64, dtype=_U) for name in ("file", "diag", "anti", "rank")}
    for s in range(64):
        r, f = divmod(s, 8)
        jumps = [(1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1)]
        knight[s] = sum(_bit(r + a, f + b) for a, b in jumps)
        king[s] = sum(_bit(r + a, f + b) for a in (-1, 0, 1) for b in (-1, 0, 1) if a or b)
        pawn[s] = _bit(r + 1, f - 1) | _bit(r + 1, f + 1)
        for name, (dr, df) in {"file": (1, 0), "diag": (1, 1), "anti": (1, -1)}.items():
            lines[name][s] = _line(s, dr, df)
        lines["rank"][s] = _line(s, 0, 1)
    return knight, king, pawn, lines


_KNIGHT, _KING, _PAWN, _MASKS = _tables()
_FILE, _RANK, _DIAG, _ANTI = (_MASKS[k] for k in ("file", "rank", "diag", "anti"))
_SQ_FLIP = _SQ[np.arange(64) ^ 56]  # the byte swap of each square's bit
_RANK8 = _rank_table()


def _hyperbola(squares: np.ndarray, occupied: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Attacks along the line ``masks[squares]`` (see the module docstring)."""
    mask = masks[squares]
    o = occupied & mask
    forward = o - _SQ[squares]
    reverse = o.byteswap() - _SQ_FLIP[squares]
    return (forward ^ reverse.byteswap()) & mask


def _rank_attacks(squares: np.ndarray, occupied: np.ndarray) -> np.ndarray:
    shift = (squares & 56).astype(_U)
    byte = ((occupied >> shift) & _U(255)).astype(np.intp)
    return _RANK8[squares & 7, byte] << shift


def bishop_attacks(squares: np.ndarray, occupied: np.ndarray) -> np.ndarray:
    """Diagonal attacks ``uint64 [m]`` from ``squares [m]`` given ``occupied [m]``."""
    return _hyperbola(squares, occupied, _DIAG) | _hyperbola(squares, occupied, _ANTI)


def rook_attacks(squares: np.ndarray, occupied: np.ndarray) -> np.ndarray:
    """File and rank attacks ``uint64 [m]`` from ``squares [m]`` given ``occupied [m]``."""
    return _hyperbola(squares, occupied, _FILE) | _rank_attacks(squares, occupied)


def attacked(squares, occupied, opp: np.ndarray) -> np.ndarray:
    """Whether ``squares [m]`` are attacked by the opponent's pieces ``opp [m, 6]``
    (pawn … king, Black's, moving down the board) given ``occupied [m]``."""
    hit = _PAWN[squares] & opp[:, 0]
    hit |= _KNIGHT[squares] & opp[:, 1]
    hit |= _KING[squares] & opp[:, 5]
    hit |= bishop_attacks(squares, occupied) & (opp[:, 2] | opp[:, 4])
    hit |= rook_attacks(squares, occupied) & (opp[:, 3] | opp[:, 4])
    return hit != 0


def _bits(boards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, square) of every set bit of ``boards [m]`` uint64, rows ascending.

    Only the non-zero bytes are unpacked: target sets are sparse (a few bits of 64).
    """
    flat = np.ascontiguousarray(boards, dtype="<u8").view(np.uint8)
    nonzero = np.flatnonzero(flat)
    item, bit = np.nonzero(np.unpackbits(flat[nonzero, None], axis=1, bitorder="little"))
    byte = nonzero[item]
    return byte >> 3, ((byte & 7) << 3) | bit


def _square_of(single: np.ndarray) -> np.ndarray:
    """Square of a one-bit board (a power of two is exact in float64)."""
    return np.frexp(single.astype(np.float64))[1].astype(np.int64) - 1


def _pseudo_targets(piece: int, sq, rows, own, opp, occ, ep) -> np.ndarray:
    """Target sets ``uint64 [m]`` of own pieces of type ``piece`` on ``sq [m]``."""
    if piece == 0:
        one = _SQ[np.minimum(sq + 8, 63)] & ~occ[rows]
        one = np.where(sq < 56, one, _U(0))
        two = np.where(
            (sq // 8 == 1) & (one != 0), _SQ[np.minimum(sq + 16, 63)] & ~occ[rows], _U(0)
        )
        return one | two | (_PAWN[sq] & (opp[rows] | ep[rows]))
    if piece == 1:
        return _KNIGHT[sq] & ~own[rows]
    if piece == 5:
        return _KING[sq] & ~own[rows]
    o = occ[rows]
    if piece == 2:
        attacks = bishop_attacks(sq, o)
    elif piece == 3:
        attacks = rook_attacks(sq, o)
    else:
        attacks = bishop_attacks(sq, o) | rook_attacks(sq, o)
    return attacks & ~own[rows]


def _pin_lines(king_sq: np.ndarray, opp: np.ndarray) -> np.ndarray:
    """``uint64 [n]``: union of the king's lines (file, rank, diagonals) that hold an
    opponent slider able to attack along them; only moves from these lines can pin."""
    straight = opp[:, 3] | opp[:, 4]
    diagonal = opp[:, 2] | opp[:, 4]
    out = np.zeros(len(king_sq), dtype=_U)
    for masks, sliders in ((_FILE, straight), (_RANK, straight), (_DIAG, diagonal)):
        line = masks[king_sq]
        out |= np.where((line & sliders) != 0, line, _U(0))
    line = _ANTI[king_sq]
    return out | np.where((line & diagonal) != 0, line, _U(0))


def legal_keys(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Legal moves of positions given as mirrored bitboards.

    Args:
      planes: ``uint64 [n, 18]`` Maia-2 planes as bitboards (own pieces 0–5, opponent's
        6–11, own castling 13–14, en-passant square 17), side to move = White.

    Returns:
      ``(rows, keys)``: ``int64 [m]`` position index and move key
      ``(from << 9) | (to << 3) | promotion`` of every legal move (unordered).
    """
    own_t, opp_t = planes[:, 0:6], planes[:, 6:12]
    own = np.bitwise_or.reduce(own_t, axis=1)
    opp = np.bitwise_or.reduce(opp_t, axis=1)
    occ = own | opp
    ep = planes[:, 17]
    king_sq = _square_of(np.where(own_t[:, 5] != 0, own_t[:, 5], _ONE))

    rows_list, froms_list, targets_list, types_list = [], [], [], []
    for piece in range(6):
        rows, sq = _bits(own_t[:, piece])
        rows_list.append(rows)
        froms_list.append(sq)
        targets_list.append(_pseudo_targets(piece, sq, rows, own, opp, occ, ep))
        types_list.append(np.full(len(rows), piece, dtype=np.int8))
    inst_row = np.concatenate(rows_list)
    inst_from = np.concatenate(froms_list)
    inst_type = np.concatenate(types_list)
    which, to = _bits(np.concatenate(targets_list))
    row, frm, kind = inst_row[which], inst_from[which], inst_type[which]

    # only a king move, an en-passant capture, any move out of check, or a move from a
    # line through the king that holds an opponent slider moving along it (a possible
    # pin) can leave the king attacked
    to_bb, from_bb = _SQ[to], _SQ[frm]
    is_ep = (kind == 0) & (to_bb == ep[row]) & ((to_bb & occ[row]) == 0)
    in_check_now = attacked(king_sq, occ, opp_t)
    risky = (
        (kind == 5) | is_ep | in_check_now[row] | ((_pin_lines(king_sq, opp_t)[row] & from_bb) != 0)
    )
    r = np.flatnonzero(risky)
    rr, r_to, r_to_bb = row[r], to[r], to_bb[r]
    ep_victim = np.where(is_ep[r], _SQ[np.maximum(r_to - 8, 0)], _U(0))
    removed = r_to_bb | ep_victim
    occ_after = (occ[rr] & ~from_bb[r] & ~ep_victim) | r_to_bb
    opp_after = opp_t[rr] & ~removed[:, None]
    king_after = np.where(kind[r] == 5, r_to, king_sq[rr])
    legal = np.ones(len(row), dtype=bool)
    legal[r] = ~attacked(king_after, occ_after, opp_after)
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
        rows_c = np.flatnonzero(ok)
        for sq in safe:
            squares = np.full(len(rows_c), sq)
            rows_c = rows_c[~attacked(squares, occ[rows_c], opp_t[rows_c])]
        keys.append(np.full(len(rows_c), (4 << 9) | (target << 3), dtype=np.int64))
        rows_out.append(rows_c)
    return np.concatenate(rows_out), np.concatenate(keys)
