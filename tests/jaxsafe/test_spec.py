"""Spec format: guard parser, validation errors and warnings, YAML loading."""

import itertools
import warnings

import numpy as np
import pytest

from jaxsafe.spec import (
    Alphabet,
    SpecError,
    SpecWarning,
    available_specs,
    load_spec,
    parse_guard,
    parse_spec,
)

PROPS = ("a", "b", "c")


def _truth(node, env):
    """Reference evaluator of a parsed guard for one valuation (dict name -> bool)."""
    op = node[0]
    if op == "var":
        return env[node[1]]
    if op == "const":
        return node[1]
    if op == "not":
        return not _truth(node[1], env)
    left, right = _truth(node[1], env), _truth(node[2], env)
    return (left and right) if op == "and" else (left or right)


@pytest.mark.parametrize(
    "text, python",
    [
        ("a or b and not c", lambda a, b, c: a or (b and not c)),
        ("(a or b) and not c", lambda a, b, c: (a or b) and not c),
        ("not not a", lambda a, b, c: a),
        ("a & !b | c", lambda a, b, c: (a and not b) or c),
        ("not (a and b) or false", lambda a, b, c: not (a and b)),
        ("true and (c)", lambda a, b, c: c),
    ],
)
def test_guard_parser_follows_not_and_or_precedence(text, python):
    node = parse_guard(text)
    for vals in itertools.product([False, True], repeat=3):
        assert _truth(node, dict(zip(PROPS, vals, strict=True))) == python(*vals), (text, vals)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("a and", "unexpected end"),
        ("(a or b", "expected ')'"),
        ("a b", "after a complete expression"),
        ("a == b", "unexpected character"),
        ("", "non-empty"),
        ("or a", "unexpected 'or'"),
        ("__import__('os')", "unexpected character"),
    ],
)
def test_guard_parser_rejects_malformed_expressions(bad, fragment):
    with pytest.raises(SpecError) as err:
        parse_guard(bad)
    assert fragment in str(err.value)


def test_alphabet_sizes_and_valuations():
    cat = Alphabet("labels", ("x", "y", "z"))
    assert cat.size == 3 and cat.valuations().tolist() == np.eye(3, dtype=bool).tolist()
    props = Alphabet("propositions", ("p", "q"))
    assert props.size == 4
    assert props.valuations().tolist() == [[0, 0], [1, 0], [0, 1], [1, 1]]
    assert props.symbol("q") == 2 and props.symbol("p", "q") == 3 and props.symbol() == 0
    assert props.describe(3) == "{p, q}"


def base_spec(**changes):
    spec = {
        "alphabet": {"labels": ["safe", "lava", "wood"]},
        "states": ["q0", "q1", "bad"],
        "initial": "q0",
        "violation": ["bad"],
        "accepting": ["q0", "q1"],
        "transitions": {
            "q0": {"wood": "q1", "lava": "bad", "else": "q0"},
            "q1": {"lava": "bad", "else": "q1"},
        },
    }
    spec.update(changes)
    return spec


def test_valid_spec_compiles_to_expected_table():
    spec = parse_spec(base_spec())
    assert spec.delta.tolist() == [[0, 2, 1], [1, 2, 1], [2, 2, 2]]
    assert spec.violation.tolist() == [False, False, True]
    assert spec.accepting.tolist() == [True, True, False]
    assert spec.step("q0", "wood") == "q1"


def test_propositional_spec_uses_bitmask_symbols():
    spec = parse_spec(
        {
            "alphabet": {"propositions": ["near", "armed"]},
            "states": ["ok", "bad"],
            "initial": "ok",
            "violation": ["bad"],
            "transitions": {"ok": {"near and not armed": "bad", "else": "ok"}},
        }
    )
    # symbols: 0 = {}, 1 = {near}, 2 = {armed}, 3 = {near, armed}
    assert spec.delta[0].tolist() == [0, 1, 0, 0]


@pytest.mark.parametrize(
    "changes, fragments",
    [
        (
            {"transitions": {"q0": {"wod": "q1", "else": "q0"}, "q1": {"else": "q1"}}},
            ["state 'q0'", "guard 'wod'", "unknown label 'wod'"],
        ),
        (
            {"transitions": {"q0": {"wood": "q9", "else": "q0"}, "q1": {"else": "q1"}}},
            ["state 'q0'", "guard 'wood'", "unknown state 'q9'"],
        ),
        (
            {"transitions": {"q0": {"else": "q0"}, "q1": {"else": "q1"}, "q7": {"else": "q0"}}},
            ["unknown state 'q7'"],
        ),
        ({"initial": None}, ["missing initial state"]),
        ({"initial": "start"}, ["initial", "unknown state 'start'"]),
        (
            {"transitions": {"q0": {"wood": "q1", "wood or lava": "bad"}, "q1": {"else": "q1"}}},
            ["state 'q0'", "'wood' and 'wood or lava' overlap", "on wood"],
        ),
        (
            {"transitions": {"q0": {"wood": "q1", "lava": "bad"}, "q1": {"else": "q1"}}},
            ["state 'q0'", "no transition for safe", "incomplete"],
        ),
        (
            {"transitions": {"q0": {"else": "q0"}}},
            ["state 'q1' has no transitions"],
        ),
        (
            {
                "transitions": {
                    "q0": {"else": "q0"},
                    "q1": {"else": "q1"},
                    "bad": {"else": "q0"},
                }
            },
            ["'bad' is a violation sink"],
        ),
        ({"accepting": ["q0", "bad"]}, ["both violation and accepting"]),
        ({"states": ["q0", "q0", "bad"]}, ["states repeated"]),
        ({"alphabet": {"labels": ["safe", "lava"], "propositions": ["x"]}}, ["exactly one key"]),
        ({"alphabet": {"labels": ["safe", "safe"]}}, ["repeats"]),
        ({"alphabet": {"propositions": [f"p{i}" for i in range(17)]}}, ["at most 16"]),
        ({"transitons": {}}, ["unknown top-level keys ['transitons']"]),
        ({"define": {"haz": "haz or lava"}}, ["refers to itself"]),
        ({"define": {"haz": "fire"}}, ["define 'haz'", "unknown label 'fire'"]),
        ({"states": ["q0", 1, "bad"]}, ["not a string"]),
    ],
)
def test_invalid_specs_raise_errors_naming_state_and_label(changes, fragments):
    with pytest.raises(SpecError) as err:
        parse_spec(base_spec(**changes))
    for fragment in fragments:
        assert fragment in str(err.value), (fragment, str(err.value))


def test_unreachable_state_is_a_warning_naming_it():
    spec = base_spec(
        states=["q0", "q1", "orphan", "bad"],
        transitions={
            "q0": {"wood": "q1", "lava": "bad", "else": "q0"},
            "q1": {"lava": "bad", "else": "q1"},
            "orphan": {"else": "q0"},
        },
    )
    with pytest.warns(SpecWarning, match="'orphan' is unreachable"):
        parse_spec(spec)


def test_guard_matching_nothing_and_unused_else_warn():
    spec = base_spec(
        transitions={
            "q0": {"wood and lava": "q1", "wood": "q1", "lava": "bad", "safe": "q0"},
            "q1": {"lava": "bad", "not lava": "q1", "else": "q0"},
        }
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parse_spec(spec)
    messages = [str(w.message) for w in caught if issubclass(w.category, SpecWarning)]
    assert any("'wood and lava' matches no symbol" in m for m in messages)
    assert any("state 'q1': 'else' is never taken" in m for m in messages)


def test_yaml_duplicate_keys_are_rejected_with_line_number():
    text = """
alphabet: {labels: [safe, lava]}
states: [q0, bad]
initial: q0
violation: [bad]
transitions:
  q0:
    lava: bad
    lava: q0
    else: q0
"""
    with pytest.raises(SpecError, match=r"line 9: duplicate key 'lava' \(first on line 8\)"):
        parse_spec(text)


def test_yaml_boolean_keys_get_a_quoting_hint():
    text = """
alphabet: {propositions: [on_fire]}
states: [q0, bad]
initial: q0
violation: [bad]
transitions:
  q0: {on: bad, else: q0}
"""
    with pytest.raises(SpecError, match="quote it"):
        parse_spec(text)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("states: [q0\ninitial: q0", "not valid YAML"),
        ("- just\n- a list", "must be a mapping"),
        ("alphabet: {labels: [a]}\nstates: [q0]\n", "missing initial"),
    ],
)
def test_malformed_yaml_files_raise_spec_errors_naming_the_file(tmp_path, text, fragment):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_shipped_specs_load_cleanly_and_unknown_names_list_them(tmp_path):
    assert {"sg0", "sg1", "sg2", "sg3", "craftax_lava", "craftax_armed"} <= set(available_specs())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in available_specs():
            assert load_spec(name).name == name
    with pytest.raises(SpecError, match="shipped specs: .*sg3"):
        load_spec("sg9")
    path = tmp_path / "mine.yaml"
    path.write_text(
        "alphabet: {labels: [a, b]}\nstates: [s]\ninitial: s\ntransitions: {s: {else: s}}\n"
    )
    assert load_spec(path).name == "mine"
