"""Optional fast path of stage A: the Rust PGN reader for the plain games, python-chess for
the rest.

``rust_pgn_reader_python_binding`` (shakmaty inside) parses a chunk's games with all their
positions ~40× faster than python-chess. Stage A
(:class:`jaxstyle.chess.build_encode.ChunkEncoder`) uses it only for games whose reading is
unambiguous, so that the records are byte-identical to those of the python-chess path, and
hands every other game to :func:`jaxstyle.chess.pgn.parse_game_recorded` (python-chess
stays the authority). A game takes the fast path when:

* its header part is only well-formed tag lines (python-chess' ``TAG_REGEX``), so the
  headers below are those :class:`~jaxstyle.chess.pgn._GameVisitor` would see; games the
  header check rejects are skipped with its reason right away, as python-chess does;
* it is standard chess from the start position: no ``FEN`` / ``SetUp`` header, ``Variant``
  absent or ``Standard`` (where python-chess records with ``clean_castling=False`` and
  :mod:`~jaxstyle.chess.movegen` makes the legal moves);
* its movetext is only SAN moves (promotions spelled out, ``O-O`` castling), move numbers,
  ``{…}`` comments, NAGs and ``!?`` marks, separated by ASCII blanks, with no blank line,
  and ends with the one result token (so cut games, moves after a result, variations, null
  moves, ``;`` / ``%`` comments all go to python-chess);
* the Rust reader found it valid, with equal headers, and every move it played is the one
  python-chess would read from the SAN token (same count, piece, destination, promotion
  and disambiguation hints).

The positions then come from the reader's arrays (:func:`game_positions`), vectorised, in
exactly the form :class:`~jaxstyle.chess.records.PositionRecorder` records them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import chess
import chess.pgn
import numpy as np

from jaxstyle.chess import records
from jaxstyle.chess.pgn import HeaderCheck, record_from_headers
from jaxstyle.chess.pgn_split import GameText
from jaxstyle.chess.sources import decode_pgn

PARSERS = ("auto", "rust", "python-chess")
"""Values of :attr:`jaxstyle.chess.build.BuildOptions.parser`."""

_MODULE = "rust_pgn_reader_python_binding"


def load_reader():
    """The Rust reader module, or None when it is not installed."""
    try:
        import rust_pgn_reader_python_binding as reader  # noqa: PLC0415
    except ImportError:
        return None
    return reader


def resolve_parser(parser: str):
    """The reader module for ``parser`` (None: python-chess only).

    Raises:
      ValueError: an unknown ``parser``.
      ImportError: ``parser="rust"`` without the Rust package installed.
    """
    if parser not in PARSERS:
        raise ValueError(f"unknown parser {parser!r}; use one of {PARSERS}")
    if parser == "python-chess":
        return None
    reader = load_reader()
    if reader is None and parser == "rust":
        raise ImportError(
            f"parser='rust' needs the {_MODULE} package (pip install "
            f"rust-pgn-reader-python-binding, see constraints.txt); use parser='auto' or "
            f"'python-chess' to build without it"
        )
    return reader


# --- which games may take the fast path --------------------------------------------------

_TAG = chess.pgn.TAG_REGEX
_SEP = r"[ \t\r\n]"
_SAN = r"(?:O-O-O|O-O|[NBRQK][a-h]?[1-8]?x?[a-h][1-8]|[a-h](?:x[a-h])?(?:[2-7]|[18]=?[NBRQ]))"
_MOVE = rf"{_SAN}[+#]?[!?]{{0,2}}"
_WORD = rf"(?:[0-9]+\.(?:\.\.)?(?:{_MOVE})?|{_MOVE}|\$[0-9]+|[!?]{{1,2}})"
_MOVETEXT = re.compile(rf"{_SEP}*(?:{_WORD}{_SEP}+)*(?:1-0|0-1|1/2-1/2|\*){_SEP}*")
_COMMENT = re.compile(r"\{[^{}]*\}")
_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")
_LEADING_BLANK = re.compile(r"[ \t\r]*\n")
_BLANKS = re.compile(r"[ \t\r]*")
_SAN_PARTS = re.compile(r"(O-O-O|O-O)|([NBRQK])?([a-h])?([1-8])?x?([a-h])([1-8])(?:=?([NBRQ]))?")
_PIECE_CODE = np.zeros(256, dtype=np.int64)
_PIECE_CODE[[ord(c) for c in "PNBRQK"]] = np.arange(1, 7)


def _codes(column: tuple[str, ...], fill: str) -> np.ndarray:
    """The first character of each string of a SAN group column (``fill`` for ""), as
    ``int64`` character codes."""
    text = "".join([c[:1] or fill for c in column]).encode("ascii")
    return np.frombuffer(text, dtype=np.uint8).astype(np.int64)


@dataclasses.dataclass
class Candidate:
    """A game that may take the fast path: its text, python-chess' headers, its SAN tokens
    as ``(castle, piece, file, rank, dest file, dest rank, promotion)`` groups."""

    offset: int
    text: str
    headers: dict[str, str]
    sans: list[tuple[str, ...]]


def headers_of(game: GameText) -> tuple[str, int, dict[str, str], bool] | None:
    """``(decoded text, length of its header part, headers, blank)`` when the header part
    is only well-formed tag lines and single blank lines (then ``headers`` are exactly the
    ones python-chess reads; ``blank``: the part ends with a blank line), else None."""
    if game.header_end == 0:
        return None
    text = decode_pgn(game.data)
    head = decode_pgn(game.data[: game.header_end])
    if not head.endswith("\n") or not text.startswith(head):
        return None
    headers, blank = {}, False
    for line in head[:-1].split("\n"):
        match = _TAG.match(line)
        if match is not None:
            headers[match.group(1)] = match.group(2)
            blank = False
        elif blank or not _BLANKS.fullmatch(line):  # python-chess skips one blank line
            return None
        else:
            blank = True
    return text, len(head), headers, blank


def is_standard_start(headers: dict[str, str]) -> bool:
    """Standard chess from the start position, as python-chess reads these headers."""
    no_setup = "FEN" not in headers and "SetUp" not in headers
    return no_setup and headers.get("Variant", "Standard") == "Standard"


def plain_sans(movetext: str, skip_blank: bool = True) -> list[tuple[str, ...]] | None:
    """The SAN tokens of a plain terminated movetext (see the module docstring), or None.

    ``movetext``: the text after the header part; python-chess skips one blank line there
    (``skip_blank``: when the header part did not end with one), and a later blank line
    would end the game.
    """
    body = movetext.rstrip(" \t\r\n")
    lead = _LEADING_BLANK.match(body) if skip_blank else None
    if lead:
        body = body[lead.end() :]
    if _LEADING_BLANK.match(body) or _BLANK_LINE.search(body):
        return None
    bare = _COMMENT.sub(" ", body) if "{" in body else body
    if _MOVETEXT.fullmatch(bare) is None:
        return None
    return _SAN_PARTS.findall(bare)


# --- the Rust result → records -------------------------------------------------------------


def _bitboards(boards: np.ndarray) -> np.ndarray:
    """``uint8 [n, 64]`` boards → ``uint64 [n, 8]`` (P N B R Q K, white, black) as
    :class:`~jaxstyle.chess.records.PositionRecorder` records them."""
    n = len(boards)
    kind = np.where(boards > 6, boards - 6, boards)
    masks = np.empty((n, 8, 64), dtype=bool)
    for t in range(6):
        np.equal(kind, t + 1, out=masks[:, t])
    np.greater_equal(boards, 1, out=masks[:, 6])
    masks[:, 6] &= boards <= 6
    np.greater(boards, 6, out=masks[:, 7])
    return np.packbits(masks, axis=-1, bitorder="little").view("<u8").reshape(n, 8)


def _uci_table() -> list[str]:
    """``move.uci()`` of every ``(from << 9) | (to << 3) | promotion`` key."""
    table = [""] * (1 << 15)
    for frm in range(64):
        for to in range(64):
            for promotion in (0, chess.KNIGHT, chess.BISHOP, chess.ROOK, chess.QUEEN):
                move = chess.Move(frm, to, promotion or None)
                table[(frm << 9) | (to << 3) | promotion] = move.uci()
    return table


_UCI = _uci_table()


@dataclasses.dataclass
class RustChunk:
    """The Rust reader's arrays of the candidates of one chunk (one reader chunk)."""

    move_offsets: np.ndarray
    position_offsets: np.ndarray
    boards: np.ndarray  # uint8 [positions, 64]
    castling: np.ndarray
    en_passant: np.ndarray
    turn: np.ndarray
    from_sq: np.ndarray
    to_sq: np.ndarray
    promotion: np.ndarray
    ok: np.ndarray  # bool per candidate: the fast path holds
    bitboards: np.ndarray | None = None  # uint64 [positions, 8], see _bitboards
    ep: np.ndarray | None = None  # int64 [positions]: python-chess' ep_square or -1
    move_key: np.ndarray | None = None  # int64 [moves]: records.move_key


def parse_candidates(reader, candidates: Sequence[Candidate]) -> RustChunk | None:
    """One Rust call for all candidates; None when its games do not line up with them."""
    parsed = reader.parse_games_from_strings([c.text for c in candidates], num_threads=1)
    if len(parsed) != len(candidates) or parsed.num_chunks != 1:
        return None
    ch = parsed.chunks[0]
    mo = ch.move_offsets.astype(np.int64)
    po = ch.position_offsets.astype(np.int64)
    if len(mo) != len(candidates) + 1 or np.any(po[1:] - po[:-1] != mo[1:] - mo[:-1] + 1):
        return None
    out = RustChunk(
        move_offsets=mo,
        position_offsets=po,
        boards=ch.boards.reshape(-1, 64),
        castling=ch.castling,
        en_passant=ch.en_passant.astype(np.int64),
        turn=ch.turn,
        from_sq=ch.from_squares.astype(np.int64),
        to_sq=ch.to_squares.astype(np.int64),
        promotion=ch.promotions.astype(np.int64),
        ok=np.asarray(ch.valid, dtype=bool).copy(),
    )
    errors, headers = ch.parse_errors, ch.headers
    counts = mo[1:] - mo[:-1]
    for i, cand in enumerate(candidates):
        if errors[i] is not None or headers[i] != cand.headers or counts[i] != len(cand.sans):
            out.ok[i] = False
    _check_moves(out, candidates, counts)
    out.bitboards = _bitboards(out.boards)
    ep_file = out.en_passant
    out.ep = np.where(ep_file < 0, -1, ep_file + np.where(out.turn, 40, 16))
    out.move_key = (out.from_sq << 9) | (out.to_sq << 3) | np.maximum(out.promotion, 0)
    return out


def _check_moves(rc: RustChunk, candidates: Sequence[Candidate], counts: np.ndarray) -> None:
    """Clears ``ok`` of every game where a Rust move is not what python-chess reads from
    its SAN token (piece, destination, promotion, disambiguation hints, castling)."""
    use = [i for i, c in enumerate(candidates) if rc.ok[i]]
    if not use:
        return
    sans = [s for i in use for s in candidates[i].sans]
    if not sans:
        return
    moves = np.concatenate([np.arange(rc.move_offsets[i], rc.move_offsets[i + 1]) for i in use])
    game = np.repeat(np.asarray(use), counts[use])
    ply = moves - rc.move_offsets[game]
    white = ply % 2 == 0
    castle, piece, hint_file, hint_rank, dest_file, dest_rank, promo = (
        _codes(column, fill) for column, fill in zip(zip(*sans), "-P--aa-")
    )
    is_castle = castle != ord("-")
    long_castle = is_castle & (castle == ord("O")) & (np.array([len(s[0]) for s in sans]) == 5)
    piece = _PIECE_CODE[piece]
    piece[is_castle] = 6
    hint_file = np.where(hint_file == ord("-"), -1, hint_file - ord("a"))
    hint_rank = np.where(hint_rank == ord("-"), -1, hint_rank - ord("1"))
    dest = (dest_file - ord("a")) + 8 * (dest_rank - ord("1"))
    back = np.where(white, 0, 56)
    dest[is_castle] = np.where(long_castle, 2, 6)[is_castle] + back[is_castle]
    promo = np.where(promo == ord("-"), -1, _PIECE_CODE[promo])
    frm, to = rc.from_sq[moves], rc.to_sq[moves]
    board_piece = rc.boards[rc.position_offsets[game] + ply, frm].astype(np.int64)
    mover = np.where(white, board_piece, board_piece - 6)
    good = (
        (to == dest)
        & (mover == piece)
        & (rc.promotion[moves] == promo)
        & ((hint_file < 0) | (frm % 8 == hint_file))
        & ((hint_rank < 0) | (frm // 8 == hint_rank))
        & (~is_castle | (frm == 4 + back))
        & (white == rc.turn[rc.position_offsets[game] + ply])
    )
    bad_games = np.unique(game[~good])
    rc.ok[bad_games] = False


def game_record(cand: Candidate, rc: RustChunk, i: int, file_name: str, ordinal: int):
    """The :class:`~jaxstyle.chess.pgn.GameRecord` python-chess would make of candidate ``i``."""
    lo, hi = rc.move_offsets[i], rc.move_offsets[i + 1]
    moves = tuple(map(_UCI.__getitem__, rc.move_key[lo:hi].tolist()))
    return record_from_headers(cand.headers, file_name, ordinal, chess.STARTING_FEN, moves)


def game_positions(rc: RustChunk, i: int, colors: frozenset[bool]) -> records.GamePositions:
    """Candidate ``i``'s positions where a colour of ``colors`` is to move, as arrays equal
    to what :class:`~jaxstyle.chess.records.PositionRecorder` records."""
    lo, hi = rc.move_offsets[i], rc.move_offsets[i + 1]
    start = rc.position_offsets[i]
    turn = rc.turn[start : start + (hi - lo)]
    if colors == {chess.WHITE, chess.BLACK}:
        plies = np.arange(hi - lo)
    elif colors:
        plies = np.flatnonzero(turn == (chess.WHITE in colors))
    else:
        plies = np.zeros(0, dtype=np.int64)
    pos = start + plies
    return records.GamePositions(
        color=turn[plies],
        ply=plies,
        bitboards=rc.bitboards[pos],
        castling=rc.castling[pos],
        ep=rc.ep[pos],
        move_key=rc.move_key[lo + plies],
        legal_keys=[],
        legal_count=[],
    )


def candidates_of(
    games: Sequence[GameText], header_check: HeaderCheck
) -> tuple[list[Candidate], dict[int, str]]:
    """The fast-path candidates among ``games`` and the header-check skip reasons
    (offset → reason) of the games whose well-formed headers fail ``header_check`` (the
    reason python-chess gives them, without reading their movetext)."""
    cands, rejected = [], {}
    for offset, game in enumerate(games):
        read = headers_of(game)
        if read is None:
            continue
        text, head_len, headers, blank = read
        reason = header_check(headers)
        if reason is not None:
            rejected[offset] = reason
            continue
        if not is_standard_start(headers):
            continue
        sans = plain_sans(text[head_len:], skip_blank=not blank)
        if sans is None:
            continue
        cands.append(Candidate(offset, text, headers, sans))
    return cands, rejected
