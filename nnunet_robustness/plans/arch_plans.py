"""The plans route: a copy of a dataset's plans whose networks are our skip-selective U-Nets.

``nnUNetv2_train D 3d_fullres 0 -p nnUNetPlansNoSkip`` then trains the No-Skip U-Net with nnU-Net's
stock trainer (or any other trainer that builds its network from the plans). The new plans keep
the source's ``data_identifier``s, so nnU-Net reuses the already preprocessed data.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_json, safe_path
from nnunet_robustness.nnunet_paths import check_name

ARCH_PRESETS: dict[str, dict] = {
    "noskip": {"skip_levels": "none", "attention_gates": False},
    "attention": {"skip_levels": "all", "attention_gates": True},
    "unet": {"skip_levels": "all", "attention_gates": False},
    # learnable sigmoid gate per skip level (scalar) or per skip channel; the stock trainer trains the
    # gates like any weight, nnUNetTrainerLearnedSkip also logs them and can add an L1 penalty
    "learned": {"skip_levels": "all", "attention_gates": False, "learned_gates": "scalar"},
    "learned-channel": {"skip_levels": "all", "attention_gates": False, "learned_gates": "channel"},
}


@dataclass(frozen=True)
class ArchChoice:
    skip_levels: str | tuple[int, ...]
    attention_gates: bool
    learned_gates: str | None = None

    @classmethod
    def from_cli(cls, arch: str, skip_levels: Sequence[int] | None) -> "ArchChoice":
        preset = ARCH_PRESETS[arch]
        if skip_levels is not None and arch == "noskip":
            raise UserInputError("--skip-levels contradicts --arch noskip (which keeps no skip); use --arch unet "
                                 "or --arch attention with --skip-levels")
        levels = preset["skip_levels"] if skip_levels is None else tuple(sorted(set(skip_levels)))
        return cls(levels, preset["attention_gates"], preset.get("learned_gates"))

    def plans_suffix(self) -> str:
        if self.skip_levels == "none":
            return "NoSkip"
        name = "AttentionGate" if self.attention_gates else ""
        if self.learned_gates is not None:
            name += "LearnedSkip" + ("Channel" if self.learned_gates == "channel" else "")
        if self.skip_levels != "all":
            name += "Skips" + "_".join(str(level).replace("-", "m") for level in self.skip_levels)
        return name or "UNet"

    def arch_kwargs(self) -> dict:
        levels = self.skip_levels if isinstance(self.skip_levels, str) else list(self.skip_levels)
        kwargs = {"skip_levels": levels, "attention_gates": self.attention_gates}
        if self.learned_gates is not None:  # absent otherwise: plans written before this option stay identical
            kwargs["learned_gates"] = self.learned_gates
        return kwargs


def _read_plans(path: Path) -> dict:
    try:
        plans = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserInputError(f"{path}: plans file not found; run nnUNetv2_plan_and_preprocess for this dataset "
                             "first (or pass the right -p)") from None
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(plans, dict) or "configurations" not in plans:
        raise UserInputError(f"{path}: not an nnU-Net plans file (no 'configurations')")
    return plans


def make_arch_plans(source_plans: dict, choice: ArchChoice, new_plans_name: str,
                    configurations: Iterable[str] | None = None, source_label: str = "plans") -> dict:
    """Return a modified copy of ``source_plans``.

    Without ``configurations``, every configuration that defines its own ``architecture`` is changed
    (configurations that inherit it follow their parent). A configuration named explicitly that
    inherits its architecture gets its own, resolved from its parents.
    """
    plans = copy.deepcopy(source_plans)
    plans["plans_name"] = new_plans_name
    all_configs = plans["configurations"]
    if configurations is None:
        targets = [c for c, cfg in all_configs.items() if "architecture" in cfg]
    else:
        targets = list(configurations)
        unknown = [c for c in targets if c not in all_configs]
        if unknown:
            raise UserInputError(f"{source_label}: no configuration {', '.join(unknown)}; "
                                 f"available: {', '.join(all_configs)}")
    # Imported here: the architectures import torch, which `nnunet-robust --help` must not wait for.
    from nnunet_robustness.architectures import dotted_name, resolve_skip_levels, skip_selective_class_for

    for config_name in targets:
        architecture = _resolved_architecture(all_configs, config_name)
        if architecture is None:
            raise UserInputError(f"{source_label}: configuration {config_name} has no architecture")
        try:
            ours = skip_selective_class_for(architecture["network_class_name"])
        except ValueError as e:
            raise UserInputError(f"{source_label}, configuration {config_name}: {e}") from None
        # the network is built only when training starts: a skip level this depth lacks (--skip-levels 99)
        # must fail here, not leave a plans file that cannot build its network
        n_stages = architecture.get("arch_kwargs", {}).get("n_stages")
        if isinstance(n_stages, int) and not isinstance(choice.skip_levels, str):
            try:
                resolve_skip_levels(choice.skip_levels, n_stages - 1)
            except ValueError as e:
                raise UserInputError(f"--skip-levels {' '.join(map(str, choice.skip_levels))}: {source_label}, "
                                     f"configuration {config_name}: {e}") from None
        architecture["network_class_name"] = dotted_name(ours)
        architecture["arch_kwargs"].update(choice.arch_kwargs())
        all_configs[config_name]["architecture"] = architecture
    return plans


def _resolved_architecture(configs: dict, name: str) -> dict | None:
    seen = set()
    while name not in seen:
        seen.add(name)
        cfg = configs[name]
        if "architecture" in cfg:
            return copy.deepcopy(cfg["architecture"])
        if "inherits_from" not in cfg:
            return None
        name = cfg["inherits_from"]
    return None


def write_arch_plans(preprocessed_dataset_folder: Path, source_plans_name: str, choice: ArchChoice,
                     configurations: Sequence[str] | None = None, new_plans_name: str | None = None,
                     overwrite: bool = False) -> tuple[Path, bool]:
    """Write ``<new_plans_name>.json`` next to the source plans. Returns (path, whether written).

    Idempotent: an identical existing file is left alone; a different one is only replaced with
    ``overwrite``. The source plans file is never modified.
    """
    check_name(source_plans_name, f"-p {source_plans_name}")  # read from the preprocessed folder only
    source_path = preprocessed_dataset_folder / f"{source_plans_name}.json"
    new_plans_name = new_plans_name or f"{source_plans_name}{choice.plans_suffix()}"
    if new_plans_name == source_plans_name:
        raise UserInputError(f"--plans-name {new_plans_name} would overwrite the source plans {source_path}")
    plans = make_arch_plans(_read_plans(source_path), choice, new_plans_name, configurations, str(source_path))
    target = safe_path(preprocessed_dataset_folder, f"{new_plans_name}.json")  # a name, never a path elsewhere
    if target.is_file():
        existing = _read_plans(target)
        if existing == plans:
            return target, False
        if not overwrite:
            raise UserInputError(f"{target} exists with different content; pass --overwrite to replace it")
    atomic_write_json(target, plans)
    return target, True
