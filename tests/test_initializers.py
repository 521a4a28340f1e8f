"""jaxcommon.initializers: jax's orthogonal values without LAPACK, and no XLA:CPU deadlock."""

import doctest
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcommon import initializers
from jaxcommon.initializers import gram_schmidt, orthogonal


@pytest.mark.parametrize(
    ("shape", "column_axis"),
    [((64, 64), -1), ((10, 64), -1), ((64, 10), -1), ((3, 3, 4, 8), -1), ((5, 7, 6), 0)],
)
def test_orthogonal_equals_jax_initializer_for_the_same_key(shape, column_axis):
    key = jax.random.key(11)
    ours = orthogonal(1.4, column_axis)(key, shape)
    theirs = jax.nn.initializers.orthogonal(1.4, column_axis)(key, shape)
    assert ours.shape == shape and ours.dtype == jnp.float32
    chex.assert_trees_all_close(ours, theirs, atol=3e-6)


@pytest.mark.parametrize("shape", [(48, 16), (16, 48), (32, 32)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    w = np.asarray(orthogonal()(jax.random.key(0), shape), np.float64)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(min(shape)), atol=2e-6)


def test_gram_schmidt_matches_numpy_qr_with_positive_diagonal():
    z = np.random.default_rng(0).normal(size=(20, 7)).astype(np.float32)
    q, r = np.linalg.qr(z.astype(np.float64))
    expected = q * np.sign(np.diag(r))
    np.testing.assert_allclose(np.asarray(gram_schmidt(jnp.asarray(z))), expected, atol=2e-6)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="at least a 2-D"):
        orthogonal()(jax.random.key(0), (8,))
    with pytest.raises(ValueError, match="at least as many rows"):
        gram_schmidt(jnp.ones((2, 3)))


def test_docstring_examples_run():
    result = doctest.testmod(initializers)
    assert result.attempted >= 3 and result.failed == 0


_CONCURRENT = textwrap.dedent(
    """
    import jax
    from jaxcommon.initializers import orthogonal
    def init(key):  # six independent layers, as in the PPO actor-critic
        return [orthogonal()(k, (64, 64)) for k in jax.random.split(key, 6)]
    f = jax.jit(jax.vmap(init))
    keys = jax.random.split(jax.random.key(0), 25)
    for _ in range(100):
        jax.block_until_ready(f(keys))
    print("finished")
    """
)


def test_many_concurrent_batched_inits_finish():
    # jax.nn.initializers.orthogonal in this program hung XLA:CPU (jaxlib 0.10.2, 2 cores)
    # in 3 of 3 runs: concurrent batched LAPACK QRs wait on one another's pool threads.
    done = subprocess.run(
        [sys.executable, "-c", _CONCURRENT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("finished")
