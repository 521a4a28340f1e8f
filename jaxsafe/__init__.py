"""jaxsafe: progressive safeguards for safe RL as automata stepped inside jit.

A safety specification (YAML or dict, :mod:`jaxsafe.spec`) compiles to transition tensors
(:mod:`jaxsafe.automaton`); :class:`SafeguardWrapper` steps it beside any gymnax environment
given a labelling function (:mod:`jaxsafe.labelling`), :class:`HostSafeguard` does the same
around Gymnasium environments; both call the one array-level :func:`safeguard_step`.
:func:`rollout` is the library's one ``vmap(reset)`` + ``scan(vmap(step))``; :mod:`jaxsafe.resets`
restarts finished episodes from a pool of resets made once per rollout (Craftax: no world
generation per step);
:mod:`jaxsafe.agents` holds the jitted tabular Q-learner with progressive safeguards.
:mod:`jaxsafe.envs` holds the paper's gridworld and Craftax labels; ``jaxsafe/specs/*.yaml`` the
shipped specs (``load_spec("sg3")``).
"""

from jaxsafe.automaton import (
    Automaton,
    compile_spec,
    pad_automaton,
    run_automaton,
    stack_automata,
    state_potential,
    step_automaton,
    value_iteration,
)
from jaxsafe.host import HostSafeguard
from jaxsafe.labelling import Labeller, check_alphabet, propositions_to_symbol
from jaxsafe.render import render_png, to_dot
from jaxsafe.rollout import Trajectory, random_policy, reset_envs, rollout, rollout_from
from jaxsafe.spec import (
    Alphabet,
    Spec,
    SpecError,
    SpecWarning,
    available_specs,
    load_spec,
    parse_guard,
    parse_spec,
)
from jaxsafe.wrappers import (
    REWARD_MODES,
    SafeguardOutcome,
    SafeguardParams,
    SafeguardState,
    SafeguardWrapper,
    safeguard_step,
)

__all__ = [
    "REWARD_MODES",
    "Alphabet",
    "Automaton",
    "HostSafeguard",
    "Labeller",
    "SafeguardOutcome",
    "SafeguardParams",
    "SafeguardState",
    "SafeguardWrapper",
    "Spec",
    "SpecError",
    "SpecWarning",
    "Trajectory",
    "available_specs",
    "check_alphabet",
    "compile_spec",
    "load_spec",
    "pad_automaton",
    "parse_guard",
    "parse_spec",
    "propositions_to_symbol",
    "random_policy",
    "render_png",
    "reset_envs",
    "rollout",
    "rollout_from",
    "run_automaton",
    "safeguard_step",
    "stack_automata",
    "state_potential",
    "step_automaton",
    "to_dot",
    "value_iteration",
]
