"""A byte-level MoE language model with one balancing arm (SimBal, arXiv:2506.14038). Exact command:

    python -m experiments.train_moe --config experiments/configs/moe.py:cpu

(``make train-moe``). Variants: ``tiny`` (tests, seconds), ``cpu`` (the default; ≤ 10 min on
2 cores), ``host`` (one GPU/TPU host: the paper's MoE-M shape, bfloat16). Pick the arm with
``--config.arm=lbl`` — one of ``none``, ``lbl``, ``simbal``, ``loss_free``,
``loss_free+simbal`` — and switch the output-logit z-loss off with ``--config.z_loss=0``.
A dense baseline with the same active parameters: ``--config.model.dense=True``.

Data: ``data.corpus`` is ``"stdlib"`` (this interpreter's standard library + pydoc_data,
offline), a directory of text files, or ``"tfds:<name>"`` (a tfds text dataset prepared in
``data.tfds_data_dir``, read through ``tfds.data_source``; nothing is downloaded).
"""

import ml_collections

from experiments.configs.common import base_train

ARMS = ("none", "lbl", "simbal", "loss_free", "loss_free+simbal")

_VARIANTS = {
    "tiny": dict(
        model=dict(d_model=32, num_layers=2, num_heads=2, num_experts=4, top_k=2, d_expert=32),
        seq_len=32, batch_size=8, num_steps=8, warmup=2, lr=3e-3, max_bytes=300_000,
        log_every=2, checkpoint_every=4, eval_every=4, eval_batches=1, pes_tokens=64,
        dtype="float32", mesh={"data": -1, "expert": 1},
    ),
    "cpu": dict(
        model=dict(d_model=128, num_layers=4, num_heads=4, num_experts=8, top_k=2, d_expert=128),
        seq_len=128, batch_size=16, num_steps=1000, warmup=100, lr=3e-3, max_bytes=8_000_000,
        log_every=25, checkpoint_every=250, eval_every=250, eval_batches=8, pes_tokens=512,
        dtype="float32", mesh={"data": -1, "expert": 1},
    ),
    "host": dict(  # the paper's MoE-M (d 768, 8 layers, 32 experts top-4) on one accelerator host
        model=dict(d_model=768, num_layers=8, num_heads=12, num_experts=32, top_k=4, d_expert=768),
        seq_len=1024, batch_size=64, num_steps=20_000, warmup=2000, lr=5e-4, max_bytes=None,
        log_every=50, checkpoint_every=1000, eval_every=1000, eval_batches=16, pes_tokens=4096,
        dtype="bfloat16", mesh={"data": -1, "expert": 1},
    ),
}  # fmt: skip


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
    if variant not in _VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r} of moe config; choose one of {list(_VARIANTS)}"
        )
    v = _VARIANTS[variant]
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.arm = "simbal"
    c.z_loss = 1e-5  # output-logit z-loss, equal for every arm (0 = off)
    c.mesh = dict(v["mesh"])
    c.model = ml_collections.ConfigDict(
        {
            **v["model"],
            "moe_every": 1,
            "dense": False,
            "d_ff": 0,  # dense FFN width; 0 = top_k · d_expert (equal active parameters)
            "gating": "softmax",
            "dispatch": "dropless",
            "capacity_factor": 1.25,
            "tie_embeddings": True,
            "rope_theta": 1e4,
            "dtype": v["dtype"],
        }
    )
    c.data = ml_collections.ConfigDict(
        {
            "corpus": "stdlib",
            "max_bytes": v["max_bytes"] or 0,  # 0 = the whole corpus
            "tfds_data_dir": "",  # where a "tfds:<name>" corpus is prepared; "" = tfds' default
            "seq_len": v["seq_len"],
            "val_fraction": 0.05,
            "eval_batches": v["eval_batches"],
            "prefetch": 2,
        }
    )
    c.optim = ml_collections.ConfigDict(
        {
            "learning_rate": v["lr"],
            "warmup_steps": v["warmup"],
            "weight_decay": 0.01,
            "b2": 0.95,
            "clip_norm": 1.0,
        }
    )
    c.train = base_train(
        num_steps=v["num_steps"],
        log_every=v["log_every"],
        checkpoint_every=v["checkpoint_every"],
        max_to_keep=2,
        eval_every=v["eval_every"],
        batch_size=v["batch_size"],
    )
    c.eval = ml_collections.ConfigDict({"pes_tokens": v["pes_tokens"]})
    return c
