"""The one timing helper of every benchmark: variants timed side by side, ratios with spread.

The machines are shared and noisy, so nothing here reports a single absolute time.
Each repeat runs every variant in turn (an untimed call, then a timed one), and a ratio
is summarised over the per-repeat ratios of variants timed back to back, which cancels
slow drift of a shared machine better than a ratio of two medians::

    times = side_by_side({"moe": lambda: step(x), "dense": lambda: dense(x)}, repeats=7)
    result["moe_over_dense"] = ratio(times, "moe", "dense")  # {"median", "min", "max"}

Progress goes to stderr (:func:`progress`) so stdout stays one JSON object.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np


def progress(message: str) -> None:
    """One line on stderr: what the benchmark is measuring now."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> float:
    """Seconds for one call of ``fn``, waiting for every array it returns."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def side_by_side(
    variants: Mapping[str, Callable[[], Any]], repeats: int, *, warm: bool = True
) -> dict[str, np.ndarray]:
    """Seconds per call of each variant, ``repeats`` samples each, interleaved.

    Every variant is called once first (compilation is excluded). With ``warm`` each timed
    call follows an untimed call of the same variant, so a variant is not charged for the
    cache state another (e.g. much larger) one left behind.
    """
    for fn in variants.values():
        jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            if warm:
                jax.block_until_ready(fn())
            times[name].append(timed(fn))
    return {name: np.asarray(t) for name, t in times.items()}


def spread(samples: Any, digits: int = 4) -> dict[str, float]:
    """``{"median", "min", "max"}`` of a 1-D sample."""
    samples = np.asarray(samples, dtype=np.float64)
    return {
        "median": round(float(np.median(samples)), digits),
        "min": round(float(np.min(samples)), digits),
        "max": round(float(np.max(samples)), digits),
    }


def ratio(
    times: Mapping[str, np.ndarray], numerator: str, denominator: str, digits: int = 4
) -> dict[str, float]:
    """Spread of the per-repeat ratio ``times[numerator] / times[denominator]``."""
    return spread(np.asarray(times[numerator]) / np.asarray(times[denominator]), digits)


def rates(
    times: Mapping[str, np.ndarray], items: Mapping[str, float], digits: int = 4
) -> dict[str, dict[str, float]]:
    """Items per second of each variant, with spread (``items[name]`` per call)."""
    return {name: spread(items[name] / np.asarray(t), digits) for name, t in times.items()}
