"""jaxmoe: sparse Mixture-of-Experts layers with SimBal and classic balancing losses."""

__version__ = "0.1.0"

from jaxmoe.apply import (
    MoEAux,
    MoEParams,
    RoutingStats,
    moe_apply,
    moe_forward,
    moe_shard,
    summarize,
)
from jaxmoe.config import DEFAULT_LOSS_COEFS, GROUPED_MATMULS, MoEConfig
from jaxmoe.dispatch import (
    DispatchPlan,
    TileLayout,
    capacity_plan,
    combine_outputs,
    dispatch_tokens,
    dropless_plan,
    sorted_plan,
    tile_layout,
)
from jaxmoe.experts import all_experts_swiglu, batched_swiglu, grouped_swiglu, swiglu
from jaxmoe.grouped import grouped_matmul, resolve_backend, sorted_swiglu
from jaxmoe.layer import MoELayer, RouterBias
from jaxmoe.losses import (
    load_balancing_loss,
    router_z_loss,
    sequence_routing_stats,
    simbal_loss,
)
from jaxmoe.metrics import (
    max_violation,
    min_over_layers,
    orthogonality_mse,
    pairwise_expert_similarity,
    routing_consistency,
    routing_entropy,
    sequence_expert_utilisation,
    unique_experts,
)
from jaxmoe.parallel import dropless_expert_parallel, exchange_fixed
from jaxmoe.routing import (
    Routing,
    expert_choice,
    gate_scores,
    loss_free_bias_update,
    router_logits,
    token_choice,
)

__all__ = [
    "DEFAULT_LOSS_COEFS",
    "DispatchPlan",
    "GROUPED_MATMULS",
    "MoEAux",
    "MoEConfig",
    "MoELayer",
    "MoEParams",
    "RouterBias",
    "Routing",
    "RoutingStats",
    "TileLayout",
    "all_experts_swiglu",
    "batched_swiglu",
    "capacity_plan",
    "combine_outputs",
    "dispatch_tokens",
    "dropless_expert_parallel",
    "dropless_plan",
    "exchange_fixed",
    "expert_choice",
    "gate_scores",
    "grouped_matmul",
    "grouped_swiglu",
    "load_balancing_loss",
    "loss_free_bias_update",
    "max_violation",
    "min_over_layers",
    "moe_apply",
    "moe_forward",
    "moe_shard",
    "orthogonality_mse",
    "pairwise_expert_similarity",
    "resolve_backend",
    "router_logits",
    "router_z_loss",
    "routing_consistency",
    "routing_entropy",
    "sequence_expert_utilisation",
    "sequence_routing_stats",
    "simbal_loss",
    "sorted_plan",
    "sorted_swiglu",
    "summarize",
    "swiglu",
    "tile_layout",
    "token_choice",
    "unique_experts",
]

# The byte-level MoE language model (jaxmoe.lm, jaxmoe.lm_train) and its offline data (jaxmoe.data).
from jaxmoe import data  # noqa: E402
from jaxmoe.lm import ARMS, ArmCoefs, LMConfig, MoELM, arm_coefs, lm_loss  # noqa: E402
from jaxmoe.lm_train import LMTask, OptimConfig  # noqa: E402

__all__ += [
    "ARMS",
    "ArmCoefs",
    "LMConfig",
    "LMTask",
    "MoELM",
    "OptimConfig",
    "arm_coefs",
    "data",
    "lm_loss",
]
