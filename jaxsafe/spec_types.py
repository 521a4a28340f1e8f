"""Specification data types: the alphabet an automaton reads, the validated spec, the errors."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

__all__ = ["MAX_PROPOSITIONS", "Alphabet", "Spec", "SpecError", "SpecWarning", "check_name"]

MAX_PROPOSITIONS = 16
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RESERVED = frozenset({"and", "or", "not", "true", "false", "else"})


class SpecError(ValueError):
    """A specification is malformed, inconsistent, or does not fit its labelling function."""


class SpecWarning(UserWarning):
    """A specification is valid but probably not what its author meant (e.g. unreachable state)."""


# ----------------------------------------------------------------------------- alphabet


@dataclasses.dataclass(frozen=True)
class Alphabet:
    """The label symbols an automaton reads.

    ``kind == "labels"``: categorical; symbol ``i`` means label ``names[i]`` holds (L = len(names)).
    ``kind == "propositions"``: symbol ``s`` sets proposition ``i`` iff bit ``i`` of ``s`` is 1
    (L = 2**len(names)).
    """

    kind: str
    names: tuple[str, ...]

    def __post_init__(self):
        if self.kind not in ("labels", "propositions"):
            raise SpecError(f"alphabet kind must be 'labels' or 'propositions', got {self.kind!r}")
        object.__setattr__(self, "names", tuple(self.names))
        if not self.names:
            raise SpecError(f"alphabet '{self.kind}' is empty")
        for n in self.names:
            check_name(n, f"alphabet {self.kind}")
        dup = sorted({n for n in self.names if self.names.count(n) > 1})
        if dup:
            raise SpecError(f"alphabet {self.kind} repeats {dup}")
        if self.kind == "propositions" and len(self.names) > MAX_PROPOSITIONS:
            raise SpecError(
                f"{len(self.names)} propositions give 2**{len(self.names)} symbols; "
                f"at most {MAX_PROPOSITIONS} are supported"
            )

    @property
    def size(self) -> int:
        """Number of symbols L."""
        return len(self.names) if self.kind == "labels" else 2 ** len(self.names)

    def valuations(self) -> np.ndarray:
        """bool[L, P]: which name holds under each symbol."""
        p = len(self.names)
        if self.kind == "labels":
            return np.eye(p, dtype=bool)
        bits = np.arange(2**p)[:, None] >> np.arange(p)[None, :]
        return (bits & 1).astype(bool)

    def describe(self, symbol: int) -> str:
        """Human-readable symbol: ``'wood'`` or ``'{near_lava, has_sword}'``."""
        if self.kind == "labels":
            return self.names[symbol]
        held = [n for i, n in enumerate(self.names) if (symbol >> i) & 1]
        return "{" + ", ".join(held) + "}"

    def symbol(self, *held: str) -> int:
        """Symbol index for a label name (labels) or a set of true propositions."""
        for n in held:
            if n not in self.names:
                raise SpecError(f"unknown {self.kind[:-1]} {n!r}; known: {list(self.names)}")
        if self.kind == "labels":
            if len(held) != 1:
                raise SpecError(f"a categorical symbol is exactly one label, got {held}")
            return self.names.index(held[0])
        return sum(1 << self.names.index(n) for n in set(held))


def check_name(name: Any, what: str) -> None:
    if not isinstance(name, str):
        raise SpecError(
            f"{what}: name {name!r} is a {type(name).__name__}, not a string "
            "(YAML reads yes/no/on/off/true/false and numbers as non-strings; quote them)"
        )
    if not _NAME.match(name) or name in RESERVED:
        raise SpecError(
            f"{what}: {name!r} is not a valid name (letters, digits, '_'; not starting with a "
            f"digit; not one of {sorted(RESERVED)})"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Spec:
    """A validated specification; ``delta`` is its transition table as NumPy data.

    Attributes:
      name, description: identification.
      alphabet: the label symbols read each step.
      states: state names; index ``q`` in every array is ``states[q]``.
      initial: index of the initial state.
      violation, accepting: bool[Q] masks (violation states are absorbing sinks).
      delta: int32[Q, L], the next state for each (state, symbol).
      transitions: ``(source, guard text, target)`` as written (``else`` kept), for rendering.
      source: where the spec came from (a path or ``"<dict>"``), used in error messages.
    """

    name: str
    description: str
    alphabet: Alphabet
    states: tuple[str, ...]
    initial: int
    violation: np.ndarray
    accepting: np.ndarray
    delta: np.ndarray
    transitions: tuple[tuple[str, str, str], ...]
    source: str = "<dict>"

    @property
    def num_states(self) -> int:
        return len(self.states)

    @property
    def num_symbols(self) -> int:
        return self.alphabet.size

    def index(self, state: str) -> int:
        """Index of a state name."""
        if state not in self.states:
            raise SpecError(f"{self.name}: unknown state {state!r}; states are {list(self.states)}")
        return self.states.index(state)

    def step(self, state: str, *held: str) -> str:
        """Reference (host) step by names: next state after reading ``held`` (labels/props)."""
        return self.states[self.delta[self.index(state), self.alphabet.symbol(*held)]]
