"""Agents that run entirely under jit: tabular Q-learning and PPO (with the Lagrangian and
intrinsic-fear baselines and adaptation to new specs) under progressive safeguards."""

from jaxsafe.agents import adaptation, fear, lagrangian, ppo
from jaxsafe.agents.ppo import Plan, make_plan, make_train
from jaxsafe.agents.qlearning import (
    AUTHORS_EPISODES_PER_STAGE,
    Curriculum,
    QLearner,
    QLearningConfig,
    QState,
    final_params,
    greedy_policy,
    make_curriculum,
    make_qlearning,
    stage_episodes,
    stage_summary,
    task_states,
)

__all__ = [
    "Plan",
    "adaptation",
    "fear",
    "lagrangian",
    "make_plan",
    "make_train",
    "ppo",
    "AUTHORS_EPISODES_PER_STAGE",
    "Curriculum",
    "QLearner",
    "QLearningConfig",
    "QState",
    "final_params",
    "greedy_policy",
    "make_curriculum",
    "make_qlearning",
    "stage_episodes",
    "stage_summary",
    "task_states",
]
