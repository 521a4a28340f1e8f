"""The one metrics writer: ``metrics.jsonl`` plus TensorBoard event files.

Each ``write(step, metrics)`` appends one JSON line ``{"step": s, **scalars}``
and the same scalars to TensorBoard (tensorboardX, no TensorFlow needed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter


def to_scalars(metrics: Mapping[str, object]) -> dict[str, float]:
    """Host floats from a flat dict of scalars (0-d arrays, numpy or Python numbers)."""
    out = {}
    for name, value in metrics.items():
        array = np.asarray(value)
        if array.size != 1:
            raise ValueError(f"metric {name!r} has shape {array.shape}; log scalars only")
        out[name] = float(array.reshape(()))
    return out


def read_jsonl(path: Path) -> list[dict]:
    """All records of a metrics file (empty list if it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def set_aside_after(path: Path, step: int) -> int:
    """Moves records with ``step`` > ``step`` into ``<name>.discarded.jsonl``.

    Used when a run resumes from an earlier checkpoint: those steps will be run
    again, and their old records are kept beside the file, not deleted.
    Returns the number of records moved.
    """
    records = read_jsonl(path)
    keep = [r for r in records if r["step"] <= step]
    later = [r for r in records if r["step"] > step]
    if later:
        aside = path.with_name(path.stem + ".discarded.jsonl")
        with aside.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in later)
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    return len(later)


class MetricsWriter:
    """Appends scalars to ``<workdir>/metrics.jsonl`` and ``<workdir>/tensorboard/``."""

    def __init__(self, workdir: Path):
        self.path = workdir / "metrics.jsonl"
        self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, metrics: Mapping[str, object]) -> dict[str, float]:
        scalars = to_scalars(metrics)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": int(step), **scalars}) + "\n")
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, int(step))
        return scalars

    def close(self) -> None:
        self._tb.close()
