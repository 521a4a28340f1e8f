"""Style vectors at CPU scale (``make reproduce``): move matching, stylometry, latent space,
steering, on synthetic players whose true style θ and skill τ are known.

Steps (quick default: 50 players × 60 games; ``full=True``: the default 400-player generator
with 210 games per player, so that every player has 100 query games):

1. generate the synthetic games and build the tfds dataset (cached in ``workdir/data``);
2. train stages (a) base, (b) skills + style table with the STYLE-MODEL trainer
   (:func:`experiments.trainers.style.train`), export in ``workdir/train``;
3. evaluate (:func:`evaluate`): move matching on held-out games (base, style vector, and the
   synthetic player's own policy as the ceiling), the stylometry table (cosine and
   likelihood, pool size × query games, random-guess column), a linear probe from style
   vectors to θ and log τ (R² on held-out players), the 2-D projection, steering of
   capture rate / castling / knight usage along property deltas, and the weak → strong
   interpolation.

Reference vectors are the trained table rows (fitted on each player's *train* games), and
— a second cosine column — vectors refitted routing-only on each player's first
``refit_games`` train games exactly the way queries are fitted (same optimiser, steps and
start), so both sides of the cosine come from one procedure. Query vectors are fitted on
held-out games (``query_splits``: the reference and query splits together in the quick run,
the query split alone in the full one), so a query never sees the games its reference was
trained on. Writes ``results.json`` (with ``seconds_by_part``: data, train and each
evaluation part), ``table.md`` and ``plots/*.png`` under ``workdir``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

PAPER = {"stylometry_400_100": 0.998, "stylometry_47864_100": 0.944}

SETTINGS = {
    "quick": dict(
        generator=dict(num_players=50, games_per_player=60, max_plies=80, chunk_games=50),
        split=(0.5, 0.1, 0.4),
        pool_sizes=(10, 25, 50),
        query_games=(5, 10, 30),
        fit_steps=80,
        refit_games=20,
        likelihood_max_pool=25,
        likelihood_max_games=10,
        steer_lambdas=(-2.0, 0.0, 2.0, 4.0),
        steer_games=8,
        steer_plies=50,
        oracle_games=50,
    ),
    # full: 400 players × 210 games; a 0.5 query split gives every player 100+ query games.
    # Scoring all of them is out of a CPU's reach (fitting 400 players on 100 games each is
    # ~1.9M positions per epoch), so fits see at most ``fit_positions_per_query`` positions
    # drawn from the query's games, likelihood scores ``likelihood_max_positions`` of them,
    # and move matching reads each player's first ``mm_positions_per_player`` positions.
    "full": dict(
        generator=dict(games_per_player=210),
        split=(0.4, 0.1, 0.5),
        query_splits=("query",),
        pool_sizes=(50, 200, 400),
        query_games=(5, 30, 100),
        fit_steps=150,
        fit_batch=1024,
        fit_positions_per_query=384,
        refit_games=30,
        likelihood_max_pool=50,
        likelihood_max_games=5,
        likelihood_max_positions=64,
        mm_positions_per_player=100,
        steer_lambdas=(-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0),
        steer_games=16,
        steer_plies=80,
        oracle_games=300,
    ),
}  # fmt: skip

STEERED = {  # property → (feature whose players form P, what is measured)
    "capture": ("capture", "capture"),
    "castling": ("castle_early", "castled"),
    "knight usage": ("knight_move", "knight_move"),
}


# ---------------------------------------------------------------------------------------
# Data


def make_data(workdir: Path, generator: dict, split: tuple) -> tuple[Path, Path]:
    """``(games folder, tfds data dir)``; generation and build are cached and resumable.

    ``split``: per-player (train, reference, query) fractions of games. The reproduction
    keeps half of every player's games out of training, so query sets of 30 games exist
    (the dataset default is 80/10/10). A cached build with other fractions is rebuilt, and
    the run's stale ``train/`` folder removed with it.
    """
    import shutil

    from jaxstyle.chess import synthetic, tfds_builder

    games = workdir / "data"
    synthetic.generate(games, synthetic.GeneratorConfig(**generator), workers=2)
    data_dir = games / "tfds"
    if tfds_builder.is_prepared(data_dir):
        cached = tuple(tfds_builder.load_builder(data_dir).info.metadata["fractions"])
        if not np.allclose(cached, split):
            print(f"rebuilding {data_dir}: cached split {cached} != {tuple(split)}", flush=True)
            shutil.rmtree(data_dir)
            shutil.rmtree(workdir / "train", ignore_errors=True)
    tfds_builder.build_dataset(data_dir, games / "pgn", fractions=tuple(split))
    return games, data_dir


def load_split(data_dir: Path, split: str, rows=None) -> dict[str, np.ndarray]:
    """Records of ``split`` (all, or the record indices ``rows``) as arrays (``planes [N, 18,
    8, 8]``, ``legal_mask``, …), decoded 4096 at a time into preallocated arrays."""
    from jaxstyle.chess.batching import collate

    out: dict[str, np.ndarray] = {}
    rows = _rows(data_dir, split, rows)
    for start, records in _record_chunks(data_dir, split, rows):
        batch = collate(records)
        for k, v in batch.items():
            if k not in out:
                out[k] = np.empty((len(rows), *v.shape[1:]), v.dtype)
            out[k][start : start + len(v)] = v
    return out


def _rows(data_dir: Path, split: str, rows) -> np.ndarray:
    """``rows`` as int64 record indices, or every record of ``split`` when ``None``."""
    from jaxstyle.chess.tfds_builder import data_source

    return (
        np.arange(len(data_source(data_dir, split))) if rows is None else np.asarray(rows, np.int64)
    )


def _record_chunks(data_dir: Path, split: str, rows: np.ndarray, size: int = 4096):
    """``(start, decoded records)`` for ``rows`` of ``split``, ``size`` at a time."""
    from jaxstyle.chess.tfds_builder import data_source

    source = data_source(data_dir, split)
    for start in range(0, len(rows), size):
        yield start, source.__getitems__(rows[start : start + size].tolist())


def first_rows(data_dir: Path, split: str, per_player: int | None) -> np.ndarray | None:
    """Record indices of every player's first ``per_player`` records of ``split`` (its
    records are player-major, games in order); ``None`` when ``per_player`` is."""
    from jaxstyle.chess.batching import player_ranges

    if per_player is None:
        return None
    ranges = player_ranges(data_dir, split)
    return np.concatenate([np.arange(a, a + min(c, per_player)) for _, a, c in ranges])


def lazy_queries(data_dir: Path, splits, per_player: int | None = None):
    """:class:`~jaxstyle.stylometry.Queries` over ``splits`` (concatenated; each player's
    first ``per_player`` records of each, or all) that holds only the ``move``, ``player``
    and ``game`` columns and reads a selection's planes and legal masks when asked — the
    full run's query split would decode to ~6 GB, of which the fits use ~2%."""
    from jaxstyle import stylometry

    parts = [
        (split, _rows(data_dir, split, first_rows(data_dir, split, per_player))) for split in splits
    ]
    meta = concat(*(read_columns(data_dir, split, rows) for split, rows in parts))
    starts = np.cumsum([0] + [len(rows) for _, rows in parts])

    def reader(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        planes = legal = None
        for (split, rows), lo, hi in zip(parts, starts[:-1], starts[1:], strict=True):
            sel = np.flatnonzero((index >= lo) & (index < hi))
            if not len(sel):
                continue
            unique, inverse = np.unique(rows[index[sel] - lo], return_inverse=True)
            batch = load_split(data_dir, split, unique)  # read in record order
            if planes is None:
                planes = np.empty((len(index), *batch["planes"].shape[1:]), batch["planes"].dtype)
                legal = np.empty((len(index), *batch["legal_mask"].shape[1:]), bool)
            planes[sel], legal[sel] = batch["planes"][inverse], batch["legal_mask"][inverse]
        if planes is None:
            raise ValueError("no records selected")
        return planes, legal

    return stylometry.Queries(None, None, meta["move"], meta["player"], meta["game"], reader=reader)


def read_columns(data_dir: Path, split: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    """``{"move", "player", "game": int32 [len(rows)]}`` of the records ``rows`` of
    ``split``, without unpacking their planes or legal moves."""
    keys = ("move", "player", "game")
    out = {k: np.empty(len(rows), np.int32) for k in keys}
    for start, records in _record_chunks(data_dir, split, rows):
        for k in keys:
            out[k][start : start + len(records)] = [r[k] for r in records]
    return out


def concat(*splits: dict) -> dict:
    if len(splits) == 1:
        return splits[0]
    return {k: np.concatenate([s[k] for s in splits]) for k in splits[0]}


def truth_by_id(data_dir: Path, games: Path) -> tuple[list, list[str]]:
    """Ground-truth :class:`PlayerStyle` per dataset player id, and the archetype names."""
    from jaxstyle.chess import players as players_lib
    from jaxstyle.chess.tfds_builder import load_builder

    names = load_builder(data_dir).info.metadata["players"]
    config, styles = players_lib.load_ground_truth(games)
    by_name = {p.name: p for p in styles}
    return [by_name[n] for n in names], list(config.archetypes)


# ---------------------------------------------------------------------------------------
# Evaluation pieces


def move_matching(
    model, vectors, held_out: dict, oracle: dict[int, float], population: dict | None = None
) -> dict:
    """Top-1 legal-masked accuracy on held-out positions: base, style vector, ceiling (and,
    given ``population``, the style-free ceiling of the population mixture's top move)."""
    from jaxstyle.training import score_moves

    p, m = held_out["planes"], held_out["legal_mask"]
    base, _ = score_moves(model, p, m, held_out["move"])
    routing = np.asarray(vectors)[held_out["player"]]
    style, _ = score_moves(model, p, m, held_out["move"], routing=routing)
    hit_base = base == held_out["move"]
    hit_style = style == held_out["move"]
    ids = np.unique(held_out["player"])
    gain = np.array(
        [hit_style[held_out["player"] == i].mean() - hit_base[held_out["player"] == i].mean()
         for i in ids]
    )  # fmt: skip
    weights = np.array([(held_out["player"] == i).sum() for i in ids])
    ceiling = float(np.average([oracle[int(i)] for i in ids], weights=weights))
    extra = {}
    if population is not None:
        extra["population_ceiling"] = float(
            np.average([population[int(i)] for i in ids], weights=weights)
        )
    return {
        **extra,
        "base": float(hit_base.mean()),
        "style": float(hit_style.mean()),
        "ceiling": ceiling,
        "per_player_gain_mean": float(gain.mean()),
        "players_gaining": float((gain > 0).mean()),
        "positions": int(len(hit_base)),
    }


def refit_reference(model, data_dir: Path, reference: np.ndarray, s: dict) -> np.ndarray:
    """``[P, R]``: every player's vector fitted routing-only on its first ``refit_games``
    train games (all it has when fewer), with the query fit's steps, batch, position cap,
    rate and start; rows of players without train games keep ``reference``."""
    from jaxstyle import stylometry
    from jaxstyle.chess.batching import player_ranges

    k = s["refit_games"]
    ranges = player_ranges(data_dir, "train")
    longest = 100 * k  # records the first k games span (a player moves ≤ 80 times a game)
    train = lazy_queries(data_dir, ("train",), per_player=longest)
    index, group = [], []
    for p, _, count in ranges:
        rows = np.flatnonzero(train.player == p)
        games = np.unique(train.game[rows])
        if count > longest and len(games) <= k:
            raise ValueError(f"player {p}'s first {k} train games span over {longest} records")
        index.append(rows[np.isin(train.game[rows], games[:k])])
        group.append(np.full(len(index[-1]), p))
    index, group = stylometry.cap_per_group(
        np.concatenate(index), np.concatenate(group), s.get("fit_positions_per_query")
    )
    have = np.unique(group)
    fitted = stylometry.fit_queries(
        model, train, index, np.searchsorted(have, group), len(have),
        steps=s["fit_steps"], learning_rate=0.1, key=jax.random.PRNGKey(1),
        batch_size=s.get("fit_batch", 512),
    )  # fmt: skip
    out = np.array(reference, np.float32)
    out[have] = np.asarray(fitted)
    return out


def oracle_ceiling(
    games: Path, truth: list, max_games: int, *, population: bool = False
) -> dict[int, float] | tuple[dict[int, float], dict[int, float]]:
    """Per player id: expected top-1 agreement of the player's own policy with its moves,
    ``E_x[max_m π_p(m | x)]``, over its positions in the first ``max_games`` games.

    With ``population``, also (second dict) the expected agreement of the best *style-free*
    predictor that knows every true policy: the top move of the population mixture
    ``π̄ = mean_q π_q``, i.e. ``E_x[π_p(argmax_m π̄(m | x) | x)]``. Their difference bounds
    what a style vector can add over a perfect base network.
    """
    import chess

    from jaxstyle.chess.evaluator import FastEvaluator, analyse_moves
    from jaxstyle.chess.pgn import iter_games
    from jaxstyle.chess.play import repertoire_move
    from jaxstyle.chess.players import load_ground_truth
    from jaxstyle.chess.style_features import FEATURES, move_features

    config, _ = load_ground_truth(games)
    ids = {p.name: i for i, p in enumerate(truth)}
    theta = np.array([p.theta for p in truth], np.float64)  # [P, F]
    inv_tau = 1.0 / np.array([p.tau for p in truth])
    book_col = FEATURES.index("book")
    own, mix, counts = np.zeros(len(truth)), np.zeros(len(truth)), np.zeros(len(truth))
    evaluator = FastEvaluator()
    for n, game in enumerate(iter_games(games / "pgn")):
        if n >= max_games:
            break
        board = chess.Board()
        for uci in game.moves:
            name = game.white if board.turn == chess.WHITE else game.black
            if name in ids:
                table = analyse_moves(board)
                deltas = evaluator.deltas(table)
                who = range(len(truth)) if population else [ids[name]]
                probs = _policies(
                    config, truth, who, table, deltas, move_features(table, None),
                    theta, inv_tau, book_col, repertoire_move,
                )  # fmt: skip
                p = ids[name]
                mine = probs[p]
                own[p] += mine.max()
                if population:
                    mix[p] += mine[np.argmax(np.mean([probs[q] for q in who], axis=0))]
                counts[p] += 1
            board.push(chess.Move.from_uci(uci))

    def per_player(sums):
        overall = sums.sum() / max(counts.sum(), 1)
        return {i: float(sums[i] / counts[i]) if counts[i] else overall for i in range(len(truth))}

    return (per_player(own), per_player(mix)) if population else per_player(own)


def _policies(config, truth, who, table, deltas, phi, theta, inv_tau, book_col, book_fn):
    """``{q: π_q [moves]}`` for the players ``who`` (softmax of ``−Δ/τ_q + θ_q·φ_q``; the
    ``book`` feature is each player's own repertoire move in the opening)."""
    out = {}
    for q in who:
        logits = -deltas * inv_tau[q] + phi @ theta[q]
        if table.board.ply() < config.opening_plies:
            book = book_fn(truth[q], table, deltas, config.book_tolerance)
            if book is not None:
                logits = logits + theta[q, book_col] * np.array([m == book for m in table.moves])
        e = np.exp(logits - logits.max())
        out[q] = e / e.sum()
    return out


def probe(vectors: np.ndarray, truth: list, seed: int = 0) -> dict:
    """Held-out R² of linear probes from style vectors to θ (per feature) and log τ."""
    from jaxstyle.chess.style_features import FEATURES
    from jaxstyle.stylometry import linear_probe

    theta = np.array([p.theta for p in truth])
    log_tau = np.log([p.tau for p in truth])[:, None]
    train = np.random.default_rng(seed).permutation(len(truth)) < int(0.75 * len(truth))
    r2_theta = linear_probe(vectors, theta, train)
    r2_tau = float(linear_probe(vectors, log_tau, train)[0])
    return {
        "theta_r2_mean": float(r2_theta.mean()),
        "theta_r2": dict(zip(FEATURES, map(float, r2_theta))),
        "log_tau_r2": r2_tau,
        "held_out_players": int((~train).sum()),
    }


def steering(model, vectors: np.ndarray, truth: list, s: dict) -> dict:
    """Property vs λ for every :data:`STEERED` property, all in one batched self-play."""
    from jaxstyle import steering as st
    from jaxstyle.chess.style_features import FEATURES

    theta = np.array([p.theta for p in truth])
    start = vectors.mean(0)
    lambdas = np.asarray(s["steer_lambdas"])
    steered = []
    for feature, _ in STEERED.values():
        col = theta[:, FEATURES.index(feature)]
        delta = st.property_delta(vectors, col >= np.quantile(col, 0.75))
        steered.append(st.steer(start, delta, lambdas))
    games = st.self_play(
        model,
        np.concatenate(steered),
        start,
        games_per_vector=s["steer_games"],
        max_plies=s["steer_plies"],
    )
    props = st.game_properties(games, s["steer_games"])
    out = {"lambdas": lambdas.tolist()}
    for k, (name, (_, measure)) in enumerate(STEERED.items()):
        rows = slice(k * len(lambdas), (k + 1) * len(lambdas))
        out[name] = {"measure": measure, "values": props[measure][rows].tolist()}
        if name == "castling":
            out[name]["castle_ply"] = props["castle_ply"][rows].tolist()
    return out


def interpolation(model, vectors: np.ndarray, truth: list, held_out: dict) -> dict:
    """Agreement with the strongest player's held-out moves along weak → strong."""
    from jaxstyle import steering as st

    taus = np.array([p.tau for p in truth])
    weak, strong = int(taus.argmax()), int(taus.argmin())
    rows = held_out["player"] == strong
    positions = {k: held_out[k][rows] for k in ("planes", "legal_mask", "move")}
    lambdas = np.linspace(0.0, 1.0, 6)
    agree = st.strong_agreement(model, vectors[weak], vectors[strong], positions, lambdas)
    return {
        "lambdas": lambdas.tolist(),
        "agreement": agree.tolist(),
        "monotone": bool(np.all(np.diff(agree) >= -1e-9)),
        "weak": truth[weak].name,
        "strong": truth[strong].name,
        "weak_tau": float(taus[weak]),
        "strong_tau": float(taus[strong]),
        "positions": int(rows.sum()),
    }


def evaluate(model, reference, data_dir: Path, games: Path, out: Path, s: dict) -> dict:
    """Every measurement of the reproduction on a trained model whose players' style
    vectors are ``reference [P, R]`` (row = dataset player id); writes the plots."""
    from jaxstyle import steering as st
    from jaxstyle import stylometry

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    truth, archetypes = truth_by_id(data_dir, games)
    splits = s.get("query_splits", ("reference", "query"))
    mm_rows = lambda split: first_rows(data_dir, split, s.get("mm_positions_per_player"))
    # move matching reads each player's first positions of its held-out games (or all)
    held_out = concat(*(load_split(data_dir, k, mm_rows(k)) for k in ("reference", "query")))
    queries = lazy_queries(data_dir, splits)
    vectors = np.asarray(reference, np.float32)
    steps = tqdm(total=7, desc="style evaluation", unit="part")
    results, seconds = {}, {}
    tic = time.perf_counter()
    oracle, population = oracle_ceiling(games, truth, s["oracle_games"], population=True)
    results["move_matching"] = move_matching(model, vectors, held_out, oracle, population)
    steps.update()
    seconds["move_matching"], tic = time.perf_counter() - tic, time.perf_counter()
    refit = refit_reference(model, data_dir, vectors, s)
    steps.update()
    seconds["refit_reference"], tic = time.perf_counter() - tic, time.perf_counter()
    table = stylometry.stylometry_table(
        model,
        vectors,
        queries,
        pool_sizes=s["pool_sizes"],
        query_games=s["query_games"],
        steps=s["fit_steps"],
        likelihood_max_pool=s["likelihood_max_pool"],
        likelihood_max_games=s.get("likelihood_max_games"),
        batch_size=s.get("fit_batch", 512),
        max_positions_per_query=s.get("fit_positions_per_query"),
        likelihood_max_positions=s.get("likelihood_max_positions"),
        key=jax.random.PRNGKey(0),
        alternatives={"refit": refit},
    )
    results["stylometry"] = table
    steps.update()
    seconds["stylometry"], tic = time.perf_counter() - tic, time.perf_counter()
    results["probe"] = probe(vectors, truth)
    results["probe_refit"] = probe(refit, truth)
    labels = np.array([int(np.argmax(p.weights)) for p in truth])
    fig = stylometry.projection_figure(vectors, labels, archetypes, "style vectors (PCA)")
    fig.savefig(plots / "style_space.png", dpi=100)
    steps.update()
    results["steering"] = steer = steering(model, vectors, truth, s)
    fig = st.steering_figure(
        steer["lambdas"],
        {f"{name} ({steer[name]['measure']})": steer[name]["values"] for name in STEERED},
        ylabel="rate in generated games",
        title="steering s̄ + λΔ_P",
    )
    fig.savefig(plots / "steering.png", dpi=100)
    steps.update()
    seconds["probe_and_steering"], tic = time.perf_counter() - tic, time.perf_counter()
    results["interpolation"] = inter = interpolation(model, vectors, truth, held_out)
    fig = st.interpolation_figure(
        inter["lambdas"],
        {f"{inter['weak']} → {inter['strong']}": inter["agreement"]},
        title="weak → strong interpolation",
    )
    fig.savefig(plots / "interpolation.png", dpi=100)
    steps.update()
    mm = results["move_matching"]
    fig = _bar_figure(
        {"base": mm["base"], "style vector": mm["style"], "own policy (ceiling)": mm["ceiling"]}
    )
    fig.savefig(plots / "move_matching.png", dpi=100)
    steps.update()
    steps.close()
    seconds["interpolation"] = time.perf_counter() - tic
    results["seconds_by_part"] = seconds
    results["plots"] = [
        f"plots/{n}.png" for n in ("move_matching", "style_space", "steering", "interpolation")
    ]
    return results


def _bar_figure(values: dict):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.bar(list(values), list(values.values()), color=["grey", "tab:blue", "tab:green"])
    for i, v in enumerate(values.values()):
        ax.text(i, v, f"{100 * v:.1f}%", ha="center", va="bottom")
    ax.set_ylabel("top-1 move matching (held-out games)")
    ax.set_title("move matching")
    fig.tight_layout()
    return fig


def headline(results: dict) -> str:
    rows = [r for r in results["stylometry"]["rows"] if r["cosine"] is not None]
    best = max(rows, key=lambda r: (r["pool"], r["query_games"]))
    mm, pr = results["move_matching"], results["probe"]
    rules = [("cosine", "cosine, table reference"), ("cosine_refit", "cosine, refitted reference")]
    rules.append(("likelihood", "likelihood"))
    scores = ", ".join(
        f"{100 * best[k]:.1f}% ({name})" for k, name in rules if best.get(k) is not None
    )
    return (
        f"Stylometry top-1 {scores} among {best['pool']} synthetic "
        f"players with {best['query_games']} query games (random {100 * best['random']:.1f}%); "
        f"paper: 99.8% at 400 players / 100 games, 94.4% at 47,864. Move matching "
        f"{100 * mm['base']:.1f}% base → {100 * mm['style']:.1f}% with style vectors "
        f"(ceiling {100 * mm['ceiling']:.1f}%); probe R² θ {pr['theta_r2_mean']:.2f}, "
        f"log τ {pr['log_tau_r2']:.2f}."
    )


def table_md(results: dict) -> str:
    mm, pr, inter = results["move_matching"], results["probe"], results["interpolation"]
    steer = results["steering"]
    lines = [
        "### Stylometry (top-1 identification)",
        "",
        results["stylometry"]["table_md"],
        "",
        "### Move matching (held-out games)",
        "",
        "| model | top-1 |",
        "|---|---:|",
        f"| base network | {100 * mm['base']:.1f}% |",
        f"| style vectors | {100 * mm['style']:.1f}% |",
        f"| each player's own policy (ceiling) | {100 * mm['ceiling']:.1f}% |",
        f"| population mixture's top move (style-free ceiling) | "
        f"{100 * mm.get('population_ceiling', float('nan')):.1f}% |",
        "",
        f"Per-player gain {100 * mm['per_player_gain_mean']:+.1f} points; "
        f"{100 * mm['players_gaining']:.0f}% of players gain.",
        "",
        f"### Latent space: probe R² on {pr['held_out_players']} held-out players",
        "",
        f"θ (mean over features) {pr['theta_r2_mean']:.2f}; log τ {pr['log_tau_r2']:.2f} "
        "(trained table rows)",
        "",
        f"θ {results['probe_refit']['theta_r2_mean']:.2f}; "
        f"log τ {results['probe_refit']['log_tau_r2']:.2f} (refitted vectors)",
        "",
        "### Steering (property of generated games vs λ)",
        "",
        "| property | " + " | ".join(f"λ={x:g}" for x in steer["lambdas"]) + " |",
        "|---|" + "---:|" * len(steer["lambdas"]),
    ]
    for name in STEERED:
        values = " | ".join(f"{v:.3f}" for v in steer[name]["values"])
        lines.append(f"| {name} ({steer[name]['measure']}) | {values} |")
    lines += [
        "",
        f"### Interpolation {inter['weak']} (τ={inter['weak_tau']:.2f}) → {inter['strong']} "
        f"(τ={inter['strong_tau']:.2f}): agreement with the strong player's moves",
        "",
        " → ".join(f"{100 * a:.1f}%" for a in inter["agreement"])
        + f" (monotone: {inter['monotone']})",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Entry point


def train_model(games: Path, workdir: Path, full: bool) -> tuple:
    """Stages (a)–(c) with the STYLE-MODEL trainer (``quick`` or ``cpu`` config).

    Returns ``(model, reference [P, R], trainer results)``: the reference vectors are the
    trained table rows, with the few-shot vectors (stage c, fitted on their train games)
    in the rows of the players held out of stages (a) and (b).
    """
    from experiments.configs import style as style_configs
    from experiments.trainers import style as style_trainer
    from jaxstyle import model_io
    from jaxstyle.chess.tfds_builder import load_builder

    config = style_configs.get_config("cpu" if full else "quick")
    config.data.dir = str(games)
    trained = style_trainer.train(config, workdir)
    model = model_io.load(trained["model_path"])
    reference = np.array(model.style_vectors())
    fewshot = np.load(Path(trained["model_path"]) / "fewshot_vectors.npz")
    ids = {n: i for i, n in enumerate(load_builder(games / "tfds").info.metadata["players"])}
    for name, vector in zip(fewshot["players"], fewshot["vectors"]):
        reference[ids[str(name)]] = vector
    return model, reference, trained


def reproduce(workdir: Path, *, full: bool = False) -> dict:
    """Runs the comparison (see the module docstring); returns the contract dict."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    s = SETTINGS["full" if full else "quick"]
    tic = time.perf_counter()
    games, data_dir = make_data(workdir, s["generator"], s["split"])
    data_seconds, tic_train = time.perf_counter() - tic, time.perf_counter()
    model, reference, trained = train_model(games, workdir / "train", full)
    train_seconds = time.perf_counter() - tic_train
    results = evaluate(model, reference, data_dir, games, workdir, s)
    results["trainer_metrics"] = trained["metrics"]
    results["seconds_by_part"].update(data=data_seconds, train=train_seconds)
    results.update(
        headline=headline(results),
        table_md=table_md(results),
        paper=PAPER,
        full=full,
        seconds=time.perf_counter() - tic,
    )
    (workdir / "table.md").write_text(results["table_md"] + "\n")
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    return results
