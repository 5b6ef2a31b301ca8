"""Plans-file routes: architecture plans (``plan-arch``), and later context/patch-size plans."""

from nnunet_robustness.plans.arch_plans import ARCH_PRESETS, ArchChoice, make_arch_plans, write_arch_plans

__all__ = ["ARCH_PRESETS", "ArchChoice", "make_arch_plans", "write_arch_plans"]
