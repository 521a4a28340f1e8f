"""jaxsafe: progressive safeguards for safe RL as automata stepped inside jit.

A safety specification (YAML or dict, :mod:`jaxsafe.spec`) compiles to transition tensors
(:mod:`jaxsafe.automaton`); :class:`SafeguardWrapper` steps it beside any gymnax environment
given a labelling function (:mod:`jaxsafe.labelling`), :class:`HostSafeguard` does the same
around Gymnasium environments. :mod:`jaxsafe.envs` holds the paper's gridworld and Craftax
labels; ``jaxsafe/specs/*.yaml`` the shipped specs (``load_spec("sg3")``).
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
from jaxsafe.wrappers import REWARD_MODES, SafeguardParams, SafeguardState, SafeguardWrapper

__all__ = [
    "REWARD_MODES",
    "Alphabet",
    "Automaton",
    "HostSafeguard",
    "Labeller",
    "SafeguardParams",
    "SafeguardState",
    "SafeguardWrapper",
    "Spec",
    "SpecError",
    "SpecWarning",
    "available_specs",
    "check_alphabet",
    "compile_spec",
    "load_spec",
    "pad_automaton",
    "parse_guard",
    "parse_spec",
    "propositions_to_symbol",
    "render_png",
    "run_automaton",
    "stack_automata",
    "state_potential",
    "step_automaton",
    "to_dot",
    "value_iteration",
]
