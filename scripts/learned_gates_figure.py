"""Comparison figure of docs/learned_gates.md: change of each skip level's gate and skip weight share
from initialisation to the end of training, one bar per training alpha and fold.

Usage: python scripts/learned_gates_figure.py docs/learned_gates   (reads *alpha*_learned_gates.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def main(folder: Path) -> None:
    logs = {}
    for path in sorted(folder.glob("*alpha*_learned_gates.json"), key=lambda p: (p.name.split("alpha")[1], p.name)):
        log = json.loads(path.read_text())
        alpha = "0." + path.name.split("alpha0")[1].split("_")[0]
        logs[f"alpha {alpha}, fold {log['fold']}"] = log
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    width = 0.8 / len(logs)
    for index, (name, log) in enumerate(logs.items()):
        levels = sorted(log["initial"]["gates"], key=int)
        final = log["epochs"][-1]
        gate_change = [np.mean(final["gates"][lv]) - np.mean(log["initial"]["gates"][lv]) for lv in levels]
        share_change = [final["skip_weight_share"][lv] - log["initial"]["skip_weight_share"][lv] for lv in levels]
        x = np.arange(len(levels)) + (index - (len(logs) - 1) / 2) * width
        axes[0].bar(x, gate_change, width, label=name)
        axes[1].bar(x, share_change, width, label=name)
    for axis, title in zip(axes, ("gate value: final - initial", "skip weight share: final - initial")):
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xticks(range(len(levels)), [f"level {lv}" for lv in levels])
        axis.set_title(title, fontsize=9)
        axis.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize="small", title="training data", title_fontsize="small")
    figure.suptitle(f"{next(iter(logs.values()))['trainer']}, level 0 = full-resolution skip", fontsize=9)
    figure.tight_layout()
    figure.savefig(folder / "comparison.png", dpi=90)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
