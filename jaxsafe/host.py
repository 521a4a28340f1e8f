"""Host-side (NumPy) twin of :class:`jaxsafe.wrappers.SafeguardWrapper` for Gymnasium-API
environments, so the same compiled spec guards any Python environment (model-agnostic).

Same reward formula, modes, observation layout and ``info`` keys as the JAX wrapper, because
both call the one array-level :func:`jaxsafe.wrappers.safeguard_step` (here with NumPy leaves);
the labelling function is called as ``labeller.fn(env, obs, info)`` on the inner env after each
step and returns an int symbol. Gymnasium does not auto-reset, so the caller resets as usual.
"""

from __future__ import annotations

import types
from typing import Any

import gymnasium
import numpy as np

from jaxsafe.automaton import POTENTIALS, as_numpy, compile_spec
from jaxsafe.labelling import Labeller, check_alphabet
from jaxsafe.spec import Spec, SpecError
from jaxsafe.wrappers import OBS_MODES, REWARD_MODES, safeguard_step

__all__ = ["HostSafeguard"]


class HostSafeguard(gymnasium.Wrapper):
    """Safeguard a Gymnasium environment (NumPy automaton stepped on the host).

    Args mirror :class:`~jaxsafe.wrappers.SafeguardWrapper`; ``overrides`` replace single
    reward numbers of the mode preset (``safe_reward``, ``violation_reward``, ``shaping_coef``,
    ``terminate_on_violation``).
    """

    def __init__(
        self,
        env: gymnasium.Env,
        labeller: Labeller,
        spec: Spec,
        *,
        mode: str = "paper",
        gamma: float = 0.9,
        potential: str = "accept",
        num_states: int | None = None,
        obs_mode: str = "concat",
        **overrides: Any,
    ):
        super().__init__(env)
        if mode not in REWARD_MODES:
            raise SpecError(f"unknown reward mode {mode!r}; choose one of {sorted(REWARD_MODES)}")
        if obs_mode not in OBS_MODES:
            raise SpecError(f"unknown obs_mode {obs_mode!r}; choose one of {OBS_MODES}")
        if potential not in POTENTIALS:
            raise SpecError(f"unknown potential {potential!r}; choose one of {POTENTIALS}")
        check_alphabet(spec, labeller.alphabet)
        numbers = dict(REWARD_MODES[mode])
        unknown = set(overrides) - set(numbers)
        if unknown:
            raise TypeError(f"unknown safeguard params {sorted(unknown)}")
        numbers.update(overrides)
        self.numbers = types.SimpleNamespace(**numbers, gamma=float(gamma))
        self.gamma = float(gamma)
        self.labeller = labeller
        self.safety_spec = spec
        self.obs_mode = obs_mode
        self.automaton = as_numpy(
            compile_spec(spec, num_states=num_states, potential=potential, gamma=gamma)
        )
        self.q = int(self.automaton.initial)
        self.episode_violations = 0
        q = self.automaton.num_states
        inner = env.observation_space
        if obs_mode == "concat" and isinstance(inner, gymnasium.spaces.Box):
            low = np.concatenate([np.broadcast_to(inner.low, inner.shape).ravel(), np.zeros(q)])
            high = np.concatenate([np.broadcast_to(inner.high, inner.shape).ravel(), np.ones(q)])
            self.observation_space = gymnasium.spaces.Box(
                low.astype(np.float32), high.astype(np.float32), dtype=np.float32
            )
        elif obs_mode == "dict":
            self.observation_space = gymnasium.spaces.Dict(
                {"obs": inner, "automaton": gymnasium.spaces.Box(0.0, 1.0, (q,), np.float32)}
            )

    def _observe(self, obs: Any) -> Any:
        if self.obs_mode == "none":
            return obs
        one_hot = np.eye(self.automaton.num_states, dtype=np.float32)[self.q]
        if self.obs_mode == "dict":
            return {"obs": obs, "automaton": one_hot}
        return np.concatenate([np.asarray(obs, np.float32).ravel(), one_hot])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.q = int(self.automaton.initial)
        self.episode_violations = 0
        return self._observe(obs), info

    def step(self, action):
        obs, env_reward, env_terminated, truncated, info = self.env.step(action)
        symbol = int(self.labeller(self.env, obs, info))
        out = safeguard_step(self.automaton, self.numbers, self.q, symbol, bool(env_terminated))
        violation, q_next = bool(out.violation), int(out.q_next)
        terminated = bool(out.terminated)
        reward = float(env_reward) + float(out.reward)
        self.q = int(out.q_kept)
        self.episode_violations += int(violation)
        info = {
            **info,
            "violation": violation,
            "automaton_state": q_next,
            "accepting": bool(out.accepting),
            "cost": float(violation),
            "env_reward": float(env_reward),
            "label": symbol,
            "label_out_of_range": bool(out.out_of_range),
            "episode_violations": self.episode_violations,
        }
        return self._observe(obs), reward, terminated, truncated, info
