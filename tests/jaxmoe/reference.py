"""Plain NumPy reference implementations used by the jaxmoe tests (small sizes only)."""

from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def silu(z: np.ndarray) -> np.ndarray:
    return z * sigmoid(z)


def route(x, kernel, k, gating="softmax", renormalize=False, bias=None):
    """Token-choice routing: ``(ids [T, k], gates [T, k], probs [T, E])``, best first."""
    logits = x.astype(np.float64) @ kernel.astype(np.float64)
    if gating == "softmax":
        scores = probs = softmax(logits)
    else:
        scores = sigmoid(logits)
        probs = scores / scores.sum(-1, keepdims=True)
    select = scores if bias is None else scores + bias
    ids = np.argsort(-select, axis=-1, kind="stable")[:, :k]
    gates = np.take_along_axis(scores, ids, -1)
    if renormalize:
        gates = gates / gates.sum(-1, keepdims=True)
    return ids, gates, probs


def expert(x, w_gate, w_up, w_down):
    """One SwiGLU expert on rows ``x [n, d]``."""
    return (silu(x @ w_gate) * (x @ w_up)) @ w_down


def moe(x, kernel, w_gate, w_up, w_down, k, keep=None, **routing):
    """Reference MoE output ``[T, d]``: Σ_j gate_j · expert_{id_j}(x).

    ``keep [T, k]`` (optional, bool) says which assignments are computed (capacity drops).
    """
    x = x.astype(np.float64)
    ids, gates, _ = route(x, kernel, k, **routing)
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(k):
            if keep is not None and not keep[t, j]:
                continue
            e = ids[t, j]
            y[t] += gates[t, j] * expert(x[t : t + 1], w_gate[e], w_up[e], w_down[e])[0]
    return y


def capacity_keep(ids: np.ndarray, num_experts: int, capacity: int) -> np.ndarray:
    """GShard batch-prioritised capacity: all first choices, then second choices, ..."""
    tokens, k = ids.shape
    used = np.zeros(num_experts, int)
    keep = np.zeros((tokens, k), bool)
    for j in range(k):
        for t in range(tokens):
            e = ids[t, j]
            if used[e] < capacity:
                keep[t, j] = True
                used[e] += 1
    return keep
