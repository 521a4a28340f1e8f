"""PNG plots of a run's ``metrics.jsonl``: one panel per metric against step."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

from experiments.metrics_writer import read_jsonl


def plot_metrics(metrics_path: Path, out_path: Path, title: str = "") -> Path | None:
    """Writes a grid of line plots (one per metric) to ``out_path``; None if no records.

    Non-finite values (``null`` in the file) leave gaps marked by red vertical
    lines, so a run that diverged still shows what came before.
    """
    records = read_jsonl(metrics_path)
    if not records:
        return None
    names = sorted({k for r in records for k in r if k != "step"})
    if not names:
        return None
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        steps = [r["step"] for r in records if name in r]
        values = [math.nan if r[name] is None else r[name] for r in records if name in r]
        ax.plot(steps, values, marker="." if len(steps) < 30 else None)
        bad = [s for s, v in zip(steps, values, strict=True) if not math.isfinite(v)]
        for i, step in enumerate(bad):
            ax.axvline(step, color="red", alpha=0.4, label="non-finite" if i == 0 else None)
        if bad:
            ax.legend(fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    return out_path
