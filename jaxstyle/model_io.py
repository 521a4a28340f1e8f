"""Save and load a trained :class:`~jaxstyle.model.StylePolicy` outside the runner (orbax).

Layout of ``path``::

    style_config.json   the StyleConfig (shapes of every parameter) + format version
    state/              orbax StandardCheckpointer of ``nnx.state(model)``

``load(path)`` rebuilds the model from ``style_config.json`` and restores the weights;
``load(path, expect=config)`` additionally refuses a checkpoint whose layout (players, skills,
heads, rank, routing, network size) differs from ``config``, naming the first differences.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

from jaxstyle.model import StyleConfig, StylePolicy

FORMAT = "jaxstyle.StylePolicy/1"
CONFIG_FILE = "style_config.json"


class LayoutMismatch(ValueError):
    """A saved model's layout does not match the one asked for."""


def _config(config: StyleConfig | Mapping[str, Any]) -> StyleConfig:
    return config if isinstance(config, StyleConfig) else StyleConfig.from_dict(config)


def _flat(data: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def layout_differences(saved: StyleConfig, wanted: StyleConfig) -> list[str]:
    """``["skills.num_heads: 4 (saved) != 8", ...]`` for every field that differs."""
    a, b = _flat(saved.as_dict()), _flat(wanted.as_dict())
    return [
        f"{k}: {a.get(k)!r} (saved) != {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def save(
    model: StylePolicy, config: StyleConfig | Mapping[str, Any] | None, path: str | os.PathLike
) -> Path:
    """Writes ``model`` (built from ``config``; ``None`` = ``model.config``) to ``path``."""
    config = _config(config if config is not None else model.config)
    if layout_differences(model.config, config):
        raise LayoutMismatch(
            "save: the model was not built from this config: "
            + "; ".join(layout_differences(model.config, config)[:3])
        )
    path = Path(path).expanduser().resolve()
    if (path / "state").exists():
        raise FileExistsError(f"{path} already holds a saved model; choose a new path")
    path.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path / "state", nnx.state(model))
    (path / CONFIG_FILE).write_text(
        json.dumps({"format": FORMAT, "config": config.as_dict()}, indent=1) + "\n"
    )
    return path


def load_config(path: str | os.PathLike) -> StyleConfig:
    """The :class:`StyleConfig` a model at ``path`` was saved with."""
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no saved style model at {path} ({CONFIG_FILE} is missing)")
    data = json.loads(file.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{file} has format {data.get('format')!r}, expected {FORMAT!r}")
    return StyleConfig.from_dict(data["config"])


def load(
    path: str | os.PathLike, *, expect: StyleConfig | Mapping[str, Any] | None = None
) -> StylePolicy:
    """Restores a model saved by :func:`save`.

    Raises:
      FileNotFoundError: nothing saved at ``path``.
      LayoutMismatch: ``expect`` differs from the saved layout, or the weights do not fit it.
    """
    path = Path(path).expanduser().resolve()
    config = load_config(path)
    if expect is not None:
        diffs = layout_differences(config, _config(expect))
        if diffs:
            raise LayoutMismatch(f"model at {path} has another layout: " + "; ".join(diffs[:3]))
    abstract = nnx.eval_shape(lambda: StylePolicy(config, rngs=nnx.Rngs(0)))
    graphdef, like = nnx.split(abstract)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            state = checkpointer.restore(path / "state", target)
    except (ValueError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LayoutMismatch(f"weights at {path} do not fit its {CONFIG_FILE}: {first}") from err
    return nnx.merge(graphdef, state)
