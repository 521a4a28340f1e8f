"""An orthogonal initializer without LAPACK: Gram-Schmidt in plain XLA ops.

``jax.nn.initializers.orthogonal`` (and ``nnx.initializers.orthogonal``, the same function)
samples ``z ~ N(0, 1)`` and returns ``Q`` of ``QR(z)`` with the signs fixed so that ``R`` has
a positive diagonal (Mezzadri 2007). On XLA:CPU the QR is a LAPACK ``geqrf`` custom call whose
batched form splits the batch over the intra-op thread pool and blocks a pool thread until
its pieces finish. Three or more such calls that the runtime starts at once (three ``vmap``-ed
orthogonal layers of one network, which XLA may run concurrently) can occupy every pool
thread while their pieces wait in the queue: the program deadlocks, every thread asleep.
Measured with jax/jaxlib 0.10.2 on this 2-core machine: ``jit`` of 3 independent
``jnp.linalg.qr`` of ``[25, 64, 64]`` hung in 3 of 3 runs within 20 s (1 or 2 at once: 300 calls
in 1.3 s), the vmapped PPO trainer of :mod:`jaxsafe.agents.ppo` in its second call, and
``--xla_cpu_multi_thread_eigen=false`` did not prevent it.
``tests/test_initializers.py`` keeps the reproducer.

:func:`orthogonal` draws the same ``z`` and orthonormalises its columns by classical
Gram-Schmidt with one re-orthogonalisation pass (CGS2, stable in float32), one
``lax.fori_loop`` step per column. Gram-Schmidt's ``R`` has a positive diagonal by
construction, so the result equals jax's initializer for the same key (to float32 rounding)
and is a Haar sample; it only uses matmuls, so it batches, shards and runs on every backend.
Cost: ``min(n, m)`` sequential steps of a ``[max, min]`` matrix-vector product — negligible
for initialisation.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def gram_schmidt(z: jax.Array) -> jax.Array:
    """Orthonormal columns of ``z``: ``[n, k] float`` with ``n >= k`` -> ``Q`` ``[n, k]``.

    ``Q`` spans the same nested column spaces as ``z`` (``z = Q R`` with ``R`` upper
    triangular, positive diagonal). Columns are processed in order; each is projected off
    the previous ones twice (CGS2) and normalised.

    >>> import jax.numpy as jnp
    >>> q = gram_schmidt(jnp.array([[3.0, 1.0], [4.0, 1.0]]))
    >>> [round(float(x), 4) for x in q[:, 0]], bool(jnp.allclose(q.T @ q, jnp.eye(2), atol=1e-6))
    ([0.6, 0.8], True)
    """
    n, k = z.shape
    if n < k:
        raise ValueError(f"gram_schmidt needs at least as many rows as columns, got {z.shape}")

    def body(j, q):
        v = jax.lax.dynamic_index_in_dim(z, j, axis=1, keepdims=False)
        for _ in range(2):  # columns >= j of q are still zero, so they project nothing
            v = v - q @ (q.T @ v)
        return jax.lax.dynamic_update_index_in_dim(q, v / jnp.linalg.norm(v), j, axis=1)

    return jax.lax.fori_loop(0, k, body, jnp.zeros_like(z))


def orthogonal(scale: float = 1.0, column_axis: int = -1, dtype=None):
    """Drop-in for ``jax.nn.initializers.orthogonal(scale, column_axis, dtype)``.

    Returns ``init(key, shape, dtype=dtype)``: a ``shape`` array whose columns along
    ``column_axis`` (or whose rows, if there are more columns than rows) are orthonormal,
    times ``scale``; equal to jax's initializer for the same key.

    >>> import jax, jax.numpy as jnp
    >>> w = orthogonal(2.0)(jax.random.key(0), (4, 3))
    >>> bool(jnp.allclose(w.T @ w, 4.0 * jnp.eye(3), atol=1e-5))
    True
    """

    def init(key: jax.Array, shape, dtype=dtype, out_sharding=None) -> jax.Array:
        if out_sharding is not None:
            raise NotImplementedError("orthogonal: out_sharding is not supported")
        dtype = jnp.float32 if dtype is None else dtype
        if len(shape) < 2:
            raise ValueError(f"orthogonal initializer requires at least a 2-D shape, got {shape}")
        if any(d == 0 for d in shape):
            return jnp.zeros(shape, dtype)
        n_cols = shape[column_axis]
        n_rows = math.prod(shape) // n_cols
        z = jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dtype)
        q = gram_schmidt(z)
        q = q.T if n_rows < n_cols else q  # [n_rows, n_cols]
        q = jnp.reshape(q, tuple(np.delete(shape, column_axis)) + (n_cols,))
        return jnp.asarray(scale, dtype) * jnp.moveaxis(q, -1, column_axis)

    return init
