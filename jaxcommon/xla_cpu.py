"""XLA:CPU's small-while-loop option: one compiled kernel for a small ``lax.scan``.

XLA:CPU runs a loop body kernel by kernel, each at a fixed launch cost (~0.1 us), unless the
loop touches fewer bytes per iteration than ``xla_cpu_small_while_loop_byte_threshold``
(default 1024) and holds no scatter, sort or custom call: then the whole loop compiles into
one kernel. The option is a map entry of XLA's debug options, which ``jax.jit``'s
``compiler_options`` cannot set, so it travels in ``XLA_FLAGS`` and must be set before JAX
starts its CPU backend::

    XLA_FLAGS="$(python -m jaxcommon.xla_cpu)" python -m experiments.train_safe

(``python -m jaxcommon.xla_cpu`` prints the current ``XLA_FLAGS`` with the option added.)

It changes how loops run, not what they compute. Programs that take a faster form when the
option is on ask :func:`small_loops_enabled`.
"""

from __future__ import annotations

import os

import jax

SMALL_LOOP_OPTION = "xla_cpu_small_while_loop_byte_threshold"
DEFAULT_THRESHOLD = 4_000_000  # bytes/iteration: the Q-learning step loop of 5 seeds needs 0.1-1 MB


def small_loop_flags(threshold: int = DEFAULT_THRESHOLD, flags: str | None = None) -> str:
    """``XLA_FLAGS`` with the small-loop threshold set (``flags`` defaults to the current ones).

    >>> small_loop_flags(4096, "--xla_cpu_enable_fast_math=false").split()[-1]
    '--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=4096'
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0 bytes, got {threshold}")
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    if SMALL_LOOP_OPTION in flags:
        raise ValueError(f"XLA_FLAGS already sets {SMALL_LOOP_OPTION}: {flags!r}")
    return f"{flags} --xla_backend_extra_options={SMALL_LOOP_OPTION}={threshold}".strip()


def with_small_loops(flags: str | None = None) -> str:
    """``flags`` (default: the current ``XLA_FLAGS``) with the small-loop threshold, left as
    they are when they already set it."""
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    return flags if SMALL_LOOP_OPTION in flags else small_loop_flags(flags=flags)


def small_loops_enabled() -> bool:
    """Whether this process runs on XLA:CPU with the small-loop threshold raised in
    ``XLA_FLAGS`` (read when the backend starts, so set it before the first JAX call)."""
    return jax.default_backend() == "cpu" and SMALL_LOOP_OPTION in os.environ.get("XLA_FLAGS", "")


if __name__ == "__main__":
    print(with_small_loops())
