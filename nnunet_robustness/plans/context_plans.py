"""Context plans: configurations with scaled patch sizes, added to a dataset's plans (``plan-context``).

``nnUNetv2_train D 3d_fullres_ctx0.50 0`` then trains on patches with half the edge length of
``3d_fullres``'s. Each new configuration ``inherits_from`` its source (nnU-Net's own mechanism,
``plans_handler.py``), so it reuses the source's preprocessed data (same ``data_identifier``) and
overrides only ``patch_size`` and ``batch_size``.

Rules (see docs/context_fbr.md):

- **Topology fixed.** The network (stages, strides, kernels) stays the source's; each patch axis is
  rounded to the nearest multiple of the product of that axis' pooling strides (what the U-Net needs
  so that every pooling divides evenly; it equals ``shape_must_be_divisible_by`` of nnU-Net's
  ``get_pool_and_conv_props`` for the source patch), and at least one such multiple. Re-deriving the
  topology per patch size, as nnU-Net's planner would, would change depth and receptive field with
  the context and confound the comparison.
- **Batch size.** Without ``memory_matched`` the source's batch size is kept (more context costs
  more memory). With it, patch voxels x batch size stays at most the source's:
  ``batch = max(UNet_min_batch_size, floor(source_batch * source_voxels / new_voxels))`` with
  nnU-Net's ``UNet_min_batch_size = 2``. Rounding down keeps memory within the budget; only the
  minimum batch size can exceed it, which is reported (``memory_ratio`` > 1). nnU-Net's 5 % dataset
  coverage cap is not applied: it would break the memory match.

The plans file is modified in place (nnU-Net reads configurations only from the plans file), after
a byte-exact backup ``<plans>.json.<timestamp>.bak``; existing configurations are never changed, and
the file is written in nnU-Net's own JSON layout, so their text stays byte-equal.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_path, atomic_write_text
from nnunet_robustness.nnunet_paths import check_name
from nnunet_robustness.plans.arch_plans import _read_plans, _resolved_architecture

# nnU-Net's ExperimentPlanner.UNet_min_batch_size (experiment_planners/default_experiment_planner.py:63);
# an instance attribute set in __init__, so it cannot be read without planning a dataset.
# tests/fbr/test_context_plans.py checks the value against nnU-Net's source.
NNUNET_MIN_BATCH_SIZE = 2
METADATA_KEY = "context_plan"


def context_configuration_name(source: str, scale: float, memory_matched: bool) -> str:
    return f"{source}_ctx{scale:.2f}" + ("_mem" if memory_matched else "")


def divisibility(configuration: dict, source_label: str = "configuration") -> list[int]:
    """Per axis, the product of the network's pooling strides: patch sizes must be multiples of it."""
    architecture = configuration.get("architecture") or {}
    kwargs = architecture.get("arch_kwargs") or {}
    strides = kwargs.get("strides")
    ndim = len(configuration["patch_size"])
    if strides is None:
        raise UserInputError(f"{source_label}: architecture has no 'strides' in arch_kwargs; cannot tell what the "
                             "patch size must be divisible by")
    result = [1] * ndim
    for stride in strides:
        per_axis = [int(stride)] * ndim if isinstance(stride, (int, float)) else [int(s) for s in stride]
        result = [r * s for r, s in zip(result, per_axis)]
    return result


def scaled_patch_size(patch_size: Sequence[int], scale: float, divisible_by: Sequence[int]) -> list[int]:
    """Each axis scaled, then rounded to the nearest multiple of ``divisible_by`` (at least one)."""
    return [max(d, int(math.floor(p * scale / d + 0.5)) * d) for p, d in zip(patch_size, divisible_by)]


def memory_matched_batch_size(source_batch_size: int, source_patch: Sequence[int], patch: Sequence[int],
                              min_batch_size: int = NNUNET_MIN_BATCH_SIZE) -> int:
    """``max(min_batch_size, floor(source_batch * source_voxels / voxels))`` (integer arithmetic)."""
    return max(min_batch_size, (source_batch_size * math.prod(source_patch)) // math.prod(patch))


@dataclass(frozen=True)
class ContextConfiguration:
    name: str
    source: str
    scale: float
    patch_size: list[int]
    batch_size: int
    memory_matched: bool
    source_patch_size: list[int]
    source_batch_size: int
    divisible_by: list[int]

    @property
    def memory_ratio(self) -> float:
        """patch voxels x batch size relative to the source's."""
        return (math.prod(self.patch_size) * self.batch_size) / (math.prod(self.source_patch_size)
                                                                  * self.source_batch_size)

    def plans_entry(self) -> dict:
        return {
            "inherits_from": self.source,
            "patch_size": list(self.patch_size),
            "batch_size": self.batch_size,
            METADATA_KEY: {
                "created_by": "nnunet-robust plan-context",
                "source_configuration": self.source,
                "scale": self.scale,
                "memory_matched": self.memory_matched,
                "source_patch_size": list(self.source_patch_size),
                "source_batch_size": self.source_batch_size,
                "divisible_by": list(self.divisible_by),
                "memory_ratio": round(self.memory_ratio, 6),
            },
        }


def resolved_configuration(configs: dict, name: str | None) -> dict:
    """The configuration with its parents' values, as nnU-Net's PlansManager resolves ``inherits_from``."""
    chain, seen = [], set()
    while name is not None:
        if name in seen or name not in configs:
            break
        seen.add(name)
        chain.append(configs[name])
        name = configs[name].get("inherits_from")
    resolved: dict = {}
    for cfg in reversed(chain):
        resolved.update(cfg)
    return resolved


def context_configurations(plans: dict, source: str, scales: Sequence[float], memory_matched: bool = False,
                           source_label: str = "plans") -> list[ContextConfiguration]:
    configs = plans["configurations"]
    if source not in configs:
        raise UserInputError(f"{source_label}: no configuration {source}; available: {', '.join(configs)}")
    if not scales:
        raise UserInputError("--scales: give at least one scale, e.g. --scales 0.5 0.75 1.0 1.25")
    bad = [s for s in scales if not (math.isfinite(s) and s > 0)]
    if bad:
        raise UserInputError(f"--scales: {bad[0]:g} is not a positive number")
    resolved = resolved_configuration(configs, source)
    resolved["architecture"] = _resolved_architecture(configs, source)
    if resolved.get("patch_size") is None or resolved.get("batch_size") is None:
        raise UserInputError(f"{source_label}, configuration {source}: no patch_size/batch_size")
    label = f"{source_label}, configuration {source}"
    divisible_by = divisibility(resolved, label)
    source_patch = [int(p) for p in resolved["patch_size"]]
    source_batch = int(resolved["batch_size"])
    if any(p % d for p, d in zip(source_patch, divisible_by)):
        raise UserInputError(f"{label}: patch size {source_patch} is not divisible by the pooling {divisible_by}")
    result, names = [], {}
    for scale in scales:
        name = context_configuration_name(source, scale, memory_matched)
        if name in names:
            raise UserInputError(f"--scales {names[name]:g} and {scale:g} both give configuration {name}")
        names[name] = scale
        patch = scaled_patch_size(source_patch, scale, divisible_by)
        batch = memory_matched_batch_size(source_batch, source_patch, patch) if memory_matched else source_batch
        result.append(ContextConfiguration(name, source, round(float(scale), 6), patch, batch, memory_matched,
                                           source_patch, source_batch, divisible_by))
    return result


def dump_plans(plans: dict) -> str:
    """nnU-Net's own layout (batchgenerators ``save_json(..., sort_keys=False)``: indent 4, no newline)."""
    return json.dumps(plans, indent=4, sort_keys=False)


@dataclass
class ContextPlanResult:
    plans_file: Path
    configurations: list[ContextConfiguration]
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    backup: Path | None = None

    @property
    def written(self) -> bool:
        return bool(self.added or self.replaced)


def _backup(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        candidate = path.with_name(f"{path.name}.{stamp}{'' if i == 0 else f'-{i}'}.bak")
        if not candidate.exists():
            with atomic_path(candidate) as tmp:
                shutil.copyfile(path, tmp)  # byte-exact
            return candidate
    raise UserInputError(f"{path}: too many backups named {path.name}.{stamp}*.bak")


def write_context_plans(preprocessed_dataset_folder: Path, plans_name: str, sources: Sequence[str],
                        scales: Sequence[float], memory_matched: bool = False,
                        overwrite: bool = False) -> ContextPlanResult:
    """Add the context configurations of every source configuration to ``<plans_name>.json``.

    Idempotent: configurations already present with the same content are left alone, and if nothing
    changes the file is not touched (no backup either). A configuration of the same name with
    different content (an earlier run with other settings, or the user's own) is only replaced with
    ``overwrite``. Before any change the file is backed up byte for byte.
    """
    # read and written (with a backup beside it): a name, never a path out of the preprocessed folder
    check_name(plans_name, f"-p {plans_name}")
    path = Path(preprocessed_dataset_folder) / f"{plans_name}.json"
    plans = _read_plans(path)
    wanted: list[ContextConfiguration] = []
    for source in dict.fromkeys(sources):
        wanted.extend(context_configurations(plans, source, scales, memory_matched, str(path)))
    result = ContextPlanResult(path, wanted)
    configs = plans["configurations"]
    conflicts = [c.name for c in wanted if c.name in configs and configs[c.name] != c.plans_entry()]
    if conflicts and not overwrite:
        raise UserInputError(f"{path}: configuration {conflicts[0]} exists with different content; pass --overwrite "
                             "to replace it")
    for c in wanted:
        if c.name not in configs:
            result.added.append(c.name)
        elif configs[c.name] != c.plans_entry():
            result.replaced.append(c.name)
        else:
            result.unchanged.append(c.name)
        configs[c.name] = c.plans_entry()
    if result.written:
        result.backup = _backup(path)
        atomic_write_text(path, dump_plans(plans))
    return result
