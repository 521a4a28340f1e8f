"""Safety specifications: a human-writable format, parsed (never ``eval``-ed) and validated.

A specification is a deterministic finite automaton over a label alphabet. It is written as a
YAML file or a Python dict with these keys::

    name: sg1                        # optional (default: the file stem, or "spec")
    description: free text           # optional
    alphabet:
      labels: [safe, lava, wood]     # categorical: exactly one label holds per step (L = 3)
      # or
      propositions: [near_lava, has_sword]   # any subset holds per step (L = 2**P)
    define:                          # optional named conditions (macros)
      haz: lava or creeper
    states: [q0, q1, X]
    initial: q0
    violation: [X]                   # sink states; they need no transitions
    accepting: [q0, q1]
    transitions:
      q0:
        wood: q1                     # guard (boolean condition) -> target state
        haz: X
        else: q0                     # every symbol no other guard of q0 matches
      q1: {haz: X, else: q1}

Guards are boolean expressions over the alphabet's names and the ``define`` macros, with
``and`` / ``or`` / ``not`` (or ``&`` / ``|`` / ``!``), parentheses, ``true`` and ``false``. For a
categorical alphabet the name ``wood`` means "the current label is wood", so names are mutually
exclusive; for propositions each name is one bit of the symbol ``sum_i p_i * 2**i``.

Validation raises :class:`SpecError` naming the state and guard for unknown labels or states, a
missing initial state, overlapping guards (non-determinism) and incomplete transitions, and warns
(:class:`SpecWarning`) for unreachable states, guards that match nothing and unused ``else``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import yaml

__all__ = [
    "Alphabet",
    "Spec",
    "SpecError",
    "SpecWarning",
    "available_specs",
    "load_spec",
    "parse_guard",
    "parse_spec",
]

MAX_PROPOSITIONS = 16
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = frozenset({"and", "or", "not", "true", "false", "else"})
_TOP_KEYS = frozenset(
    {"name", "description", "alphabet", "define", "states", "initial", "violation", "accepting",
     "transitions"}
)  # fmt: skip


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
            _check_name(n, f"alphabet {self.kind}")
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


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str):
        raise SpecError(
            f"{what}: name {name!r} is a {type(name).__name__}, not a string "
            "(YAML reads yes/no/on/off/true/false and numbers as non-strings; quote them)"
        )
    if not _NAME.match(name) or name in _RESERVED:
        raise SpecError(
            f"{what}: {name!r} is not a valid name (letters, digits, '_'; not starting with a "
            f"digit; not one of {sorted(_RESERVED)})"
        )


# ----------------------------------------------------------------------------- guards

_TOKEN = re.compile(r"\s*(?:([()!&|])|([A-Za-z_][A-Za-z0-9_]*))")
_SYMBOL_OPS = {"!": "not", "&": "and", "|": "or"}


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SpecError(f"guard {text!r}: unexpected character {text[pos:].strip()[0]!r}")
        tok = m.group(1) or m.group(2)
        tokens.append(_SYMBOL_OPS.get(tok, tok))
        pos = m.end()
    return tokens


def parse_guard(text: str) -> tuple:
    """Parse a guard into a tiny AST of tuples (no ``eval``).

    Grammar: ``or := and ('or' and)*``, ``and := not ('and' not)*``,
    ``not := 'not' not | NAME | 'true' | 'false' | '(' or ')'``.
    Returns ``('var', name)``, ``('const', bool)``, ``('not', a)``, ``('and', a, b)`` or
    ``('or', a, b)``.
    """
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"guard {text!r} must be a non-empty string")
    tokens = _tokenize(text)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take(expected=None):
        nonlocal pos
        tok = peek()
        if tok is None:
            found = f"expected {expected!r} but " if expected else "unexpected "
            raise SpecError(f"guard {text!r}: {found}end of expression")
        if expected is not None and tok != expected:
            raise SpecError(f"guard {text!r}: expected {expected!r}, found {tok!r}")
        pos += 1
        return tok

    def parse_or():
        node = parse_and()
        while peek() == "or":
            take()
            node = ("or", node, parse_and())
        return node

    def parse_and():
        node = parse_not()
        while peek() == "and":
            take()
            node = ("and", node, parse_not())
        return node

    def parse_not():
        tok = take()
        if tok == "not":
            return ("not", parse_not())
        if tok == "(":
            node = parse_or()
            take(")")
            return node
        if tok in ("true", "false"):
            return ("const", tok == "true")
        if tok in (")", "and", "or", "else"):
            raise SpecError(f"guard {text!r}: unexpected {tok!r}")
        return ("var", tok)

    node = parse_or()
    if pos != len(tokens):
        raise SpecError(f"guard {text!r}: unexpected {tokens[pos]!r} after a complete expression")
    return node


def _guard_names(node: tuple) -> set[str]:
    if node[0] == "var":
        return {node[1]}
    if node[0] == "const":
        return set()
    return set().union(*(_guard_names(c) for c in node[1:]))


def _evaluate(node: tuple, columns: Mapping[str, np.ndarray], size: int) -> np.ndarray:
    """bool[L]: the symbols on which ``node`` holds; ``columns`` maps names to bool[L]."""
    op = node[0]
    if op == "var":
        return columns[node[1]]
    if op == "const":
        return np.full(size, node[1])
    if op == "not":
        return ~_evaluate(node[1], columns, size)
    a, b = (_evaluate(c, columns, size) for c in node[1:])
    return (a & b) if op == "and" else (a | b)


# ----------------------------------------------------------------------------- spec


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise SpecError(
                f"line {line}: duplicate key {key!r} (first on line {seen[key]}); "
                "merge the two guards with 'or' instead"
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _spec_dir():
    return importlib.resources.files("jaxsafe").joinpath("specs")


def available_specs() -> list[str]:
    """Names of the spec files shipped in ``jaxsafe/specs`` (e.g. ``'sg3'``)."""
    return sorted(p.name[:-5] for p in _spec_dir().iterdir() if p.name.endswith(".yaml"))


def load_spec(path_or_name: str | os.PathLike) -> Spec:
    """Load and validate a spec from a YAML file path, or by name from ``jaxsafe/specs``."""
    path = os.fspath(path_or_name)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            text, source = f.read(), path
    else:
        shipped = _spec_dir().joinpath(path if path.endswith(".yaml") else path + ".yaml")
        if not shipped.is_file():
            raise SpecError(
                f"no spec file {path!r}, and no shipped spec of that name; "
                f"shipped specs: {available_specs()}"
            )
        text, source = shipped.read_text(encoding="utf-8"), f"jaxsafe/specs/{shipped.name}"
    default_name = os.path.splitext(os.path.basename(source))[0]
    return parse_spec(text, source=source, default_name=default_name)


def parse_spec(
    spec: Mapping[str, Any] | str, *, source: str | None = None, default_name: str = "spec"
) -> Spec:
    """Validate a spec given as a dict or as YAML text. Raises :class:`SpecError`."""
    if isinstance(spec, str):
        source = source or "<yaml>"
        try:
            data = yaml.load(spec, Loader=_UniqueKeyLoader)  # noqa: S506 (SafeLoader subclass)
        except SpecError as e:
            raise SpecError(f"{source}: {e}") from None
        except yaml.YAMLError as e:
            raise SpecError(f"{source}: not valid YAML: {e}") from None
    else:
        source, data = source or "<dict>", spec
    try:
        return _validate(data, source, default_name)
    except SpecError as e:
        msg = str(e)
        raise SpecError(msg if msg.startswith(source) else f"{source}: {msg}") from None


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
        _check_name(v, key)
    return value


def _validate(data: Any, source: str, default_name: str) -> Spec:
    if not isinstance(data, Mapping):
        raise SpecError(f"a spec must be a mapping of keys, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - _TOP_KEYS)
    if unknown:
        raise SpecError(f"unknown top-level keys {unknown}; allowed: {sorted(_TOP_KEYS)}")
    name = str(data.get("name", default_name))

    # alphabet
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
    alphabet = Alphabet(kind, tuple(names))
    size = alphabet.size
    vals = alphabet.valuations()
    columns = {n: vals[:, i] for i, n in enumerate(alphabet.names)}

    # macros
    define = data.get("define") or {}
    if not isinstance(define, Mapping):
        raise SpecError("'define' must map names to guard expressions")
    for m in define:
        _check_name(m, "define")
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
        cols = {n: resolve(n, f"define {name!r}") for n in _guard_names(node)}
        resolving.pop()
        columns[name] = _evaluate(node, cols, size)
        return columns[name]

    for m in macro_ast:
        resolve(m, f"define {m!r}")

    # states
    states = _as_name_list(data, "states", required=True)
    if not states:
        raise SpecError("'states' is empty")
    dup = sorted({s for s in states if states.count(s) > 1})
    if dup:
        raise SpecError(f"states repeated: {dup}")
    index = {s: i for i, s in enumerate(states)}

    def state_index(s: Any, where: str) -> int:
        _check_name(s, where)
        if s not in index:
            raise SpecError(f"{where}: unknown state {s!r}; states are {states}")
        return index[s]

    if data.get("initial") is None:
        raise SpecError("missing initial state: add 'initial: <state>'")
    initial = state_index(data["initial"], "initial")
    violation = np.zeros(len(states), bool)
    accepting = np.zeros(len(states), bool)
    for s in _as_name_list(data, "violation", required=False):
        violation[state_index(s, "violation")] = True
    for s in _as_name_list(data, "accepting", required=False):
        accepting[state_index(s, "accepting")] = True
    both = [s for s in states if violation[index[s]] and accepting[index[s]]]
    if both:
        raise SpecError(f"states {both} are both violation and accepting")

    # transitions
    trans = data.get("transitions") or {}
    if not isinstance(trans, Mapping):
        raise SpecError("'transitions' must map each state to {guard: target}")
    for s in trans:
        state_index(s, "transitions")
    delta = np.full((len(states), size), -1, np.int32)
    written: list[tuple[str, str, str]] = []
    for q, s in enumerate(states):
        rules = trans.get(s)
        if rules is not None and not isinstance(rules, Mapping):
            raise SpecError(f"transitions of state {s!r} must be a mapping {{guard: target}}")
        if violation[q]:
            if rules:
                for guard, target in rules.items():
                    if target != s:
                        raise SpecError(
                            f"state {s!r} is a violation sink; it cannot move to {target!r} "
                            f"(guard {guard!r}); remove its transitions"
                        )
            delta[q] = q
            continue
        if not rules:
            raise SpecError(
                f"state {s!r} has no transitions; every symbol needs one "
                f"(add 'else: {s}' for a self-loop)"
            )
        masks: list[tuple[str, np.ndarray]] = []
        else_target = None
        for guard, target in rules.items():
            if not isinstance(guard, str):
                raise SpecError(
                    f"state {s!r}: guard {guard!r} is not a string (YAML reads "
                    "yes/no/on/off/true/false and numbers specially; quote it)"
                )
            t = state_index(target, f"state {s!r}, guard {guard!r}: target")
            written.append((s, guard, target))
            if guard.strip() == "else":
                else_target = t
                continue
            where = f"state {s!r}, guard {guard!r}"
            try:
                node = parse_guard(guard)
            except SpecError as e:
                raise SpecError(f"{where}: {e}") from None
            cols = {n: resolve(n, where) for n in _guard_names(node)}
            mask = _evaluate(node, cols, size)
            if not mask.any():
                warnings.warn(
                    f"{source}: state {s!r}, guard {guard!r} matches no symbol",
                    SpecWarning,
                    stacklevel=3,
                )
            for other, omask in masks:
                both_hold = np.flatnonzero(mask & omask)
                if both_hold.size:
                    raise SpecError(
                        f"state {s!r}: guards {other!r} and {guard!r} overlap (non-determinism) "
                        f"on {alphabet.describe(int(both_hold[0]))}"
                        + (f" and {both_hold.size - 1} more symbols" if both_hold.size > 1 else "")
                    )
            masks.append((guard, mask))
            delta[q, mask] = t
        missing = np.flatnonzero(delta[q] < 0)
        if else_target is not None:
            if missing.size == 0:
                warnings.warn(
                    f"{source}: state {s!r}: 'else' is never taken (guards cover every symbol)",
                    SpecWarning,
                    stacklevel=3,
                )
            delta[q, missing] = else_target
        elif missing.size:
            shown = ", ".join(alphabet.describe(int(m)) for m in missing[:3])
            more = f" and {missing.size - 3} more" if missing.size > 3 else ""
            raise SpecError(
                f"state {s!r} has no transition for {shown}{more} (incomplete); "
                f"add a guard or 'else: <state>'"
            )

    # reachability
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
            stacklevel=3,
        )

    return Spec(
        name=name,
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
