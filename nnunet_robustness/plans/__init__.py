"""Plans-file routes: architecture plans (``plan-arch``) and context/patch-size configurations (``plan-context``)."""

from nnunet_robustness.plans.arch_plans import ARCH_PRESETS, ArchChoice, make_arch_plans, write_arch_plans
from nnunet_robustness.plans.context_plans import (
    ContextConfiguration,
    context_configurations,
    memory_matched_batch_size,
    scaled_patch_size,
    write_context_plans,
)

__all__ = ["ARCH_PRESETS", "ArchChoice", "ContextConfiguration", "context_configurations", "make_arch_plans",
           "memory_matched_batch_size", "scaled_patch_size", "write_arch_plans", "write_context_plans"]
