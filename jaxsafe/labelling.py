"""Labelling functions: environment state -> one symbol of a spec's alphabet."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsafe.spec import Alphabet, Spec, SpecError

__all__ = ["Labeller", "check_alphabet", "propositions_to_symbol"]


@dataclasses.dataclass(frozen=True, eq=False)
class Labeller:
    """A labelling function with the alphabet it produces.

    ``fn`` returns an int symbol in ``[0, alphabet.size)``. In the gymnax wrapper it is called as
    ``fn(env_state)`` (pure, jittable, unbatched); in the host wrapper as ``fn(env, obs, info)``.
    Compared and hashed by identity, so wrappers holding it stay valid static jit arguments.
    """

    alphabet: Alphabet
    fn: Callable[..., Any]

    def __call__(self, *args) -> Any:
        return self.fn(*args)

    @classmethod
    def categorical(cls, names, fn) -> Labeller:
        """``fn(...)`` returns the index of the label that holds."""
        return cls(Alphabet("labels", tuple(names)), fn)

    @classmethod
    def from_propositions(cls, names, fn) -> Labeller:
        """``fn(...)`` returns bool[P] (proposition ``i`` holds); encoded as ``sum_i b_i 2**i``."""
        return cls(
            Alphabet("propositions", tuple(names)), lambda *a: propositions_to_symbol(fn(*a))
        )


def propositions_to_symbol(held: Any) -> Any:
    """bool[..., P] -> int32[...] symbol ``sum_i held[i] * 2**i``.

    JAX arrays (including tracers) stay on device; lists and NumPy arrays (the host wrapper) are
    encoded with NumPy.
    """
    if isinstance(held, list | tuple) and any(isinstance(h, jax.Array) for h in held):
        held = jnp.stack([jnp.asarray(h, bool) for h in held], axis=-1)
    if isinstance(held, jax.Array):
        weights = jnp.left_shift(1, jnp.arange(held.shape[-1], dtype=jnp.int32))
        return jnp.sum(held.astype(jnp.int32) * weights, axis=-1)
    held = np.asarray(held, bool)
    weights = np.left_shift(1, np.arange(held.shape[-1], dtype=np.int64))
    return np.sum(held * weights, axis=-1)


def check_alphabet(spec: Spec, alphabet: Alphabet) -> None:
    """Raise :class:`SpecError` unless ``spec`` reads exactly the labeller's ``alphabet``."""
    if spec.alphabet == alphabet:
        return
    a, b = spec.alphabet, alphabet
    if a.kind != b.kind:
        detail = f"the spec reads {a.kind} but the labelling function produces {b.kind}"
    elif set(a.names) == set(b.names):
        detail = f"same names in a different order: spec {list(a.names)}, labeller {list(b.names)}"
    else:
        only_spec = sorted(set(a.names) - set(b.names))
        only_lab = sorted(set(b.names) - set(a.names))
        detail = f"only in the spec: {only_spec}; only in the labelling function: {only_lab}"
    raise SpecError(
        f"spec {spec.name!r} ({spec.source}) does not match the labelling function's alphabet: "
        f"{detail}"
    )
