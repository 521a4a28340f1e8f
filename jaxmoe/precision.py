"""Dtype policy of the layer: what the expert matmuls compute and accumulate in.

* Expert matmuls run in ``MoEConfig.dtype`` (float32 or bfloat16), unless the input
  is a *wider* float (float64 under ``jax_enable_x64``): then they run in the input's
  dtype, so a float64 model is not silently float32-accurate.
* Accumulation is at least float32: ``accumulation_dtype(bfloat16) = float32``,
  ``accumulation_dtype(float64) = float64``.
* Integer (or bool, complex) inputs and dtypes are rejected with a ``ValueError``:
  a SwiGLU of int32 rows truncates every intermediate and returns garbage silently.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np


def check_floating(name: str, dtype: Any) -> np.dtype:
    """``np.dtype(dtype)`` if it is a real floating dtype, else one clear ``ValueError``."""
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"{name} must be a floating dtype, got {dtype!r}") from err
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"{name} must be a floating dtype (float32, bfloat16, ...), got {dt}")
    return dt


def accumulation_dtype(dtype: Any) -> np.dtype:
    """At least float32: ``promote_types(dtype, float32)``."""
    return jnp.promote_types(dtype, jnp.float32)


def compute_dtype(configured: Any, input_dtype: Any) -> np.dtype:
    """``configured``, or the input's dtype when that is a wider float (e.g. float64)."""
    configured, input_dtype = np.dtype(configured), np.dtype(input_dtype)
    if input_dtype.itemsize > configured.itemsize and jnp.issubdtype(input_dtype, jnp.floating):
        return input_dtype
    return configured
