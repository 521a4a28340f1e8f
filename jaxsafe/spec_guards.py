"""The guard language of specs: boolean expressions over label names, parsed without ``eval``.

Grammar: ``or := and ('or' and)*``, ``and := not ('and' not)*``,
``not := 'not' not | NAME | 'true' | 'false' | '(' or ')'``; ``!``, ``&``, ``|`` are accepted for
``not``, ``and``, ``or``. A guard evaluates to ``bool[L]``, the symbols on which it holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from jaxsafe.spec_types import SpecError

__all__ = ["evaluate_guard", "guard_names", "parse_guard"]

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


def guard_names(node: tuple) -> set[str]:
    if node[0] == "var":
        return {node[1]}
    if node[0] == "const":
        return set()
    return set().union(*(guard_names(c) for c in node[1:]))


def evaluate_guard(node: tuple, columns: Mapping[str, np.ndarray], size: int) -> np.ndarray:
    """bool[L]: the symbols on which ``node`` holds; ``columns`` maps names to bool[L]."""
    op = node[0]
    if op == "var":
        return columns[node[1]]
    if op == "const":
        return np.full(size, node[1])
    if op == "not":
        return ~evaluate_guard(node[1], columns, size)
    a, b = (evaluate_guard(c, columns, size) for c in node[1:])
    return (a & b) if op == "and" else (a | b)
