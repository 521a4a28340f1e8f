"""PPO on a safeguarded gymnax environment, the whole run one jitted program.

``make_train(config, env)`` returns ``train(key, plan) -> (runner_state, metrics)``, in the
PureJaxRL spirit: one ``lax.scan`` over updates, each made of a rollout scan over
``vmap(env.step)``, generalised advantage estimation by a reverse scan, and a scan over epochs of
a scan over minibatches. Seeds are ``jax.vmap(train, in_axes=(0, None))``; methods whose
:class:`Plan` arrays differ (curriculum, baselines) are one more ``vmap`` over stacked plans.

gymnax 1.0 separates ``terminated`` from ``truncated``; the one-step target bootstraps from the
pre-reset observation ``info["final_observation"]`` unless the episode *terminated*, and the
trace is cut at every episode end:

.. math::

    \\delta_t = r_t + \\gamma (1 - \\text{term}_t) V(s'_t) - V(s_t), \\qquad
    \\hat A_t = \\delta_t + \\gamma \\lambda (1 - \\text{done}_t) \\hat A_{t+1}.

**Curriculum.** ``plan.stage_params`` stacks one safeguard ``params`` per stage (leading axis
S); update ``u`` runs stage ``sum(u >= plan.stage_end)``. Policy, optimiser, Lagrange
multiplier and fear model carry over from stage to stage; environments are reset when the stage
changes. A single-stage method is the same program with every stage equal.

**Reference spec.** ``plan.reference`` is the final spec (e.g. SG3), stepped on the wrapper's
``info["label"]`` beside whatever spec the stage trains on. It pays ``plan.task_reward`` the
first time an episode enters one of its *goal states* (:func:`goal_states`), counts violations of
the final spec, and measures task completion, identically for every method. After a violation
that does not end the episode (``mode="cost"``) it restarts from its initial state.

**Resets.** By default environments step with gymnax's ``step`` (a reset computed on every
step, selected where an episode ended). With ``config.reset_pool = P >= num_envs`` they step
without reset and finished episodes restart from a pool of ``P`` resets generated once per
update (:mod:`jaxsafe.resets`; the first ``num_envs`` entries also serve the stage switch): for
Craftax-Classic this is ``P`` world generations per update instead of ``num_envs * num_steps``,
and one copy of world generation in the compiled program instead of three.

**Observation** given to the policy: the wrapper's (env obs ++ one-hot stage automaton state),
then optionally the one-hot reference state (``config.reference_obs``) and the spec encoding of
:func:`automaton_features` (``config.spec_obs``).

Baselines are knobs of the same loss: ``plan.lagrangian_lr > 0`` turns on PPO-Lagrangian
(:mod:`jaxsafe.agents.lagrangian`), ``plan.fear_coef > 0`` the intrinsic-fear penalty
(:mod:`jaxsafe.agents.fear`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx, struct

from jaxcommon.initializers import orthogonal
from jaxsafe.agents import fear as fear_lib
from jaxsafe.agents import lagrangian
from jaxsafe.automaton import Automaton
from jaxsafe.resets import make_reset_pool, reset_finished, step_without_reset
from jaxsafe.wrappers import SafeguardWrapper

__all__ = [
    "ActorCritic",
    "Plan",
    "automaton_features",
    "default_config",
    "gae",
    "goal_states",
    "make_plan",
    "make_train",
    "stage_updates",
]


def default_config() -> ml_collections.ConfigDict:
    """PPO hyperparameters (PureJaxRL's CartPole defaults, a smaller batch)."""
    c = ml_collections.ConfigDict()
    c.num_envs = 16
    c.num_steps = 128
    c.stage_steps = (200_000,)  # env steps per stage (all envs together)
    c.update_epochs = 4
    c.num_minibatches = 4
    c.gamma = 0.99
    c.gae_lambda = 0.95
    c.clip_eps = 0.2
    c.ent_coef = 0.01
    c.vf_coef = 0.5
    c.max_grad_norm = 0.5
    c.lr = 2.5e-4
    c.anneal_lr = True
    c.hidden = 64
    c.reference_obs = True  # append one-hot of the reference (final-spec) automaton state
    c.spec_obs = False  # append automaton_features of the stage spec (adaptation)
    c.per_env_params = False  # stage params carry a per-env axis [S, N, ...] (many specs)
    c.reset_pool = 0  # >= num_envs: that many resets per update instead of one per step
    c.fear_horizon = 5  # intrinsic fear: states <= k steps before a violation are "dangerous"
    c.fear_lr = 1e-3
    c.evaluate = True  # greedy evaluation every eval_every updates (eval_* metrics)
    c.eval_every = 10  # updates between deterministic evaluations
    c.eval_envs = 32
    c.eval_steps = 200
    return c


# ---------------------------------------------------------------------------- spec helpers


def goal_states(aut: Automaton) -> jax.Array:
    """bool[Q]: valid, non-violating states with no way out except into a violation.

    These end the task of a spec (SG3: q2 after wood then work bench, q4 after wood, iron,
    smith table). For a one-state spec (SG0) the initial state is its own goal, entered never.
    """
    q = jnp.arange(aut.num_states)
    nxt = aut.delta  # [Q, L]
    stays = (nxt == q[:, None]) | aut.violation[nxt]
    return aut.valid & ~aut.violation & jnp.all(stays, axis=-1)


def automaton_features(aut: Automaton, q: jax.Array) -> jax.Array:
    """float32[2 L] spec encoding seen from state ``q``: for every label, does reading it now
    violate, and does it advance to another safe state. Specs the policy never met are encoded
    in the same terms, which is what lets it adapt."""
    row = aut.delta[q]  # [L]
    danger = aut.violation[row]
    advance = (row != q) & ~danger
    return jnp.concatenate([danger, advance]).astype(jnp.float32)


@struct.dataclass
class Plan:
    """What one method trains on (all array leaves, so plans of many methods stack and vmap).

    stage_params: safeguard params per stage, leading axis S (``[S, N, ...]`` when
      ``config.per_env_params``). eval_params: params of the deterministic evaluation
      (final spec, paper mode). stage_end: int32[S] cumulative update count ending each stage.
    reference: the final spec's :class:`Automaton`. task_reward: paid on entering a reference
    goal state. fear_coef, lagrangian_lr, cost_budget, lambda_init: baseline knobs (0 = off).
    """

    stage_params: Any
    eval_params: Any
    stage_end: jax.Array
    reference: Automaton
    task_reward: jax.Array
    fear_coef: jax.Array
    lagrangian_lr: jax.Array
    cost_budget: jax.Array
    lambda_init: jax.Array


def stage_updates(config: ml_collections.ConfigDict) -> list[int]:
    """Updates per stage from ``config.stage_steps`` (rounded up to whole evaluation chunks)."""
    per_update = config.num_envs * config.num_steps
    chunk = config.eval_every
    out = []
    for steps in config.stage_steps:
        if steps <= 0:
            raise ValueError(f"stage_steps must be positive, got {tuple(config.stage_steps)}")
        out.append(chunk * max(1, math.ceil(steps / (per_update * chunk))))
    return out


def make_plan(
    config: ml_collections.ConfigDict,
    stage_params: list[Any],
    eval_params: Any,
    reference: Automaton,
    *,
    task_reward: float = 1.0,
    fear_coef: float = 0.0,
    lagrangian_lr: float = 0.0,
    cost_budget: float = 0.0,
    lambda_init: float = 0.0,
    stage_updates_: list[int] | None = None,
) -> Plan:
    """A :class:`Plan` from a list of per-stage params (one per ``config.stage_steps`` entry,
    or a custom ``stage_updates_``); stages are stacked and padded with the last one to
    ``len(config.stage_steps)`` so that plans of all methods share one shape."""
    updates = stage_updates(config) if stage_updates_ is None else list(stage_updates_)
    if len(stage_params) != len(updates):
        raise ValueError(f"{len(stage_params)} stage params for {len(updates)} stage budgets")
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *stage_params)
    return Plan(
        stage_params=stacked,
        eval_params=eval_params,
        stage_end=jnp.asarray(np.cumsum(updates), jnp.int32),
        reference=reference,
        task_reward=jnp.float32(task_reward),
        fear_coef=jnp.float32(fear_coef),
        lagrangian_lr=jnp.float32(lagrangian_lr),
        cost_budget=jnp.float32(cost_budget),
        lambda_init=jnp.float32(lambda_init),
    )


def _at(table: jax.Array, q: jax.Array) -> jax.Array:
    """``table[q]`` for a table ``[Q]`` shared by all envs or ``[N, Q]`` per env; q: int32[N]."""
    return table[q] if table.ndim == 1 else jnp.take_along_axis(table, q[:, None], 1)[:, 0]


def _next(aut: Automaton, q: jax.Array, label: jax.Array) -> jax.Array:
    """int32[N] next states of one automaton or of one per env (leading N axis)."""
    label = jnp.clip(label, 0, aut.num_symbols - 1)
    if aut.delta.ndim == 2:
        return aut.delta[q, label]
    return aut.delta[jnp.arange(q.shape[0]), q, label]


def _goals(aut: Automaton) -> jax.Array:
    return goal_states(aut) if aut.delta.ndim == 2 else jax.vmap(goal_states)(aut)


def _initial(aut: Automaton, n: int) -> jax.Array:
    return jnp.broadcast_to(aut.initial, (n,)).astype(jnp.int32)


# ---------------------------------------------------------------------------- network


class ActorCritic(nnx.Module):
    """Separate tanh MLPs: policy logits ``[..., A]`` and two value heads (reward, cost)."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int, *, rngs: nnx.Rngs):
        ortho = orthogonal  # no LAPACK QR: see jaxcommon.initializers
        lin = lambda i, o, s: nnx.Linear(i, o, kernel_init=ortho(s), rngs=rngs)  # noqa: E731
        self.pi = nnx.List([lin(obs_dim, hidden, 2**0.5), lin(hidden, hidden, 2**0.5)])
        self.pi_out = lin(hidden, num_actions, 0.01)
        self.v = nnx.List([lin(obs_dim, hidden, 2**0.5), lin(hidden, hidden, 2**0.5)])
        self.v_out = lin(hidden, 2, 1.0)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x: float32[..., D] -> (logits [..., A], value [...], cost value [...])."""
        h = x
        for layer in self.pi:
            h = jnp.tanh(layer(h))
        g = x
        for layer in self.v:
            g = jnp.tanh(layer(g))
        v = self.v_out(g)
        return self.pi_out(h), v[..., 0], v[..., 1]


# ---------------------------------------------------------------------------- GAE


def gae(
    reward: jax.Array,
    value: jax.Array,
    next_value: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Advantages and returns, all float32[T, ...].

    ``next_value[t]`` is V of the pre-reset next observation; it is used unless ``terminated``
    (so truncation bootstraps); ``done = terminated | truncated`` cuts the trace.
    """

    def body(carry, xs):
        r, v, nv, term, d = xs
        delta = r + gamma * (1.0 - term) * nv - v
        carry = delta + gamma * lam * (1.0 - d) * carry
        return carry, carry

    xs = (reward, value, next_value, terminated.astype(jnp.float32), done.astype(jnp.float32))
    _, adv = jax.lax.scan(body, jnp.zeros_like(reward[0]), xs, reverse=True)
    return adv, adv + value


# ---------------------------------------------------------------------------- train


@struct.dataclass
class Runner:
    """Everything carried from update to update (and from stage to stage)."""

    params: Any
    opt_state: Any
    fear_params: Any
    fear_opt_state: Any
    env_state: Any
    obs: Any
    ref_q: jax.Array
    lam: jax.Array
    key: jax.Array
    stage: jax.Array
    update: jax.Array
    ep: dict  # running per-env episode statistics
    totals: dict  # cumulative counters


def _zeros_ep(n: int) -> dict:
    z = jnp.zeros(n, jnp.float32)
    return {"ret": z, "viol": z, "ref_viol": z, "task": z, "cost": z}


def make_train(
    config: ml_collections.ConfigDict, env: Any
) -> Callable[[jax.Array, Plan], tuple[Runner, dict]]:
    """Build ``train(key, plan, init_params=None) -> (final Runner, metrics)``; jit it (and vmap
    over seeds). ``init_params`` (network params of an earlier run's ``Runner.params``) warm-starts
    the policy with a fresh optimiser; ``train.init_params(key, plan)`` gives the params a fresh
    ``train(key, plan)`` would start from.

    ``metrics`` holds per-update arrays ``[U]`` (``steps``, cumulative ``violations`` of the
    trained spec and ``ref_violations`` of the final spec, and over episodes that ended in the
    update: ``return``, ``success`` (no violation), ``task_completion``, ``episode_cost``; also
    ``value_start``, ``lambda``, ``stage``, ``loss``, ``fear_loss``) and per-evaluation arrays
    ``eval_*`` ``[U / eval_every]`` of the greedy policy on ``plan.eval_params`` (first episode
    of each of ``eval_envs`` environments, at most ``eval_steps`` steps).
    """
    c = config
    n, t_len = c.num_envs, c.num_steps
    safeguarded = isinstance(env, SafeguardWrapper)
    if (c.reference_obs or c.spec_obs) and not safeguarded:
        raise ValueError("reference_obs / spec_obs need a SafeguardWrapper environment")
    batch = n * t_len
    if batch % c.num_minibatches:
        raise ValueError(f"num_envs*num_steps={batch} not divisible by {c.num_minibatches}")
    total_updates = sum(stage_updates(c))
    chunks = total_updates // c.eval_every
    num_actions = env.num_actions
    p_axis = 0 if c.per_env_params else None
    pool_size = int(c.get("reset_pool", 0))
    if pool_size and (pool_size < n or c.per_env_params):
        raise ValueError(
            f"reset_pool={pool_size} needs >= num_envs={n} entries and per_env_params=False"
        )

    def step_envs(keys, state, action, params):
        if pool_size:
            step = lambda *a: step_without_reset(env, *a)  # noqa: E731
            return jax.vmap(step, in_axes=(0, 0, 0, None))(keys, state, action, params)
        return jax.vmap(env.step, in_axes=(0, 0, 0, p_axis))(keys, state, action, params)

    def reset_envs(keys, params):
        return jax.vmap(env.reset, in_axes=(0, p_axis))(keys, params)

    def policy_obs(obs, q, ref_q, params, ref):
        """[N, D] float32 features the network sees."""
        parts = [jnp.reshape(obs, (obs.shape[0], -1)).astype(jnp.float32)]
        if c.reference_obs:
            parts.append(jax.nn.one_hot(ref_q, ref.num_states, dtype=jnp.float32))
        if c.spec_obs:
            aut_axis = 0 if c.per_env_params else None
            feats = jax.vmap(automaton_features, in_axes=(aut_axis, 0))(params.automaton, q)
            parts.append(feats)
        return jnp.concatenate(parts, axis=-1)

    def env_q(state):
        return state.q if safeguarded else jnp.zeros(n, jnp.int32)

    def sample_obs_dim(plan):
        p0 = jax.tree.map(lambda x: x[0], plan.stage_params)

        def features(key):
            obs, st = reset_envs(jax.random.split(key, n), p0)
            return policy_obs(obs, env_q(st), jnp.zeros(n, jnp.int32), p0, plan.reference)

        return jax.eval_shape(features, jax.random.key(0)).shape[-1]

    def placeholder_reset(key, params):
        """Zeros shaped like a batch of resets (the first update replaces them)."""
        shapes = jax.eval_shape(lambda k: reset_envs(jax.random.split(k, n), params), key)

        def zeros(s):
            if jax.dtypes.issubdtype(s.dtype, jax.dtypes.prng_key):
                return jax.random.split(jax.random.key(0), s.shape)
            return jnp.zeros(s.shape, s.dtype)

        return jax.tree.map(zeros, shapes)

    def build_model(key, obs_dim):
        model = ActorCritic(obs_dim, num_actions, c.hidden, rngs=nnx.Rngs(key))
        return nnx.split(model)

    def lr_schedule(count):
        if not c.anneal_lr:
            return c.lr
        frac = 1.0 - (count // (c.num_minibatches * c.update_epochs)) / total_updates
        return c.lr * frac

    tx = optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.adam(lr_schedule, eps=1e-5))
    fear_tx = optax.adam(c.fear_lr)

    def train(key: jax.Array, plan: Plan, init_params: Any = None) -> tuple[Runner, dict]:
        obs_dim = sample_obs_dim(plan)
        k_model, k_fear, k_env, key = jax.random.split(key, 4)
        graphdef, params = build_model(k_model, obs_dim)
        if init_params is not None:  # warm start (adaptation); the optimiser starts fresh
            params = init_params
        fear_graphdef, fear_params = fear_lib.init_fear_model(k_fear, obs_dim, c.hidden)
        apply = lambda p, x: nnx.merge(graphdef, p)(x)  # noqa: E731
        ref = plan.reference
        ref_goal = _goals(ref)

        def stage_params_at(stage):
            return jax.tree.map(lambda x: x[stage], plan.stage_params)

        p0 = stage_params_at(0)
        if pool_size:  # stage -1: the first update "switches" and takes the pool's resets
            obs, env_state = placeholder_reset(k_env, p0)
        else:
            obs, env_state = reset_envs(jax.random.split(k_env, n), p0)
        runner = Runner(
            params=params,
            opt_state=tx.init(params),
            fear_params=fear_params,
            fear_opt_state=fear_tx.init(fear_params),
            env_state=env_state,
            obs=obs,
            ref_q=_initial(ref, n),
            lam=plan.lambda_init,
            key=key,
            stage=jnp.int32(-1 if pool_size else 0),
            update=jnp.int32(0),
            ep=_zeros_ep(n),
            totals={
                "steps": jnp.float32(0),
                "violations": jnp.float32(0),
                "ref_violations": jnp.float32(0),
            },
        )

        # ------------------------------------------------------------------ rollout
        def env_step(carry, _):
            r, params_s, pool = carry
            key, k_act, k_step = jax.random.split(r.key, 3)
            pobs = policy_obs(r.obs, env_q(r.env_state), r.ref_q, params_s, ref)
            logits, value, cvalue = apply(r.params, pobs)
            action = jax.random.categorical(k_act, logits)
            logp = jax.nn.log_softmax(logits)[jnp.arange(n), action]
            obs, env_state, reward, term, trunc, info = step_envs(
                jax.random.split(k_step, n), r.env_state, action, params_s
            )
            done = term | trunc
            if pool_size:
                obs, env_state, pool = reset_finished(done, obs, env_state, pool)
            zeros = jnp.zeros(n, jnp.float32)
            violation = info.get("violation", zeros).astype(jnp.float32)
            cost = info.get("cost", zeros).astype(jnp.float32)
            if safeguarded:
                ref_next = _next(ref, r.ref_q, info["label"])
                q_final = info["automaton_state"]
            else:
                ref_next, q_final = r.ref_q, zeros.astype(jnp.int32)
            entered_goal = _at(ref_goal, ref_next) & ~_at(ref_goal, r.ref_q) & (r.ep["task"] == 0)
            was_viol = _at(ref.violation, r.ref_q)
            ref_viol = (_at(ref.violation, ref_next) & ~was_viol).astype(jnp.float32)
            bonus = plan.task_reward * entered_goal.astype(jnp.float32)
            reward = reward + bonus
            final_pobs = policy_obs(info["final_observation"], q_final, ref_next, params_s, ref)
            # restart at the episode's end, and after a violation that did not end it (as the
            # wrapper's cost mode does), so later violations and the task still count
            restart = done | (ref_viol > 0)
            ref_q = jnp.where(restart, _initial(ref, n), ref_next).astype(jnp.int32)

            ep = {
                "ret": r.ep["ret"] + reward,
                "viol": jnp.maximum(r.ep["viol"], violation),
                "ref_viol": jnp.maximum(r.ep["ref_viol"], ref_viol),
                "task": jnp.maximum(r.ep["task"], entered_goal.astype(jnp.float32)),
                "cost": r.ep["cost"] + cost,
            }
            d = done.astype(jnp.float32)
            ended = {k: v * d for k, v in ep.items()}
            ep = {k: v * (1.0 - d) for k, v in ep.items()}
            transition = {
                "obs": pobs,
                "final_obs": final_pobs,
                "action": action,
                "logp": logp,
                "value": value,
                "cvalue": cvalue,
                "reward": reward,
                "cost": cost,
                "terminated": term,
                "done": done,
                "violation": violation,
                "ref_violation": ref_viol,
                "ended": ended,
            }
            r = r.replace(env_state=env_state, obs=obs, ref_q=ref_q, key=key, ep=ep)
            return (r, params_s, pool), transition

        # ------------------------------------------------------------------ loss
        def loss_fn(p, mb, lam):
            logits, value, cvalue = apply(p, mb["obs"])
            logp_all = jax.nn.log_softmax(logits)
            logp = jnp.take_along_axis(logp_all, mb["action"][:, None], axis=-1)[:, 0]

            def clipped_value_loss(v, old, target):
                v_clip = old + jnp.clip(v - old, -c.clip_eps, c.clip_eps)
                return 0.5 * jnp.maximum((v - target) ** 2, (v_clip - target) ** 2).mean()

            v_loss = clipped_value_loss(value, mb["value"], mb["target"])
            c_loss = clipped_value_loss(cvalue, mb["cvalue"], mb["ctarget"])
            adv = lagrangian.combine_advantages(mb["adv"], mb["cadv"], lam)
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            ratio = jnp.exp(logp - mb["logp"])
            surr = jnp.minimum(
                ratio * adv, jnp.clip(ratio, 1 - c.clip_eps, 1 + c.clip_eps) * adv
            ).mean()
            entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
            loss = -surr + c.vf_coef * (v_loss + c_loss) - c.ent_coef * entropy
            return loss, {"entropy": entropy, "value_loss": v_loss}

        def update_minibatch(state, mb):
            p, opt_state, lam = state
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, mb, lam)
            updates, opt_state = tx.update(grads, opt_state, p)
            p = optax.apply_updates(p, updates)
            return (p, opt_state, lam), {"loss": loss, **aux}

        def update_epoch(carry, _):
            p, opt_state, lam, data, key = carry
            key, k_perm = jax.random.split(key)
            perm = jax.random.permutation(k_perm, batch)
            mbs = jax.tree.map(
                lambda x: x.reshape(batch, *x.shape[2:])[perm].reshape(
                    c.num_minibatches, -1, *x.shape[2:]
                ),
                data,
            )
            (p, opt_state, _), stats = jax.lax.scan(update_minibatch, (p, opt_state, lam), mbs)
            return (p, opt_state, lam, data, key), stats

        # ------------------------------------------------------------------ one update
        def update_step(r: Runner, _):
            stage = jnp.minimum(jnp.sum(r.update >= plan.stage_end), plan.stage_end.shape[0] - 1)
            params_s = stage_params_at(stage)
            key, k_reset, k_epoch = jax.random.split(r.key, 3)
            with jax.named_scope("stage_switch"):
                switch = stage != r.stage
                if pool_size:  # this update's resets; a switch takes the first n entries
                    pool = make_reset_pool(env, params_s, k_reset, pool_size)
                    pool = pool._replace(cursor=jnp.where(switch, n, 0).astype(jnp.int32))
                    obs_re, st_re = jax.tree.map(lambda x: x[:n], (pool.obs, pool.state))
                else:
                    pool = None
                    obs_re, st_re = reset_envs(jax.random.split(k_reset, n), params_s)
                pick = lambda a, b: jnp.where(switch, a, b)  # noqa: E731
                r = r.replace(
                    env_state=jax.tree.map(pick, st_re, r.env_state),
                    obs=pick(obs_re, r.obs),
                    ref_q=pick(_initial(ref, n), r.ref_q),
                    ep=jax.tree.map(lambda x: jnp.where(switch, 0.0, x), r.ep),
                    key=key,
                    stage=stage,
                )
            with jax.named_scope("rollout"):
                (r, _, _), traj = jax.lax.scan(env_step, (r, params_s, pool), None, t_len)
            with jax.named_scope("advantages"):
                _, next_v, next_cv = apply(r.params, traj["final_obs"])
                danger = fear_lib.danger_labels(traj["violation"], traj["done"], c.fear_horizon)
                fear_p = fear_lib.fear_penalty(fear_graphdef, r.fear_params, traj["final_obs"])
                reward = traj["reward"] - plan.fear_coef * fear_p
                adv, target = gae(
                    reward, traj["value"], next_v, traj["terminated"], traj["done"],
                    c.gamma, c.gae_lambda,
                )  # fmt: skip
                cadv, ctarget = gae(
                    traj["cost"], traj["cvalue"], next_cv, traj["terminated"], traj["done"],
                    c.gamma, c.gae_lambda,
                )  # fmt: skip
            with jax.named_scope("multiplier"):
                ended = traj["ended"]
                count = traj["done"].astype(jnp.float32).sum()
                lam = lagrangian.update_multiplier(
                    r.lam, ended["cost"].sum(), count, plan.cost_budget, plan.lagrangian_lr
                )
            with jax.named_scope("ppo_update"):
                data = {
                    "obs": traj["obs"], "action": traj["action"], "logp": traj["logp"],
                    "value": traj["value"], "cvalue": traj["cvalue"], "adv": adv,
                    "cadv": cadv, "target": target, "ctarget": ctarget,
                }  # fmt: skip
                (params, opt_state, _, _, _), stats = jax.lax.scan(
                    update_epoch, (r.params, r.opt_state, lam, data, k_epoch), None,
                    c.update_epochs,
                )  # fmt: skip
            with jax.named_scope("fear_update"):
                fear_params, fear_opt_state, fear_loss = fear_lib.fit_step(
                    fear_graphdef, fear_tx, r.fear_params, r.fear_opt_state,
                    traj["final_obs"], danger,
                )  # fmt: skip
            totals = {
                "steps": r.totals["steps"] + batch,
                "violations": r.totals["violations"] + traj["violation"].sum(),
                "ref_violations": r.totals["ref_violations"] + traj["ref_violation"].sum(),
            }
            # V at the start: mean over this update's fresh resets (start-state distribution)
            pobs0 = policy_obs(obs_re, env_q(st_re), _initial(ref, n), params_s, ref)
            value_start = apply(params, pobs0)[1].mean()
            safe_mean = lambda x: jnp.where(count > 0, x.sum() / jnp.maximum(count, 1), jnp.nan)  # noqa: E731
            metrics = {
                **totals,
                "episodes": count,
                "return": safe_mean(ended["ret"]),
                "success": safe_mean(traj["done"] * (1.0 - ended["viol"])),
                "final_success": safe_mean(traj["done"] * (1.0 - ended["ref_viol"])),
                "task_completion": safe_mean(ended["task"]),
                "episode_cost": safe_mean(ended["cost"]),
                "value_start": value_start,
                "lambda": lam,
                "stage": stage,
                "loss": stats["loss"].mean(),
                "entropy": stats["entropy"].mean(),
                "fear_loss": fear_loss,
            }
            r = r.replace(
                params=params, opt_state=opt_state, fear_params=fear_params,
                fear_opt_state=fear_opt_state, lam=lam, update=r.update + 1, totals=totals,
            )  # fmt: skip
            return r, metrics

        # ------------------------------------------------------------------ evaluation
        def evaluate(p, key):
            m = c.eval_envs
            ep_ = plan.eval_params  # one spec, no env axis
            ref_e = ep_.automaton if safeguarded else plan.reference  # the evaluated spec
            eval_goal = goal_states(ref_e)
            obs, st = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, m), ep_)

            def body(carry, k):
                obs, st, ref_q, alive, viol, task, ret = carry
                q = st.q if safeguarded else jnp.zeros(m, jnp.int32)
                params_b = jax.tree.map(lambda x: jnp.broadcast_to(x, (m, *x.shape)), ep_)
                pobs = _policy_obs_m(obs, q, ref_q, params_b)
                action = jnp.argmax(apply(p, pobs)[0], axis=-1)
                # finished episodes are masked by ``alive``: no reset needed
                step = lambda *a: step_without_reset(env, *a)  # noqa: E731
                obs, st, reward, term, trunc, info = jax.vmap(step, in_axes=(0, 0, 0, None))(
                    jax.random.split(k, m), st, action, ep_
                )
                if safeguarded:
                    ref_next = _next(ref_e, ref_q, info["label"])
                    v = info["violation"]
                else:
                    ref_next, v = ref_q, jnp.zeros(m, bool)
                entered = alive & eval_goal[ref_next] & ~task
                viol = viol | (alive & v)
                task = task | entered
                ret = ret + jnp.where(alive, reward + plan.task_reward * entered, 0.0)
                alive = alive & ~(term | trunc)
                return (obs, st, ref_next, alive, viol, task, ret), None

            def _policy_obs_m(obs, q, ref_q, params_b):
                parts = [jnp.reshape(obs, (obs.shape[0], -1)).astype(jnp.float32)]
                if c.reference_obs:
                    parts.append(jax.nn.one_hot(ref_q, ref_e.num_states, dtype=jnp.float32))
                if c.spec_obs:
                    parts.append(jax.vmap(automaton_features)(params_b.automaton, q))
                return jnp.concatenate(parts, axis=-1)

            init = (
                obs, st, _initial(ref_e, m), jnp.ones(m, bool),
                jnp.zeros(m, bool), jnp.zeros(m, bool), jnp.zeros(m, jnp.float32),
            )  # fmt: skip
            (_, _, _, _, viol, task, ret), _ = jax.lax.scan(
                body, init, jax.random.split(key, c.eval_steps)
            )
            return {
                "eval_success": 1.0 - viol.mean(),
                "eval_violation": viol.mean(),
                "eval_task_completion": task.mean(),
                "eval_return": ret.mean(),
            }

        def chunk(r, _):
            r, metrics = jax.lax.scan(update_step, r, None, c.eval_every)
            if not c.evaluate:  # (Craftax: its reset and step would be compiled twice more)
                return r, (metrics, {})
            key, k_eval = jax.random.split(r.key)
            r = r.replace(key=key)
            return r, (metrics, evaluate(r.params, k_eval))

        runner, (metrics, evals) = jax.lax.scan(chunk, runner, None, chunks)
        metrics = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), metrics)
        return runner, {**metrics, **evals}

    def init_params(key: jax.Array, plan: Plan) -> Any:
        """The network params ``train(key, plan)`` starts from."""
        return build_model(jax.random.split(key, 4)[0], sample_obs_dim(plan))[1]

    train.init_params = init_params
    return train
