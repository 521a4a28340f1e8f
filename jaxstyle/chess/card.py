"""Dataset card: what a built dataset holds and what the reader left out.

The card is computed from the builder's metadata alone (no pass over the records):
players, games per player (text histogram and a matplotlib PNG), positions per split,
the filter, the sources and the skipped-game counts by reason. Synthetic datasets also
list the ground truth file when ``players.json`` sits beside the PGN folder, and the
style-against-skill balance of their generator (:mod:`jaxstyle.chess.balance`): how much a
one-standard-deviation change of each style weight moves its feature's rate, next to a
one-standard-deviation change of skill.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from jaxstyle.chess.corpus import SPLITS
from jaxstyle.chess.tfds_builder import load_builder


def dataset_card(data_dir: str | os.PathLike) -> dict:
    """Card facts of the prepared dataset in ``data_dir`` as a JSON-able dict."""
    metadata = dict(load_builder(data_dir).info.metadata)
    games_per_player = metadata["games_per_player"]
    counts = np.array(list(games_per_player.values()), dtype=np.int64)
    stats = metadata["read_stats"]
    card = {
        "data_dir": str(data_dir),
        "players": len(metadata["players"]),
        "games": int(metadata["num_games"]),
        "positions": metadata["positions"],
        "games_per_player": {
            "min": int(counts.min()),
            "median": float(np.median(counts)),
            "max": int(counts.max()),
            "histogram": histogram(counts),
        },
        "split_games": {s: int(sum(metadata["split_games"][s].values())) for s in SPLITS},
        "filter": metadata["filter"],
        "sources": metadata["sources"],
        "games_seen": stats["games_seen"],
        "games_kept": stats["games_kept"],
        "skipped": stats["skipped"],
        "read_summary": metadata["read_summary"],
        "encoding": metadata["encoding"],
    }
    truth = _ground_truth_path(metadata["sources"])
    if truth is not None:
        card["ground_truth"] = str(truth)
        card["style_balance"] = _style_balance(truth)
    return card


def _style_balance(truth: Path) -> dict:
    """The generator's style/skill balance, or ``{"unavailable": reason}``; cached in
    ``style_balance.json`` beside ``players.json`` (it plays a few hundred short games)."""
    from jaxstyle.chess import balance, players

    config, _ = players.load_ground_truth(truth.parent)
    cache = truth.parent / "style_balance.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("config") == config.as_dict():
            return cached["balance"]
    try:
        facts = balance.style_balance(config)
    except (FileNotFoundError, OSError) as error:  # a UCI evaluator whose engine is gone
        return {"unavailable": f"{type(error).__name__}: {error}"}
    cache.write_text(json.dumps({"config": config.as_dict(), "balance": facts}, indent=1))
    return facts


def histogram(counts: np.ndarray, bins: int = 10) -> list[dict]:
    """Games-per-player histogram: ``[{"lo": 10, "hi": 19, "players": 4}, …]`` (inclusive)."""
    lo, hi = int(counts.min()), int(counts.max())
    width = max(1, int(np.ceil((hi - lo + 1) / bins)))
    edges = np.arange(lo, hi + width + 1, width)
    found, _ = np.histogram(counts, bins=edges)
    return [
        {"lo": int(a), "hi": int(b) - 1, "players": int(n)}
        for a, b, n in zip(edges[:-1], edges[1:], found)
    ]


def format_card(card: dict) -> str:
    """Markdown text of a card."""
    gpp = card["games_per_player"]
    peak = max(row["players"] for row in gpp["histogram"]) or 1
    lines = [
        f"# Dataset card: {card['data_dir']}",
        "",
        f"- players: {card['players']}",
        f"- games: {card['games']} (train/reference/query: "
        + "/".join(str(card["split_games"][s]) for s in SPLITS)
        + " player-games)",
        "- positions: "
        + ", ".join(f"{s} {card['positions'][s]}" for s in SPLITS)
        + f" (total {sum(card['positions'].values())})",
        f"- encoding: {card['encoding']['layout']}, {card['encoding']['planes']} planes, "
        f"{card['encoding']['vocab_size']} moves",
        f"- sources: {', '.join(card['sources'][:3])}"
        + (f" … ({len(card['sources'])} files)" if len(card["sources"]) > 3 else ""),
        f"- filter: {json.dumps(card['filter'])}",
        f"- reader: {card['read_summary']}",
    ]
    if "ground_truth" in card:
        lines.append(f"- ground truth (synthetic players): {card['ground_truth']}")
    if "style_balance" in card:
        lines += ["", "## Style against skill (synthetic generator)", ""]
        if "unavailable" in card["style_balance"]:
            lines.append(f"- not measured: {card['style_balance']['unavailable']}")
        else:
            from jaxstyle.chess.balance import format_balance

            lines += format_balance(card["style_balance"])
    lines += ["", "## Skipped games by reason", ""]
    if card["skipped"]:
        lines += [f"- {reason}: {n}" for reason, n in card["skipped"].items()]
    else:
        lines.append("- none")
    lines += [
        "",
        f"## Games per player (min {gpp['min']}, median {gpp['median']:g}, max {gpp['max']})",
        "",
        "```",
    ]
    for row in gpp["histogram"]:
        bar = "#" * int(round(40 * row["players"] / peak))
        lines.append(f"{row['lo']:>6}-{row['hi']:<6} {row['players']:>6} {bar}")
    lines += ["```", ""]
    return "\n".join(lines)


def write_card(data_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Path:
    """Writes ``card.md``, ``card.json`` and ``games_per_player.png``; returns the .md path."""
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    card = dataset_card(data_dir)
    out = Path(out_dir) if out_dir is not None else Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "card.json").write_text(json.dumps(card, indent=1))
    path = out / "card.md"
    path.write_text(format_card(card) + "\n![games per player](games_per_player.png)\n")

    rows = card["games_per_player"]["histogram"]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.bar(
        [r["lo"] for r in rows],
        [r["players"] for r in rows],
        width=[r["hi"] - r["lo"] + 1 for r in rows],
        align="edge",
        edgecolor="black",
    )
    ax.set_xlabel("games per player")
    ax.set_ylabel("players")
    ax.set_title(f"{card['players']} players, {card['games']} games")
    fig.tight_layout()
    fig.savefig(out / "games_per_player.png", dpi=100)
    return path


def _ground_truth_path(sources: list[str]) -> Path | None:
    for source in sources:
        for folder in (Path(source).parent, Path(source).parent.parent):
            if (folder / "players.json").is_file():
                return folder / "players.json"
    return None
