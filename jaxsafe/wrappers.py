r"""Safeguard wrapper: any gymnax environment x a compiled spec = the product MDP, inside jit.

The wrapper is itself a gymnax 1.0 :class:`~gymnax.environments.environment.Environment`: it
implements ``step_env`` / ``reset_env`` on top of the inner environment's ``step_env`` /
``reset_env`` and inherits gymnax's jitted ``step`` (6-tuple, auto-reset). The automaton state
therefore lives in the wrapped state, is labelled on the *pre-reset* next state, and resets with
the episode.

The safeguard itself is one array-level function, :func:`safeguard_step`, written against an
array namespace: this wrapper calls it with ``jax.numpy`` leaves inside jit, the host twin
(:class:`jaxsafe.host.HostSafeguard`) with NumPy leaves. With ``q' = delta[q, label(s')]``::

    reward     = r_env + safe_reward * [accepting(q') and not violation(q')]
                       + violation_reward * [violation(q')]
                       + shaping_coef * (gamma * Phi(q') * (1 - terminated) - Phi(q))
    terminated = env_terminated or (terminate_on_violation and violation(q'))
    info       = {..., "violation", "automaton_state" (q'), "accepting", "cost", "env_reward",
                  "label", "label_out_of_range", "episode_violations"}

Reward modes are presets of those numbers (:data:`REWARD_MODES`):

* ``"paper"``: +0.1 per safe step, -0.1 and termination on a violation (the authors' reward).
* ``"shaping"``: the paper reward **plus** potential-based shaping (Ng et al., 1999)
  :math:`F(q, q') = \gamma \Phi(q') - \Phi(q)` with :math:`\Phi(\text{terminal}) = 0`.
  Along any episode the shaping telescopes to :math:`-\Phi(q_0) + \gamma^T \Phi(q_T)`
  (the last term only on truncation), so the optimal policy is the paper reward's. Every
  potential of :data:`jaxsafe.automaton.POTENTIALS` is in ``[0, 1]`` and 0 on violation sinks,
  so a violation pays :math:`-0.1 - \Phi(q)` and a safe step :math:`0.1 + \gamma\Phi(q') -
  \Phi(q)`: a violation never pays more than staying safe.
* ``"cost"``: environment reward untouched, ``info["cost"] = 1`` on a violation, no termination;
  the automaton then restarts from its initial state so later violations are counted again.

All are array fields of :class:`SafeguardParams`, so one compiled program serves every mode and
spec, and a curriculum swaps ``params`` between stages.

Labels outside ``[0, L)`` are clamped and flagged in ``info["label_out_of_range"]`` (no
exception can be raised inside jit).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from jaxsafe.automaton import (
    POTENTIALS,
    Automaton,
    compile_spec,
    namespace,
    stack_automata,
    step_automaton,
)
from jaxsafe.labelling import Labeller, check_alphabet
from jaxsafe.spec import Spec, SpecError

__all__ = [
    "REWARD_MODES",
    "SafeguardOutcome",
    "SafeguardParams",
    "SafeguardState",
    "SafeguardWrapper",
    "safeguard_step",
]

REWARD_MODES: dict[str, dict[str, Any]] = {
    "paper": dict(
        safe_reward=0.1, violation_reward=-0.1, shaping_coef=0.0, terminate_on_violation=True
    ),
    "shaping": dict(
        safe_reward=0.1, violation_reward=-0.1, shaping_coef=1.0, terminate_on_violation=True
    ),
    "cost": dict(
        safe_reward=0.0, violation_reward=0.0, shaping_coef=0.0, terminate_on_violation=False
    ),
}
OBS_MODES = ("concat", "dict", "none")


@struct.dataclass
class SafeguardState:
    """Wrapped state: the inner env state, automaton state ``q`` (int32[]) and the number of
    violations so far this episode (int32[])."""

    env_state: Any
    q: jax.Array
    episode_violations: jax.Array


@struct.dataclass
class SafeguardParams:
    """Inner env params, the compiled spec and the reward numbers (all pytree leaves).

    Rewards are in the environment's reward units; ``gamma`` is the shaping discount.
    """

    env_params: Any
    automaton: Automaton
    safe_reward: jax.Array
    violation_reward: jax.Array
    shaping_coef: jax.Array
    gamma: jax.Array
    terminate_on_violation: jax.Array


class SafeguardOutcome(NamedTuple):
    """What one safeguard step decides (all arrays of the caller's namespace, same batch shape).

    ``q_next`` int32: ``delta[q, symbol]`` (the sink on a violation); ``q_kept``: the state to
    carry on with (the initial state after a non-terminating violation, else ``q_next``);
    ``violation``, ``accepting``, ``terminated``, ``out_of_range`` bool; ``reward`` float32: the
    safeguard's part of the reward (add the environment's).
    """

    q_next: Any
    q_kept: Any
    violation: Any
    accepting: Any
    terminated: Any
    reward: Any
    out_of_range: Any


def safeguard_step(
    aut: Automaton, numbers: Any, q: Any, symbol: Any, env_terminated: Any = False
) -> SafeguardOutcome:
    """One safeguard step for NumPy or JAX arrays (the namespace follows ``aut``'s leaves).

    Args:
      aut: compiled automaton (JAX leaves inside jit, NumPy leaves on the host, see
        :func:`jaxsafe.automaton.as_numpy`).
      numbers: anything with attributes ``safe_reward``, ``violation_reward``, ``shaping_coef``,
        ``gamma``, ``terminate_on_violation`` (a :class:`SafeguardParams`, or a namespace of
        floats).
      q: int[...] current automaton state; symbol: int[...] label of the next env state.
      env_terminated: bool[...] whether the environment itself terminated.

    Returns:
      :class:`SafeguardOutcome`; ``reward = sr [acc & ~viol] + vr [viol] + c (gamma Phi(q')
      (1 - terminated) - Phi(q))`` (see the module docstring).
    """
    xp = namespace(aut)
    q_next, out_of_range = step_automaton(aut, q, symbol)
    violation = aut.violation[q_next]
    accepting = aut.accepting[q_next]
    stop_on_violation = xp.asarray(numbers.terminate_on_violation, bool)
    terminated = xp.logical_or(xp.asarray(env_terminated, bool), stop_on_violation & violation)
    phi_next = xp.where(terminated, 0.0, aut.potential[q_next])
    shaping = numbers.gamma * phi_next - aut.potential[q]
    reward = (
        xp.where(violation, numbers.violation_reward, 0.0)
        + xp.where(accepting & ~violation, numbers.safe_reward, 0.0)
        + numbers.shaping_coef * shaping
    )
    q_kept = xp.where(violation & ~stop_on_violation, aut.initial, q_next)
    return SafeguardOutcome(
        q_next=q_next,
        q_kept=q_kept,
        violation=violation,
        accepting=accepting,
        terminated=terminated,
        reward=xp.asarray(reward, xp.float32),
        out_of_range=out_of_range,
    )


class SafeguardWrapper(environment.Environment):
    """Safeguard a gymnax environment with a spec and a labelling function of its state.

    Args:
      env: a gymnax ``Environment`` (its ``step_env``/``reset_env`` are used; 5-tuple envs such as
        Craftax go through :class:`jaxsafe.envs.adapters.FiveTupleAdapter` first).
      labeller: :class:`~jaxsafe.labelling.Labeller` whose ``fn(env_state)`` returns a symbol.
      spec: the default spec (``default_params``); others via :meth:`make_params`.
      mode: reward preset, one of :data:`REWARD_MODES`.
      gamma: discount for the shaping term and the potential.
      potential: ``"accept"``, ``"safety"`` or ``"zero"`` (see
        :func:`jaxsafe.automaton.state_potential`).
      num_states: pad automata to this many states (keeps the observation size fixed across a
        curriculum of specs); default: the spec's own size.
      obs_mode: ``"concat"`` (flattened obs ++ one-hot q, float32[D + Q]), ``"dict"``
        (``{"obs": obs, "automaton": one_hot}``) or ``"none"`` (obs unchanged).

    Instances are hashed by identity (gymnax jits ``step`` with ``self`` static); don't mutate.
    """

    def __init__(
        self,
        env: environment.Environment,
        labeller: Labeller,
        spec: Spec,
        *,
        mode: str = "paper",
        gamma: float = 0.9,
        potential: str = "accept",
        num_states: int | None = None,
        obs_mode: str = "concat",
    ):
        if not isinstance(labeller, Labeller):
            raise TypeError("labeller must be a jaxsafe.Labeller (alphabet + function)")
        if mode not in REWARD_MODES:
            raise SpecError(f"unknown reward mode {mode!r}; choose one of {sorted(REWARD_MODES)}")
        if obs_mode not in OBS_MODES:
            raise SpecError(f"unknown obs_mode {obs_mode!r}; choose one of {OBS_MODES}")
        if potential not in POTENTIALS:
            raise SpecError(f"unknown potential {potential!r}; choose one of {POTENTIALS}")
        check_alphabet(spec, labeller.alphabet)
        self._env = env
        self.labeller = labeller
        self.safety_spec = spec
        self.mode = mode
        self.gamma = gamma
        self.potential = potential
        self.num_states = num_states
        self.obs_mode = obs_mode
        self._default_params: SafeguardParams | None = None

    @property
    def env(self) -> environment.Environment:
        return self._env

    # ------------------------------------------------------------------ params

    @property
    def default_params(self) -> SafeguardParams:
        if self._default_params is None:  # compiled once; gymnax reads it inside every step
            with jax.ensure_compile_time_eval():  # concrete arrays even if first read in a trace
                self._default_params = self.make_params(self.safety_spec)
        return self._default_params

    def make_params(
        self,
        spec: Spec | list[Spec] | tuple[Spec, ...],
        *,
        env_params: Any = None,
        mode: str | None = None,
        **overrides: Any,
    ) -> SafeguardParams:
        """Params for one spec, or for K specs stacked (every leaf then has a leading K axis,
        the inner ``env_params`` broadcast, so ``jax.vmap(..., in_axes=0)`` runs them all).

        ``overrides`` replace single reward numbers (``safe_reward``, ``violation_reward``,
        ``shaping_coef``, ``gamma``, ``terminate_on_violation``).
        """
        mode = self.mode if mode is None else mode
        if mode not in REWARD_MODES:
            raise SpecError(f"unknown reward mode {mode!r}; choose one of {sorted(REWARD_MODES)}")
        numbers = {**REWARD_MODES[mode], "gamma": self.gamma}
        unknown = set(overrides) - set(numbers)
        if unknown:
            raise TypeError(f"unknown safeguard params {sorted(unknown)}")
        numbers.update(overrides)
        env_params = self._env.default_params if env_params is None else env_params
        batch = isinstance(spec, list | tuple)
        specs = list(spec) if batch else [spec]
        for s in specs:
            check_alphabet(s, self.labeller.alphabet)
        if batch:
            aut = stack_automata(
                specs, num_states=self.num_states, potential=self.potential, gamma=numbers["gamma"]
            )
        else:
            aut = compile_spec(
                spec, num_states=self.num_states, potential=self.potential, gamma=numbers["gamma"]
            )
        params = SafeguardParams(
            env_params=env_params,
            automaton=aut,
            safe_reward=jnp.float32(numbers["safe_reward"]),
            violation_reward=jnp.float32(numbers["violation_reward"]),
            shaping_coef=jnp.float32(numbers["shaping_coef"]),
            gamma=jnp.float32(numbers["gamma"]),
            terminate_on_violation=jnp.bool_(numbers["terminate_on_violation"]),
        )
        if batch:
            k = len(specs)
            broadcast = lambda x: jnp.broadcast_to(jnp.asarray(x), (k, *np.shape(x)))
            params = params.replace(
                **{
                    f: jax.tree.map(broadcast, getattr(params, f))
                    for f in ("env_params", "safe_reward", "violation_reward", "shaping_coef",
                              "gamma", "terminate_on_violation")
                }
            )  # fmt: skip
        return params

    # ------------------------------------------------------------------ dynamics

    def _check_params(self, params: SafeguardParams) -> None:
        if params.automaton.delta.ndim != 2:
            raise SpecError(
                "params hold a stacked batch of specs; vmap over it "
                "(jax.vmap(env.step, in_axes=(0, 0, 0, 0))) instead of calling step directly"
            )
        if params.automaton.num_symbols != self.labeller.alphabet.size:
            raise SpecError(
                f"automaton reads {params.automaton.num_symbols} symbols but the labelling "
                f"function produces {self.labeller.alphabet.size}"
            )

    def _observe(self, obs: Any, q: jax.Array, aut: Automaton) -> Any:
        if self.obs_mode == "none":
            return obs
        one_hot = jax.nn.one_hot(q, aut.num_states, dtype=jnp.float32)
        if self.obs_mode == "dict":
            return {"obs": obs, "automaton": one_hot}
        return jnp.concatenate([jnp.reshape(obs, (-1,)).astype(jnp.float32), one_hot])

    def step_env(
        self, key: jax.Array, state: SafeguardState, action: Any, params: SafeguardParams
    ) -> tuple[Any, SafeguardState, jax.Array, jax.Array, dict[str, Any]]:
        self._check_params(params)
        obs, env_state, reward, env_terminated, info = self._env.step_env(
            key, state.env_state, action, params.env_params
        )
        symbol = jnp.asarray(self.labeller(env_state), jnp.int32)
        out = safeguard_step(params.automaton, params, state.q, symbol, env_terminated)
        new_state = SafeguardState(
            env_state=env_state,
            q=out.q_kept.astype(jnp.int32),
            episode_violations=state.episode_violations + out.violation.astype(jnp.int32),
        )
        info = {
            **info,
            "violation": out.violation,
            "automaton_state": out.q_next,
            "accepting": out.accepting,
            "cost": out.violation.astype(jnp.float32),
            "env_reward": jnp.asarray(reward, jnp.float32),
            "label": symbol,
            "label_out_of_range": out.out_of_range,
            "episode_violations": new_state.episode_violations,
        }
        reward = jnp.asarray(reward, jnp.float32) + out.reward
        aut = params.automaton
        return self._observe(obs, new_state.q, aut), new_state, reward, out.terminated, info

    def reset_env(self, key: jax.Array, params: SafeguardParams) -> tuple[Any, SafeguardState]:
        self._check_params(params)
        obs, env_state = self._env.reset_env(key, params.env_params)
        aut = params.automaton
        state = SafeguardState(
            env_state=env_state, q=aut.initial.astype(jnp.int32), episode_violations=jnp.int32(0)
        )
        return self._observe(obs, state.q, aut), state

    def is_truncated(self, state: SafeguardState, params: SafeguardParams) -> jax.Array:
        return self._env.is_truncated(state.env_state, params.env_params)

    # ------------------------------------------------------------------ spaces

    @property
    def name(self) -> str:
        return f"Safeguard[{self.safety_spec.name}]({self._env.name})"

    @property
    def num_actions(self) -> int:
        return self._env.num_actions

    def action_space(self, params: SafeguardParams | None = None):
        params = self.default_params if params is None else params
        return self._env.action_space(params.env_params)

    def observation_space(self, params: SafeguardParams):
        inner = self._env.observation_space(params.env_params)
        q = params.automaton.num_states
        if self.obs_mode == "none":
            return inner
        auto = spaces.Box(0.0, 1.0, (q,), jnp.float32)
        if self.obs_mode == "dict":
            return spaces.Dict({"obs": inner, "automaton": auto})
        size = int(np.prod(inner.shape))
        low = jnp.concatenate([jnp.broadcast_to(inner.low, inner.shape).reshape(-1), jnp.zeros(q)])
        high = jnp.concatenate([jnp.broadcast_to(inner.high, inner.shape).reshape(-1), jnp.ones(q)])
        return spaces.Box(low, high, (size + q,), jnp.float32)
