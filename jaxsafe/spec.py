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

The guard language lives in :mod:`jaxsafe.spec_guards`, the data types in
:mod:`jaxsafe.spec_types` and the checks in :mod:`jaxsafe.spec_validate`; this module loads YAML
text, files and the shipped specs. Validation raises :class:`SpecError` naming the state and
guard for unknown labels or states, a missing initial state, overlapping guards
(non-determinism) and incomplete transitions, and warns (:class:`SpecWarning`) for unreachable
states, guards that match nothing and unused ``else``.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Mapping
from typing import Any

import yaml

from jaxsafe.spec_guards import parse_guard
from jaxsafe.spec_types import MAX_PROPOSITIONS, Alphabet, Spec, SpecError, SpecWarning
from jaxsafe.spec_validate import validate

__all__ = [
    "MAX_PROPOSITIONS",
    "Alphabet",
    "Spec",
    "SpecError",
    "SpecWarning",
    "available_specs",
    "load_spec",
    "parse_guard",
    "parse_spec",
]


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
        return validate(data, source, default_name)
    except SpecError as e:
        msg = str(e)
        raise SpecError(msg if msg.startswith(source) else f"{source}: {msg}") from None
