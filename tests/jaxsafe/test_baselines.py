"""Baselines: the PPO-Lagrangian multiplier and the intrinsic-fear danger model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsafe.agents import fear, lagrangian


def test_multiplier_stays_non_negative_and_rises_only_when_cost_exceeds_budget():
    lam = jnp.float32(0.0)
    # under budget from zero: clamped at 0, never negative
    for _ in range(5):
        lam = lagrangian.update_multiplier(lam, jnp.float32(0.0), jnp.float32(4), 1.0, 0.5)
        assert float(lam) == 0.0
    # over budget: mean episode cost 3 > 1, so lambda grows by lr * 2 each update
    lam = lagrangian.update_multiplier(lam, jnp.float32(12.0), jnp.float32(4), 1.0, 0.5)
    np.testing.assert_allclose(float(lam), 1.0)
    lam = lagrangian.update_multiplier(lam, jnp.float32(12.0), jnp.float32(4), 1.0, 0.5)
    np.testing.assert_allclose(float(lam), 2.0)
    # below budget again: falls, but is clamped at 0
    lam = lagrangian.update_multiplier(lam, jnp.float32(0.0), jnp.float32(4), 1.0, 10.0)
    assert float(lam) == 0.0
    # no finished episode: unchanged
    lam = lagrangian.update_multiplier(jnp.float32(0.7), jnp.float32(5.0), jnp.float32(0), 1.0, 1.0)
    np.testing.assert_allclose(float(lam), 0.7)


def test_combined_advantage_penalises_cost():
    adv_r, adv_c = jnp.array([1.0, 1.0]), jnp.array([0.0, 2.0])
    out = lagrangian.combine_advantages(adv_r, adv_c, jnp.float32(1.0))
    np.testing.assert_allclose(np.asarray(out), [0.5, -0.5])
    np.testing.assert_allclose(np.asarray(lagrangian.combine_advantages(adv_r, adv_c, 0.0)), [1, 1])


def _danger_reference(violation, done, horizon):
    t_len, n = violation.shape
    out = np.zeros_like(violation, dtype=np.float32)
    for i in range(n):
        for t in range(t_len):
            for j in range(t, min(t + horizon, t_len)):
                if violation[j, i]:
                    out[t, i] = 1.0
                    break
                if done[j, i]:
                    break
    return out


def test_danger_labels_match_numpy_reference():
    rng = np.random.default_rng(0)
    violation = rng.random((40, 6)) < 0.08
    done = violation | (rng.random((40, 6)) < 0.05)
    got = fear.danger_labels(jnp.asarray(violation), jnp.asarray(done), 4)
    np.testing.assert_array_equal(np.asarray(got), _danger_reference(violation, done, 4))


def test_fear_model_learns_to_fear_the_dangerous_feature_and_penalises_it():
    key = jax.random.key(0)
    graphdef, params = fear.init_fear_model(key, 3, 16)
    obs = jax.random.normal(jax.random.key(1), (256, 3))
    labels = (obs[:, 0] > 0.5).astype(jnp.float32)  # danger is feature 0 being high
    tx = optax.adam(3e-2)
    opt_state = tx.init(params)

    def body(carry, _):
        p, s, loss = fear.fit_step(graphdef, tx, *carry, obs, labels)
        return (p, s), loss

    (params, _), losses = jax.jit(lambda c: jax.lax.scan(body, c, None, 150))((params, opt_state))
    assert float(losses[-1]) < 0.5 * float(losses[0])
    pen = fear.fear_penalty(graphdef, params, jnp.array([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]]))
    assert 0.0 <= float(pen[1]) < 0.3 < 0.7 < float(pen[0]) <= 1.0
