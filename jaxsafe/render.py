"""Draw a spec: Graphviz DOT text (for users with Graphviz) and a PNG made with matplotlib
(works without Graphviz installed)."""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np

from jaxsafe.spec import Spec

__all__ = ["edges", "render_png", "to_dot"]


def edges(spec: Spec) -> dict[tuple[str, str], str]:
    """``{(source, target): label}``: the written guards between two states, joined by ``|``.

    Violation sinks keep their implicit self-loop, which is not drawn.
    """
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for src, guard, dst in spec.transitions:
        if spec.violation[spec.index(src)] and src == dst:
            continue
        grouped[(src, dst)].append(guard.strip())
    return {k: " | ".join(v) for k, v in grouped.items()}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(spec: Spec) -> str:
    """Graphviz DOT source: accepting states are double circles, violation sinks red octagons,
    the initial state has an arrow from a point."""
    lines = [
        f"digraph {_quote(spec.name)} {{",
        "  rankdir=LR;",
        '  __start [shape=point, label=""];',
    ]
    for q, s in enumerate(spec.states):
        if spec.violation[q]:
            attrs = "shape=octagon, style=filled, fillcolor=tomato"
        elif spec.accepting[q]:
            attrs = "shape=doublecircle"
        else:
            attrs = "shape=circle"
        lines.append(f"  {_quote(s)} [{attrs}];")
    lines.append(f"  __start -> {_quote(spec.states[spec.initial])};")
    for (src, dst), label in edges(spec).items():
        lines.append(f"  {_quote(src)} -> {_quote(dst)} [label={_quote(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layout(spec: Spec) -> dict[str, tuple[float, float]]:
    """Columns by breadth-first depth from the initial state; violation sinks in a row below."""
    depth = {spec.initial: 0}
    order = [spec.initial]
    for q in order:
        for t in np.unique(spec.delta[q]):
            t = int(t)
            if t not in depth and not spec.violation[t]:
                depth[t] = depth[q] + 1
                order.append(t)
    last = max(depth.values(), default=0) + 1
    for q in range(spec.num_states):
        if not spec.violation[q]:
            depth.setdefault(q, last)
    columns: dict[int, list[int]] = defaultdict(list)
    for q in sorted(depth):
        columns[depth[q]].append(q)
    pos = {}
    for d, qs in columns.items():
        for i, q in enumerate(qs):
            pos[spec.states[q]] = (2.8 * d, 1.8 * ((len(qs) - 1) / 2 - i))
    sinks = np.flatnonzero(spec.violation)
    low = min((p[1] for p in pos.values()), default=0.0) - 2.4
    centre = 2.8 * max(columns, default=0) / 2
    for i, q in enumerate(sinks):
        pos[spec.states[q]] = (centre + 2.8 * (i - (len(sinks) - 1) / 2), low)
    return pos


def render_png(spec: Spec, path: str | os.PathLike, dpi: int = 120) -> str:
    """Draw ``spec`` to a PNG file with matplotlib; returns the path.

    Uses ``matplotlib.figure.Figure`` directly, so the global backend (e.g. a notebook's
    inline backend) is left alone.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle, FancyArrowPatch

    pos = _layout(spec)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    width = max(xs) - min(xs) + 3
    height = max(ys) - min(ys) + 3
    fig = Figure(figsize=(1.2 * width, 1.2 * height))
    ax = fig.subplots()
    r = 0.45
    box = dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85)
    for q, s in enumerate(spec.states):
        x, y = pos[s]
        colour = "tomato" if spec.violation[q] else "white"
        ax.add_patch(Circle((x, y), r, facecolor=colour, edgecolor="black", lw=1.5, zorder=2))
        if spec.accepting[q]:
            ax.add_patch(Circle((x, y), r * 0.82, fill=False, edgecolor="black", lw=1, zorder=3))
        ax.text(x, y, s, ha="center", va="center", fontsize=8, zorder=4)
        if q == spec.initial:
            ax.add_patch(
                FancyArrowPatch((x - 1.2, y), (x - r, y), arrowstyle="-|>", mutation_scale=12)
            )
    for (src, dst), label in edges(spec).items():
        p0, p1 = np.array(pos[src]), np.array(pos[dst])
        if src == dst:
            ax.add_patch(
                FancyArrowPatch(
                    (p0[0] - 0.25, p0[1] + r * 0.9), (p0[0] + 0.25, p0[1] + r * 0.9),
                    connectionstyle="arc3,rad=-1.6", arrowstyle="-|>", mutation_scale=10,
                )
            )  # fmt: skip
            lx, ly = p0[0], p0[1] + r + 0.55
        else:
            unit = (p1 - p0) / np.linalg.norm(p1 - p0)
            a, b = p0 + r * unit, p1 - r * unit
            rad = 0.2
            ax.add_patch(
                FancyArrowPatch(
                    tuple(a), tuple(b), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                    mutation_scale=12, shrinkA=0, shrinkB=0, zorder=1,
                )
            )  # fmt: skip
            d = b - a  # midpoint of the quadratic Bezier matplotlib's arc3 draws
            lx, ly = (a + b) / 2 + 0.5 * rad * np.array([d[1], -d[0]])
        ax.text(lx, ly, label, ha="center", va="center", fontsize=7, bbox=box, zorder=5)
    ax.set_xlim(min(xs) - 1.5, max(xs) + 1.5)
    ax.set_ylim(min(ys) - 1.2, max(ys) + 1.5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(spec.name)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return os.fspath(path)
