"""jaxstyle: behavioural stylometry with style vectors (chess).

- ``jaxstyle.chess`` — the data side: encodings, PGN/Lichess reader, tfds dataset,
  synthetic players with known styles.
- :mod:`jaxstyle.adapters` — MHR / Polytropon skill LoRA for any NNX ``Linear`` / ``Conv``,
  mixed per row in skill space; the style table.
- :mod:`jaxstyle.policy` — Maia-like SE-ResNet move policy over the 1880-move vocabulary.
- :mod:`jaxstyle.model` — :class:`StylePolicy` (network + skills + style table), the API
  stylometry and steering build on.
- :mod:`jaxstyle.training` — stages (a) pretrain, (b) multitask, (c) few-shot
  (:func:`~jaxstyle.training.fit_style_vectors`).
- :mod:`jaxstyle.model_io` — save / load a trained model (orbax).

The model modules import JAX and Flax and are loaded on first attribute access.
"""

from __future__ import annotations

import importlib

from jaxstyle import chess

_LAZY = ("adapters", "policy", "model", "training", "model_io")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"jaxstyle.{name}")
    raise AttributeError(f"module 'jaxstyle' has no attribute {name!r}")


__all__ = ["adapters", "chess", "model", "model_io", "policy", "training"]
