"""Validation of a spec mapping into a :class:`~jaxsafe.spec_types.Spec`, one section at a time.

Raises :class:`~jaxsafe.spec_types.SpecError` naming the state and guard for unknown labels or
states, a missing initial state, overlapping guards (non-determinism) and incomplete
transitions; warns (:class:`~jaxsafe.spec_types.SpecWarning`) for unreachable states, guards
that match nothing and an unused ``else``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jaxsafe.spec_guards import evaluate_guard, guard_names, parse_guard
from jaxsafe.spec_types import Alphabet, Spec, SpecError, SpecWarning, check_name

__all__ = ["TOP_KEYS", "validate"]

TOP_KEYS = frozenset(
    {"name", "description", "alphabet", "define", "states", "initial", "violation", "accepting",
     "transitions"}
)  # fmt: skip
Resolver = Callable[[str, str], np.ndarray]


def _as_name_list(data: Mapping, key: str, *, required: bool) -> list[str]:
    value = data.get(key)
    if value is None:
        if required:
            raise SpecError(f"missing required key {key!r}")
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise SpecError(f"{key!r} must be a list of names, got {type(value).__name__}")
    for v in value:
        check_name(v, key)
    return value


def _alphabet(data: Mapping) -> Alphabet:
    alpha = data.get("alphabet")
    kinds = ("labels", "propositions")
    if not isinstance(alpha, Mapping) or len(alpha) != 1 or next(iter(alpha)) not in kinds:
        raise SpecError(
            "'alphabet' must be a mapping with exactly one key, 'labels' (categorical) or "
            "'propositions' (boolean), holding a list of names"
        )
    kind, names = next(iter(alpha.items()))
    if not isinstance(names, list):
        raise SpecError(f"alphabet {kind!r} must be a list of names")
    return Alphabet(kind, tuple(names))


def _macros(data: Mapping, alphabet: Alphabet) -> Resolver:
    """``resolve(name, where) -> bool[L]`` for alphabet names and ``define`` macros."""
    size = alphabet.size
    vals = alphabet.valuations()
    columns = {n: vals[:, i] for i, n in enumerate(alphabet.names)}
    define = data.get("define") or {}
    if not isinstance(define, Mapping):
        raise SpecError("'define' must map names to guard expressions")
    for m in define:
        check_name(m, "define")
        if m in columns:
            raise SpecError(f"define: {m!r} shadows an alphabet name")
    macro_ast = {m: parse_guard(define[m]) for m in define}
    resolving: list[str] = []

    def resolve(name: str, where: str) -> np.ndarray:
        if name in columns:
            return columns[name]
        if name not in macro_ast:
            raise SpecError(
                f"{where}: unknown label {name!r}; known {alphabet.kind}: {list(alphabet.names)}"
                + (f", defined: {sorted(macro_ast)}" if macro_ast else "")
            )
        if name in resolving:
            raise SpecError(f"define: {name!r} refers to itself via {' -> '.join(resolving)}")
        resolving.append(name)
        node = macro_ast[name]
        cols = {n: resolve(n, f"define {name!r}") for n in guard_names(node)}
        resolving.pop()
        columns[name] = evaluate_guard(node, cols, size)
        return columns[name]

    for m in macro_ast:
        resolve(m, f"define {m!r}")
    return resolve


def _states(data: Mapping) -> tuple[list[str], Callable[[Any, str], int]]:
    states = _as_name_list(data, "states", required=True)
    if not states:
        raise SpecError("'states' is empty")
    dup = sorted({s for s in states if states.count(s) > 1})
    if dup:
        raise SpecError(f"states repeated: {dup}")
    index = {s: i for i, s in enumerate(states)}

    def state_index(s: Any, where: str) -> int:
        check_name(s, where)
        if s not in index:
            raise SpecError(f"{where}: unknown state {s!r}; states are {states}")
        return index[s]

    return states, state_index


def _masks(data: Mapping, states: list[str], state_index) -> tuple[int, np.ndarray, np.ndarray]:
    if data.get("initial") is None:
        raise SpecError("missing initial state: add 'initial: <state>'")
    initial = state_index(data["initial"], "initial")
    violation = np.zeros(len(states), bool)
    accepting = np.zeros(len(states), bool)
    for s in _as_name_list(data, "violation", required=False):
        violation[state_index(s, "violation")] = True
    for s in _as_name_list(data, "accepting", required=False):
        accepting[state_index(s, "accepting")] = True
    both = [s for q, s in enumerate(states) if violation[q] and accepting[q]]
    if both:
        raise SpecError(f"states {both} are both violation and accepting")
    return initial, violation, accepting


def _sink_rules(s: str, rules: Mapping | None) -> None:
    for guard, target in (rules or {}).items():
        if target != s:
            raise SpecError(
                f"state {s!r} is a violation sink; it cannot move to {target!r} "
                f"(guard {guard!r}); remove its transitions"
            )


def _guard_mask(s: str, guard: Any, resolve: Resolver, size: int, source: str) -> np.ndarray:
    if not isinstance(guard, str):
        raise SpecError(
            f"state {s!r}: guard {guard!r} is not a string (YAML reads "
            "yes/no/on/off/true/false and numbers specially; quote it)"
        )
    where = f"state {s!r}, guard {guard!r}"
    try:
        node = parse_guard(guard)
    except SpecError as e:
        raise SpecError(f"{where}: {e}") from None
    mask = evaluate_guard(node, {n: resolve(n, where) for n in guard_names(node)}, size)
    if not mask.any():
        warnings.warn(f"{source}: {where} matches no symbol", SpecWarning, stacklevel=5)
    return mask


def _state_row(
    s: str, rules: Mapping, state_index, resolve: Resolver, alphabet: Alphabet, source: str
) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """int32[L] next states of one non-sink state, and its transitions as written."""
    row = np.full(alphabet.size, -1, np.int32)
    written, masks, else_target = [], [], None
    for guard, target in rules.items():
        t = state_index(target, f"state {s!r}, guard {guard!r}: target")
        written.append((s, guard, target))
        if isinstance(guard, str) and guard.strip() == "else":
            else_target = t
            continue
        mask = _guard_mask(s, guard, resolve, alphabet.size, source)
        for other, omask in masks:
            both_hold = np.flatnonzero(mask & omask)
            if both_hold.size:
                raise SpecError(
                    f"state {s!r}: guards {other!r} and {guard!r} overlap (non-determinism) "
                    f"on {alphabet.describe(int(both_hold[0]))}"
                    + (f" and {both_hold.size - 1} more symbols" if both_hold.size > 1 else "")
                )
        masks.append((guard, mask))
        row[mask] = t
    missing = np.flatnonzero(row < 0)
    if else_target is not None:
        if missing.size == 0:
            warnings.warn(
                f"{source}: state {s!r}: 'else' is never taken (guards cover every symbol)",
                SpecWarning,
                stacklevel=4,
            )
        row[missing] = else_target
    elif missing.size:
        shown = ", ".join(alphabet.describe(int(m)) for m in missing[:3])
        more = f" and {missing.size - 3} more" if missing.size > 3 else ""
        raise SpecError(
            f"state {s!r} has no transition for {shown}{more} (incomplete); "
            f"add a guard or 'else: <state>'"
        )
    return row, written


def _transitions(data, states, state_index, violation, resolve, alphabet, source):
    trans = data.get("transitions") or {}
    if not isinstance(trans, Mapping):
        raise SpecError("'transitions' must map each state to {guard: target}")
    for s in trans:
        state_index(s, "transitions")
    delta = np.full((len(states), alphabet.size), -1, np.int32)
    written: list[tuple[str, str, str]] = []
    for q, s in enumerate(states):
        rules = trans.get(s)
        if rules is not None and not isinstance(rules, Mapping):
            raise SpecError(f"transitions of state {s!r} must be a mapping {{guard: target}}")
        if violation[q]:
            _sink_rules(s, rules)
            delta[q] = q
            continue
        if not rules:
            raise SpecError(
                f"state {s!r} has no transitions; every symbol needs one "
                f"(add 'else: {s}' for a self-loop)"
            )
        delta[q], row_written = _state_row(s, rules, state_index, resolve, alphabet, source)
        written.extend(row_written)
    return delta, written


def _warn_unreachable(delta: np.ndarray, states: list[str], initial: int, source: str) -> None:
    seen = np.zeros(len(states), bool)
    frontier = [initial]
    seen[initial] = True
    while frontier:
        q = frontier.pop()
        for t in np.unique(delta[q]):
            if not seen[t]:
                seen[t] = True
                frontier.append(int(t))
    for q in np.flatnonzero(~seen):
        warnings.warn(
            f"{source}: state {states[q]!r} is unreachable from {states[initial]!r}",
            SpecWarning,
            stacklevel=4,
        )


def validate(data: Any, source: str, default_name: str) -> Spec:
    """Check every section of a spec mapping and compile its transition table."""
    if not isinstance(data, Mapping):
        raise SpecError(f"a spec must be a mapping of keys, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - TOP_KEYS)
    if unknown:
        raise SpecError(f"unknown top-level keys {unknown}; allowed: {sorted(TOP_KEYS)}")
    alphabet = _alphabet(data)
    resolve = _macros(data, alphabet)
    states, state_index = _states(data)
    initial, violation, accepting = _masks(data, states, state_index)
    delta, written = _transitions(data, states, state_index, violation, resolve, alphabet, source)
    _warn_unreachable(delta, states, initial, source)
    return Spec(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        alphabet=alphabet,
        states=tuple(states),
        initial=initial,
        violation=violation,
        accepting=accepting,
        delta=delta,
        transitions=tuple(written),
        source=source,
    )
