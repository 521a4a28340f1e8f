"""The installed environment is the one constraints.txt pins, and every package imports."""

import importlib
import importlib.metadata
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
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


def test_every_declared_requirement_is_pinned():
    requires = importlib.metadata.requires("jax-style-moe-safe")
    names = {re.split(r"[\s\[<>=;!~]", r, maxsplit=1)[0] for r in requires}
    names = {n.lower().replace("_", "-") for n in names}
    missing = sorted(n for n in names if n not in pins() and n != "jax-style-moe-safe")
    assert not missing, f"add to constraints.txt (make constraints): {missing}"
