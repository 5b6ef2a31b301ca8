"""A known-answer evidence study for ``recommend`` (eval's per_case.csv and the dataset's complexity CSV),
shared by the recommend tests and the bad-input tests."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from nnunet_robustness.analysis.eval_pipeline import PER_CASE_COLUMNS
from nnunet_robustness.datasets.dataset_complexity import CASE_COLUMNS

LOW_TD = (0.01, 0.03)  # hard cases (foreground texture close to the background's)
HIGH_TD = (0.2, 0.5)  # easy cases
NOISE = "gaussian_noise_sev3"

# True mean Dice per (TD group, condition, model): A (say No-Skip) wins on hard clean cases, B (U-Net)
# on easy clean cases, B under noise everywhere, C never.
TRUE_DICE = {
    ("low", "clean"): {"A": 0.80, "B": 0.70, "C": 0.60},
    ("high", "clean"): {"A": 0.85, "B": 0.92, "C": 0.80},
    ("low", NOISE): {"A": 0.50, "B": 0.62, "C": 0.40},
    ("high", NOISE): {"A": 0.60, "B": 0.75, "C": 0.55},
}

MeanDice = Callable[[str, str, str], float]  # (TD group, condition, model) -> true mean Dice


def known_dice(group: str, condition: str, model: str) -> float:
    return TRUE_DICE[(group, condition)][model]


def write_study(folder: Path, cases_per_group: int, mean_dice: MeanDice = known_dice, noise_sd: float = 0.03,
                centred_noise: bool = True, seed: int = 0, conditions: tuple[str, ...] = ("clean", NOISE),
                models: tuple[str, ...] = ("A", "B", "C")) -> tuple[Path, Path]:
    """An eval output folder (per_case.csv with eval's columns, two labels per case) and its dataset's
    complexity CSV (complexity's columns); returns (eval folder, complexity CSV).

    Each model's per-case Dice is its true mean plus Gaussian noise; ``centred_noise`` removes the
    noise's sample mean per (group, condition, model), so the cell means are exactly the true ones."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, noise_sd, size=(2, len(conditions), len(models), cases_per_group))
    if centred_noise:
        noise -= noise.mean(axis=-1, keepdims=True)
    complexity, rows = [], []
    for g, (group, (low, high)) in enumerate((("low", LOW_TD), ("high", HIGH_TD))):
        for i in range(cases_per_group):
            case = f"ts_{group}_{i:03d}"
            complexity.append({"case": case, "split": "test", "alpha": "",
                               "texture_disparity_bits": rng.uniform(low, high), "contrast_to_noise": 1.0,
                               "foreground_fraction": 0.2, "foreground_voxels": 100})
            for c, condition in enumerate(conditions):
                family, severity = (None, 0.0) if condition == "clean" else ("gaussian_noise", 3.0)
                for m, model in enumerate(models):
                    dice = mean_dice(group, condition, model) + noise[g, c, m, i]
                    # Two labels whose mean is `dice`: the default compares the per-case label mean.
                    for label, value in (("tumour", dice - 0.05), ("oedema", dice + 0.05)):
                        rows.append({"model": model, "condition": condition, "family": family, "severity": severity,
                                     "case": case, "label": label, "label_value": "1", "dice": value,
                                     "hd95_mm": 10 * (1 - value), "empty_mask": "none"})
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).reindex(columns=PER_CASE_COLUMNS).to_csv(folder / "per_case.csv", index=False)
    complexity_csv = folder.parent / f"complexity_{folder.name}.csv"
    pd.DataFrame(complexity).reindex(columns=list(CASE_COLUMNS)).to_csv(complexity_csv, index=False)
    return folder, complexity_csv
