"""Stylometry and the latent space of style vectors: who played these games?

A *query* is a set of games by one unknown player. Its style vector is fitted on those
games alone, routing only, everything else frozen (MHR-z, :func:`jaxstyle.training.
fit_style_vectors`). Two rules then name the player among ``P`` candidates whose
*reference* vectors ``r_p`` are known (rows of the trained table ``Z``):

* **cosine** — ``argmax_p cos(s_q, r_p)``, with ``cos(a, b) = a·b / (‖a‖ ‖b‖)``;
* **likelihood** — ``argmax_p 1/|q| Σ_{i∈q} log π(m_i | x_i; r_p)``: the query's moves scored
  under every candidate's vector (Maia-individual's rule). All candidates are evaluated in
  one jitted call per batch of positions (``lax.map`` over candidate chunks of a ``vmap``),
  never in a Python loop over candidates.

:func:`stylometry_table` gives top-1 accuracy over pool size × query games with the
random-guess rate ``1/P``. :func:`linear_probe` fits a ridge map from style vectors to the
synthetic players' true θ and log τ on some players and reports R² on held-out ones;
:func:`projection_figure` draws the vectors' first two principal components coloured by
archetype.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import training


@jax.jit
def cosine_similarity(query: jax.Array, reference: jax.Array) -> jax.Array:
    """``[Q, P] float32`` cosine between ``query [Q, R]`` and ``reference [P, R]``."""
    q = query / jnp.maximum(jnp.linalg.norm(query, axis=-1, keepdims=True), 1e-12)
    r = reference / jnp.maximum(jnp.linalg.norm(reference, axis=-1, keepdims=True), 1e-12)
    return q @ r.T


def identify_by_cosine(query, reference) -> np.ndarray:
    """``int [Q]``: index of the nearest reference vector of every query vector."""
    return np.asarray(jnp.argmax(cosine_similarity(jnp.asarray(query), jnp.asarray(reference)), -1))


_LOGLIK_CACHE: dict = {}


def _loglik_fn(graphdef, chunk: int):
    key = (graphdef, chunk)
    if key not in _LOGLIK_CACHE:

        @jax.jit
        def fn(params, planes, legal, moves, candidates):
            model = training.merge_model(graphdef, params)

            def one(z):  # z [R] → log p of every move in the batch under that vector
                routing = jnp.broadcast_to(z, (planes.shape[0], z.shape[0]))
                logits = model(planes, legal, routing=routing)
                return -training.masked_cross_entropy(logits, moves)

            return jax.lax.map(one, candidates, batch_size=chunk)  # [P, B]

        _LOGLIK_CACHE[key] = fn
    return _LOGLIK_CACHE[key]


def likelihood_matrix(
    model,
    planes,
    legal_mask,
    moves,
    group,
    num_groups: int,
    candidates,
    *,
    batch_size: int = 256,
    chunk: int = 16,
) -> np.ndarray:
    """``float32 [num_groups, P]``: mean log-likelihood of each group's moves under each of
    the ``candidates [P, R]`` style vectors.

    Positions stream in fixed batches of ``batch_size`` (the last one padded and masked);
    for each batch one jitted call scores it under all ``P`` candidates (``chunk`` at a time
    in a vmapped ``lax.map``).
    """
    group = np.asarray(group)
    graphdef, params = training.split_model(model)
    fn = _loglik_fn(graphdef, chunk)
    candidates = jnp.asarray(candidates, jnp.float32)
    total = np.zeros((num_groups, candidates.shape[0]), np.float64)
    n = len(group)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        args = [training._padded(a, start, stop, batch_size) for a in (planes, legal_mask, moves)]
        logp = np.asarray(fn(params, *args, candidates))[:, : stop - start]  # [P, b]
        np.add.at(total, group[start:stop], logp.T)
    counts = np.bincount(group, minlength=num_groups)
    return (total / np.maximum(counts, 1)[:, None]).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Queries:
    """Query positions of many players: every array is ``[N]`` (``planes [N, 18, 8, 8]
    uint8``, ``legal_mask [N, 1880] bool``); ``player`` is the true player id, ``game`` the
    game id.

    ``planes`` and ``legal_mask`` may be left ``None`` and ``reader`` given instead: a
    function of record indices ``[n]`` returning their ``(planes, legal_mask)``, so a split
    too large for memory (the full reproduction's query split decodes to ~6 GB) is selected
    from its small ``move``/``player``/``game`` columns and only the chosen positions read.
    """

    planes: np.ndarray | None
    legal_mask: np.ndarray | None
    move: np.ndarray
    player: np.ndarray
    game: np.ndarray
    reader: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None

    def __post_init__(self):
        if self.reader is None and (self.planes is None or self.legal_mask is None):
            raise ValueError("Queries needs planes and legal_mask, or a reader")

    @classmethod
    def from_batch(cls, batch: dict) -> Queries:
        return cls(
            *(np.asarray(batch[k]) for k in ("planes", "legal_mask", "move", "player", "game"))
        )

    def positions(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(planes, legal_mask, move)`` of the records ``index [n]``."""
        index = np.asarray(index, np.int64)
        if self.reader is not None:
            planes, legal = self.reader(index)
        else:
            planes, legal = self.planes[index], self.legal_mask[index]
        return planes, legal, self.move[index]

    def first_games(self, players: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(index [n], group [n])``: positions of each listed player's first ``k`` games
        (by game id), grouped by the player's position in ``players``; players with fewer
        than ``k`` games are left out (callers check ``np.unique(group)``)."""
        index, group = [], []
        for slot, p in enumerate(players):
            rows = np.flatnonzero(self.player == p)
            games = np.unique(self.game[rows])
            if len(games) < k:
                continue
            keep = rows[np.isin(self.game[rows], games[:k])]
            index.append(keep)
            group.append(np.full(len(keep), slot))
        if not index:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(index), np.concatenate(group)

    def games_per_player(self) -> dict[int, int]:
        """``{player id: number of query games}``."""
        return {int(p): len(np.unique(self.game[self.player == p])) for p in np.unique(self.player)}


def fit_queries(
    model, queries: Queries, index, group, num_groups, *, steps, learning_rate, key,
    batch_size: int | None = 512,
):  # fmt: skip
    """``[num_groups, R]`` routing-only style vectors of the selected query positions."""
    return training.fit_style_vectors(
        model,
        *queries.positions(index),
        group,
        num_groups,
        steps=steps,
        learning_rate=learning_rate,
        key=key,
        batch_size=batch_size,
    )


def cap_per_group(index, group, cap: int | None, seed: int = 0):
    """``(index, group)`` with at most ``cap`` positions per group, drawn uniformly without
    replacement (seeded; order kept); ``None`` keeps everything.

    >>> cap_per_group(np.arange(5), np.array([0, 0, 0, 1, 1]), 2)[1].tolist()
    [0, 0, 1, 1]
    """
    index, group = np.asarray(index), np.asarray(group)
    if cap is None:
        return index, group
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(group)), group))  # random order within each group
    rank = np.arange(len(group)) - np.searchsorted(group[order], group[order])
    keep = np.sort(order[rank < cap])
    return index[keep], group[keep]


def stylometry_table(
    model,
    reference,
    queries: Queries,
    *,
    pool_sizes=(50, 200, 400),
    query_games=(5, 30, 100),
    steps: int = 100,
    learning_rate: float = 0.1,
    likelihood_max_pool: int = 50,
    likelihood_max_games: int | None = None,
    key: jax.Array | None = None,
    alternatives: dict | None = None,
    batch_size: int | None = 512,
    max_positions_per_query: int | None = None,
    likelihood_max_positions: int | None = None,
) -> dict:
    """Top-1 identification accuracy over pool size × query games.

    ``reference [P, R]`` holds the known players' vectors (row ``p`` = player id ``p``);
    ``alternatives`` — ``{name: [P, R]}`` other reference vectors of the same players (e.g.
    refitted on their reference games the way queries are fitted) — adds a cosine column
    ``cosine_<name>`` per entry, matched against the same query vectors.
    For each query size ``k`` every player with at least ``k`` query games gets one fitted
    vector (one batched fit for all of them); a pool of size ``n`` is the first ``n`` of a
    fixed random order of those players, and each of its players' query vectors is matched
    against the pool's ``n`` references. Pools larger than the players available are
    reported as ``None``. Likelihood identification runs where ``n ≤ likelihood_max_pool``
    and ``k ≤ likelihood_max_games`` (``None``: any k; its cost grows as ``n² × k``).

    Compute caps (``None``: no cap) for pools too large to score whole on a CPU: each query
    is fitted on at most ``max_positions_per_query`` of its positions, drawn uniformly from
    its ``k`` games (a fit of ``steps`` × ``batch_size`` samples sees about
    ``steps · batch_size / players`` per player anyway), and scored for likelihood on at most
    ``likelihood_max_positions``; the result records the caps under ``"caps"``.

    Returns ``{"rows": [{"pool", "query_games", "players", "cosine", "likelihood",
    "random", "cosine_<name>"…}], "table_md": str, "caps": dict}``.
    """
    alternatives = {k: np.asarray(v) for k, v in (alternatives or {}).items()}
    key = jax.random.PRNGKey(0) if key is None else key
    reference = np.asarray(reference)
    order = np.random.default_rng(0).permutation(reference.shape[0])
    counts = queries.games_per_player()
    rows = []
    for k in query_games:
        eligible = np.array([p for p in order if counts.get(int(p), 0) >= k], dtype=np.int64)
        if not len(eligible):
            rows += [_row(n, k, 0, alternatives) for n in pool_sizes]
            continue
        index, group = queries.first_games(eligible, k)
        index, group = cap_per_group(index, group, max_positions_per_query, seed=k)
        vectors = np.asarray(
            fit_queries(
                model,
                queries,
                index,
                group,
                len(eligible),
                steps=steps,
                learning_rate=learning_rate,
                key=jax.random.fold_in(key, k),
                batch_size=batch_size,
            )
        )
        for n in pool_sizes:
            if n > len(eligible):
                rows.append(_row(n, k, len(eligible), alternatives))
                continue
            pool = eligible[:n]
            guess = identify_by_cosine(vectors[:n], reference[pool])
            row = _row(n, k, n, alternatives, cosine=float((guess == np.arange(n)).mean()))
            for name, other in alternatives.items():
                guess = identify_by_cosine(vectors[:n], other[pool])
                row[f"cosine_{name}"] = float((guess == np.arange(n)).mean())
            if n <= likelihood_max_pool and (
                likelihood_max_games is None or k <= likelihood_max_games
            ):
                sel = group < n
                cap = likelihood_max_positions
                scored, scored_group = cap_per_group(index[sel], group[sel], cap)
                scores = likelihood_matrix(
                    model,
                    *queries.positions(scored),
                    scored_group,
                    n,
                    reference[pool],
                )
                row["likelihood"] = float((scores.argmax(-1) == np.arange(n)).mean())
            rows.append(row)
    caps = {
        "fit_positions_per_query": max_positions_per_query,
        "likelihood_positions_per_query": likelihood_max_positions,
        "fit_steps": steps,
        "fit_batch_size": batch_size,
    }
    return {"rows": rows, "table_md": format_table(rows, list(alternatives)), "caps": caps}


def _row(pool: int, k: int, players: int, alternatives=(), cosine=None, likelihood=None) -> dict:
    row = {
        "pool": pool,
        "query_games": k,
        "players": players,
        "cosine": cosine,
        "likelihood": likelihood,
        "random": 1.0 / pool,
    }
    row.update({f"cosine_{name}": None for name in alternatives})
    return row


def format_table(rows: list[dict], alternatives=()) -> str:
    """Markdown: one line per (pool, query games); ``n/a`` where too few players had games
    (or a pool too large for likelihood); one extra cosine column per alternative."""

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    extra = [f"cosine top-1 ({name} reference)" for name in alternatives]
    lines = [
        "| pool | query games | cosine top-1 | " + "".join(f"{e} | " for e in extra)
        + "likelihood top-1 | random |",
        "|---:|---:|---:|" + "---:|" * len(extra) + "---:|---:|",
    ]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["pool"], r["query_games"])):
        cells = "".join(f"{pct(r[f'cosine_{name}'])} | " for name in alternatives)
        lines.append(
            f"| {r['pool']} | {r['query_games']} | {pct(r['cosine'])} | {cells}"
            f"{pct(r['likelihood'])} | {pct(r['random'])} |"
        )
    return "\n".join(lines)


def linear_probe(vectors, targets, train, *, ridge: float = 1e-2) -> np.ndarray:
    """``float [T]`` held-out R² of a ridge map from style vectors to targets.

    ``vectors [P, R]``, ``targets [P, T]``, ``train bool [P]`` (the rest is held out).
    Fits ``W = argmin ‖[V 1] W − Y‖² + λ‖W‖²`` on standardised training rows; R² =
    ``1 − Σ (y − ŷ)² / Σ (y − ȳ_train)²`` per target on held-out rows.
    """
    v = np.asarray(vectors, np.float64)
    y = np.asarray(targets, np.float64)
    train = np.asarray(train, bool)
    if train.all() or not train.any():
        raise ValueError("linear_probe needs both training and held-out players")
    mu, sd = v[train].mean(0), v[train].std(0) + 1e-9
    x = np.concatenate([(v - mu) / sd, np.ones((len(v), 1))], axis=1)
    a = x[train]
    w = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ y[train])
    pred = x[~train] @ w
    resid = ((y[~train] - pred) ** 2).sum(0)
    total = ((y[~train] - y[train].mean(0)) ** 2).sum(0)
    return 1.0 - resid / np.maximum(total, 1e-12)


def projection_figure(vectors, labels, label_names, title: str = "style vectors"):
    """``matplotlib.figure.Figure``: the first two principal components of ``vectors [P, R]``,
    one colour per label (``labels int [P]`` indexes ``label_names``)."""
    from matplotlib.figure import Figure

    v = np.asarray(vectors, np.float64)
    v = v - v.mean(0)
    _, s, vt = np.linalg.svd(v, full_matrices=False)
    xy = v @ vt[:2].T
    explained = (s[:2] ** 2) / max((s**2).sum(), 1e-12)
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    for i, name in enumerate(label_names):
        mask = np.asarray(labels) == i
        if mask.any():
            ax.scatter(xy[mask, 0], xy[mask, 1], s=12, label=name)
    ax.set_xlabel(f"PC1 ({100 * explained[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC2 ({100 * explained[1]:.0f}%)")
    ax.set_title(title)
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    fig.tight_layout()
    return fig
