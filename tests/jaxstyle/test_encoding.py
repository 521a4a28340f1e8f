"""Encodings checked against python-chess on every position of real games."""

from __future__ import annotations

import random

import chess
import chess.pgn
import numpy as np
import pytest

from jaxstyle.chess import encoding
from tests.jaxstyle.samples import REAL_STANDARD_FILES


def real_positions(data_dir):
    """(board before the move, played move) for every mainline move of the real games."""
    pairs = []
    for name in REAL_STANDARD_FILES + ("anastasian-lewis.pgn",):
        with open(data_dir / name, encoding="utf-8-sig") as handle:
            while (game := chess.pgn.read_game(handle)) is not None:
                board = game.board()
                for move in game.mainline_moves():
                    if not move:  # anastasian-lewis: null move "Z0" ends the usable part
                        break
                    pairs.append((board.copy(stack=False), move))
                    board.push(move)
    return pairs


def random_game_positions(seed: int, games: int):
    """Positions of random playouts: they reach promotions, under-promotions, castling, e.p."""
    rng = random.Random(seed)
    boards = []
    for _ in range(games):
        board = chess.Board()
        while not board.is_game_over() and board.ply() < 300:
            boards.append(board.copy(stack=False))
            board.push(rng.choice(list(board.legal_moves)))
    return boards


def reference_planes(board: chess.Board) -> np.ndarray:
    """Maia-2 planes written square by square from python-chess' own mirror()."""
    view = board if board.turn == chess.WHITE else board.mirror()
    planes = np.zeros((18, 8, 8), dtype=np.uint8)
    for square, piece in view.piece_map().items():
        channel = piece.piece_type - 1 + (0 if piece.color == chess.WHITE else 6)
        planes[channel, chess.square_rank(square), chess.square_file(square)] = 1
    planes[12] = 1
    rights = [
        view.has_kingside_castling_rights(chess.WHITE),
        view.has_queenside_castling_rights(chess.WHITE),
        view.has_kingside_castling_rights(chess.BLACK),
        view.has_queenside_castling_rights(chess.BLACK),
    ]
    for i, right in enumerate(rights):
        planes[13 + i] = right
    if view.ep_square is not None:  # Maia-2's board_to_tensor: whenever ep_square is set
        planes[17, chess.square_rank(view.ep_square), chess.square_file(view.ep_square)] = 1
    return planes


@pytest.fixture(scope="module")
def positions(real_data):
    pairs = real_positions(real_data)
    assert len(pairs) > 700  # 9 real games plus the prefix of anastasian-lewis
    return pairs


def test_vocabulary_has_1880_unique_moves_split_as_in_maia2():
    assert len(encoding.MOVE_VOCAB) == encoding.VOCAB_SIZE == 1880
    assert len(set(encoding.MOVE_VOCAB)) == 1880
    assert encoding.vocabulary_summary() == {"queen_line": 1456, "knight": 336, "promotion": 88}
    # Maia-2 order: per square a1..h8 the queen moves then the knight moves, promotions last.
    a1_queen = chess.Board(None)
    a1_queen.set_piece_at(chess.A1, chess.Piece(chess.QUEEN, chess.WHITE))
    assert encoding.MOVE_VOCAB[:21] == tuple(m.uci() for m in a1_queen.legal_moves)
    assert set(encoding.MOVE_VOCAB[21:23]) == {"a1b3", "a1c2"}
    assert encoding.MOVE_VOCAB[1792:1796] == ("a7a8q", "a7a8r", "a7a8b", "a7a8n")
    assert encoding.MOVE_VOCAB[-1] == "h7g8n"


def test_every_played_move_of_real_games_maps_and_round_trips(positions):
    for board, move in positions:
        index = encoding.move_to_index(board, move)
        assert encoding.index_to_move(board, index) == move
        assert index in encoding.legal_move_indices(board)


def test_every_legal_move_of_every_real_position_maps_one_to_one(positions):
    for board, _ in positions:
        indices = encoding.legal_move_indices(board)
        assert len(set(indices.tolist())) == len(indices) == board.legal_moves.count()
        assert {encoding.index_to_move(board, int(i)) for i in indices} == set(board.legal_moves)


def test_planes_match_a_square_by_square_python_chess_reference(positions):
    for board, _ in positions:
        np.testing.assert_array_equal(encoding.board_planes(board), reference_planes(board))


def test_random_playouts_cover_promotions_castling_and_en_passant_for_both_colours():
    seen = {"promotion_w": 0, "promotion_b": 0, "under": 0, "castle": 0, "ep": 0}
    for board in random_game_positions(seed=7, games=25):
        indices = encoding.legal_move_indices(board)
        moves = {encoding.index_to_move(board, int(i)) for i in indices}
        assert moves == set(board.legal_moves)
        np.testing.assert_array_equal(encoding.board_planes(board), reference_planes(board))
        for move in board.legal_moves:
            if move.promotion:
                seen["promotion_w" if board.turn else "promotion_b"] += 1
                seen["under"] += move.promotion != chess.QUEEN
            seen["castle"] += board.is_castling(move)
            seen["ep"] += board.is_en_passant(move)
    assert all(count > 0 for count in seen.values()), seen


def test_queen_promotion_and_rook_move_to_the_same_square_have_distinct_indices():
    board = chess.Board("1k6/P7/8/8/8/8/8/R3K3 w - - 0 1")
    promo = encoding.move_to_index(board, chess.Move.from_uci("a7a8q"))
    board = chess.Board("1k6/R7/8/8/8/8/8/4K3 w - - 0 1")
    rook = encoding.move_to_index(board, chess.Move.from_uci("a7a8"))
    assert promo != rook
    assert encoding.MOVE_VOCAB[promo] == "a7a8q" and encoding.MOVE_VOCAB[rook] == "a7a8"


def test_black_to_move_encodes_exactly_like_the_colour_flipped_position(positions):
    for board, move in positions:
        if board.turn == chess.BLACK:
            flipped = board.mirror()
            np.testing.assert_array_equal(
                encoding.encode_board(board), encoding.encode_board(flipped)
            )
            np.testing.assert_array_equal(
                encoding.legal_move_indices(board), encoding.legal_move_indices(flipped)
            )
            mirrored = chess.Move(
                chess.square_mirror(move.from_square),
                chess.square_mirror(move.to_square),
                move.promotion,
            )
            assert encoding.move_to_index(board, move) == encoding.move_to_index(flipped, mirrored)


def test_en_passant_plane_is_set_after_every_double_push_as_in_maia2():
    board = chess.Board()
    board.push_san("e4")  # e3 is python-chess' ep_square; Black cannot capture, Maia-2 sets it
    assert board.ep_square == chess.E3 and not board.has_legal_en_passant()
    planes = encoding.board_planes(board)
    assert planes[17].sum() == 1 and planes[17, 5, 4] == 1
    board = chess.Board("rnbqkbnr/ppp1pppp/8/8/3pP3/8/PPPP1PPP/RNBQKBNR b KQkq e3 0 3")
    planes = encoding.board_planes(board)
    assert planes[17].sum() == 1
    assert planes[17, 5, 4] == 1  # Black to move: e3 seen from Black's side is e6


def test_pack_and_unpack_planes_are_inverse_and_batchable():
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 2, size=(5, 18, 8, 8), dtype=np.uint8)
    packed = encoding.pack_planes(planes)
    assert packed.shape == (5, 18, 8) and packed.dtype == np.uint8
    np.testing.assert_array_equal(encoding.unpack_planes(packed), planes)


def test_ragged_legal_indices_become_a_batch_mask():
    boards = [chess.Board(), chess.Board("4k3/8/8/8/8/8/8/4K2R w K - 0 1")]
    indices = [encoding.legal_move_indices(b) for b in boards]
    mask = encoding.ragged_to_mask(indices)
    assert mask.shape == (2, 1880) and mask.dtype == bool
    assert mask.sum(axis=1).tolist() == [20, boards[1].legal_moves.count()]
    np.testing.assert_array_equal(mask[0], encoding.legal_mask(boards[0]))


@pytest.mark.parametrize("move", [chess.Move.null(), chess.Move.from_uci("P@e4")])
def test_null_moves_and_drops_have_no_vocabulary_index(move):
    with pytest.raises(ValueError, match="no vocabulary index"):
        encoding.move_to_index(chess.Board(), move)


def test_index_outside_the_vocabulary_is_rejected():
    with pytest.raises(ValueError, match="outside"):
        encoding.index_to_move(chess.Board(), 1880)
