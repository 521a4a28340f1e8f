"""Compiled automata: a spec as arrays, stepped by one gather ``delta[q, symbol]``.

Shapes (Q = states incl. padding, L = label symbols, K = stacked specs):

=========== ================ ==========================================================
field       shape / dtype    meaning
=========== ================ ==========================================================
delta       int32[Q, L]      next state for (state, symbol)
violation   bool[Q]          violation sinks (absorbing)
accepting   bool[Q]          accepting states
valid       bool[Q]          False for padding states (self-loops, unreachable)
initial     int32[]          initial state
potential   float32[Q]       shaping potential Phi(q), see :func:`state_potential`
=========== ================ ==========================================================

A batch of K specs is the same :class:`Automaton` with a leading ``K`` axis on every field
(:func:`stack_automata`), so ``jax.vmap`` over it runs K specs at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxsafe.spec import Spec, SpecError

__all__ = [
    "POTENTIALS",
    "Automaton",
    "as_numpy",
    "namespace",
    "compile_spec",
    "pad_automaton",
    "run_automaton",
    "stack_automata",
    "state_potential",
    "step_automaton",
    "value_iteration",
]

POTENTIALS = ("accept", "safety", "zero")


@struct.dataclass
class Automaton:
    """A compiled spec (or, with a leading K axis on every field, K padded specs)."""

    delta: jax.Array
    violation: jax.Array
    accepting: jax.Array
    valid: jax.Array
    initial: jax.Array
    potential: jax.Array

    @property
    def num_states(self) -> int:
        """Q, including padding states."""
        return self.delta.shape[-2]

    @property
    def num_symbols(self) -> int:
        """L, the alphabet size."""
        return self.delta.shape[-1]


@partial(jax.jit, static_argnames=("iterations",))
def value_iteration(
    delta: jax.Array,
    target: jax.Array,
    blocked: jax.Array,
    gamma: float | jax.Array,
    iterations: int | None = None,
) -> jax.Array:
    """Optimistic discounted reachability by value iteration over the automaton graph.

    ``V(q) = 1`` if ``target[q]``; ``0`` if ``blocked[q]``; else ``gamma * max_s V(delta[q, s])``.
    The fixed point is ``gamma ** d(q)`` where ``d`` is the fewest symbols from ``q`` to a target
    state avoiding blocked states (``0`` if none is reachable). ``iterations`` defaults to Q, which
    is exact because shortest paths have fewer than Q edges.

    Args:
      delta: int32[Q, L]. target, blocked: bool[Q]. gamma: discount in (0, 1].
    Returns:
      float32[Q].
    """
    q = delta.shape[0]
    target = target.astype(bool)
    blocked = blocked.astype(bool) & ~target

    def body(_, v):
        nxt = gamma * jnp.max(v[delta], axis=-1)
        return jnp.where(target, 1.0, jnp.where(blocked, 0.0, nxt))

    v0 = target.astype(jnp.float32)
    return jax.lax.fori_loop(0, q if iterations is None else iterations, body, v0)


def state_potential(
    delta: jax.Array,
    violation: jax.Array,
    accepting: jax.Array,
    gamma: float,
    kind: str = "accept",
) -> jax.Array:
    """Shaping potential Phi[Q] (float32, in ``[0, 1]``, 0 on violation sinks) for the
    potential-based term ``F = gamma * Phi(q') - Phi(q)`` (``Phi(terminal) = 0``).

    * ``"accept"`` (default, reward-machine style): ``Phi(q) = gamma ** d_acc(q)`` with ``d_acc``
      the fewest label steps from ``q`` to an accepting state without passing a violation state;
      1 on accepting states, 0 on violation states and where acceptance is unreachable. Moving
      towards acceptance is rewarded; entering a violation costs ``Phi(q)``.
    * ``"safety"``: ``Phi(q) = 1 - gamma ** d_viol(q)``, the discounted distance from a
      violation: 0 on violation states, ``1 - gamma`` one symbol away, 1 where no violation is
      reachable. Moving away from violations is rewarded.
    * ``"zero"``: all zeros (no shaping).

    Both non-zero potentials are non-negative and vanish on the sink, so with the paper reward a
    violation pays ``-0.1 - Phi(q) <= 0.1 + gamma * Phi(q') - Phi(q)``, the pay of a safe step.
    For the paper's safeguards every non-sink state is accepting, so "accept" is 1 off the sink
    and 0 on it.
    """
    if kind == "accept":
        return value_iteration(delta, accepting, violation, gamma)
    if kind == "safety":
        return 1.0 - value_iteration(delta, violation, jnp.zeros_like(violation), gamma)
    if kind == "zero":
        return jnp.zeros(delta.shape[0], jnp.float32)
    raise SpecError(f"unknown potential {kind!r}; choose one of {POTENTIALS}")


def compile_spec(
    spec: Spec, *, num_states: int | None = None, potential: str = "accept", gamma: float = 0.9
) -> Automaton:
    """Compile a validated :class:`~jaxsafe.spec.Spec` into arrays, padded to ``num_states``.

    The potential (see :func:`state_potential`) is computed before padding; padding states get
    potential 0, are neither violation nor accepting, self-loop on every symbol, and are
    unreachable.
    """
    q = spec.num_states
    delta = jnp.asarray(spec.delta, jnp.int32)
    violation = jnp.asarray(spec.violation)
    accepting = jnp.asarray(spec.accepting)
    aut = Automaton(
        delta=delta,
        violation=violation,
        accepting=accepting,
        valid=jnp.ones(q, bool),
        initial=jnp.asarray(spec.initial, jnp.int32),
        potential=state_potential(delta, violation, accepting, gamma, potential),
    )
    return aut if num_states is None else pad_automaton(aut, num_states)


def pad_automaton(aut: Automaton, num_states: int) -> Automaton:
    """Pad one automaton to ``num_states`` states (self-looping, unreachable padding)."""
    q = aut.num_states
    if aut.delta.ndim != 2:
        raise ValueError("pad_automaton takes one automaton, not a stacked batch")
    if num_states < q:
        raise SpecError(f"cannot pad an automaton of {q} states down to {num_states}")
    extra = num_states - q
    if extra == 0:
        return aut
    loops = jnp.broadcast_to(
        jnp.arange(q, num_states, dtype=jnp.int32)[:, None], (extra, aut.num_symbols)
    )

    def grow(x, fill):
        return jnp.concatenate([x, jnp.full((extra,), fill, x.dtype)])

    return Automaton(
        delta=jnp.concatenate([aut.delta, loops]),
        violation=grow(aut.violation, False),
        accepting=grow(aut.accepting, False),
        valid=grow(aut.valid, False),
        initial=aut.initial,
        potential=grow(aut.potential, 0.0),
    )


def stack_automata(
    items: Sequence[Spec | Automaton],
    *,
    num_states: int | None = None,
    potential: str = "accept",
    gamma: float = 0.9,
) -> Automaton:
    """Stack K specs (or compiled automata) of different sizes into one padded batch.

    Every field gains a leading K axis; Q is the largest state count (or ``num_states``). Specs
    must share one alphabet, automata one symbol count L.
    """
    if not items:
        raise SpecError("stack_automata needs at least one spec")
    specs = [s for s in items if isinstance(s, Spec)]
    if specs:
        first = specs[0]
        for s in specs[1:]:
            if s.alphabet != first.alphabet:
                raise SpecError(
                    f"cannot stack {first.name!r} and {s.name!r}: different alphabets "
                    f"{first.alphabet} vs {s.alphabet}"
                )
    auts = [
        compile_spec(s, potential=potential, gamma=gamma) if isinstance(s, Spec) else s
        for s in items
    ]
    sizes = {a.num_symbols for a in auts}
    if len(sizes) != 1:
        raise SpecError(f"cannot stack automata over different symbol counts {sorted(sizes)}")
    q = max(a.num_states for a in auts) if num_states is None else num_states
    padded = [pad_automaton(a, q) for a in auts]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *padded)


def namespace(aut: Automaton):
    """``numpy`` if the automaton holds NumPy arrays (host side), else ``jax.numpy``."""
    return np if isinstance(aut.delta, np.ndarray) else jnp


def step_automaton(aut: Automaton, q: jax.Array, symbol: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One automaton step: ``q' = delta[q, symbol]``, for JAX or NumPy leaves (see
    :func:`namespace`).

    Out-of-range symbols are **clamped** into ``[0, L)`` and flagged (no error is raised inside
    jit). Returns ``(q' int32[...], out_of_range bool[...])``.
    """
    xp = namespace(aut)
    symbol = xp.asarray(symbol, xp.int32)
    out_of_range = (symbol < 0) | (symbol >= aut.num_symbols)
    symbol = xp.clip(symbol, 0, aut.num_symbols - 1)
    return aut.delta[q, symbol], out_of_range


def run_automaton(aut: Automaton, symbols: jax.Array) -> jax.Array:
    """States visited while reading ``symbols`` (int32[T]) from the initial state: int32[T]."""

    def body(q, s):
        q, _ = step_automaton(aut, q, s)
        return q, q

    return jax.lax.scan(body, aut.initial, jnp.asarray(symbols, jnp.int32))[1]


def as_numpy(aut: Automaton) -> Automaton:
    """The same automaton with NumPy leaves (for the host-side wrapper)."""
    return jax.tree.map(np.asarray, aut)
