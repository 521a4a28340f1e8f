"""The installed environment is the one constraints.txt pins, and every package imports."""

import importlib
import importlib.metadata
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pins(file: str = "constraints.txt") -> dict[str, str]:
    lines = (ROOT / file).read_text().splitlines()
    found = (re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line) for line in lines)
    return {m.group(1).lower().replace("_", "-"): m.group(2) for m in found if m}


@pytest.mark.parametrize("name", ["jaxcommon", "jaxmoe", "jaxstyle", "jaxsafe", "experiments"])
def test_package_imports(name):
    assert importlib.import_module(name).__name__ == name


@pytest.mark.parametrize(
    "dist", ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "gymnax", "tensorflow-datasets"]
)
def test_installed_version_is_the_pinned_one(dist):
    assert importlib.metadata.version(dist) == pins()[dist]


def _declared(extra_is_beam: bool) -> set[str]:
    """Requirement names of the package: the [beam] extra's alone, or all the others."""
    requires = importlib.metadata.requires("jax-style-moe-safe")
    chosen = [r for r in requires if ('extra == "beam"' in r) == extra_is_beam]
    names = {re.split(r"[\s\[<>=;!~]", r, maxsplit=1)[0] for r in chosen}
    return {n.lower().replace("_", "-") for n in names} - {"jax-style-moe-safe"}


def test_every_declared_requirement_is_pinned():
    missing = sorted(n for n in _declared(extra_is_beam=False) if n not in pins())
    assert not missing, f"add to constraints.txt (make constraints): {missing}"


def test_the_beam_extra_is_pinned_in_its_own_constraints_file():
    """apache-beam needs older pillow/protobuf than constraints.txt: it has .venv-beam."""
    beam = _declared(extra_is_beam=True)
    assert beam == {"apache-beam"}
    missing = sorted(n for n in beam if n not in pins("constraints-beam.txt"))
    assert not missing, f"add to constraints-beam.txt: {missing}"
