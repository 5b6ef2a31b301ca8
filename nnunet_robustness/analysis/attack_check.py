"""Is an attack an attack? Each adversarial condition against random-sign noise of the same budget.

A gradient attack that lowers Dice no more than random signs of the same norm did not find the model's
weak directions (a wrong objective, too few steps, gradient masking), and its score says nothing about
adversarial robustness: issue #29 saw PGD aimed at an over-segmenting model's own prediction *raise* Dice
against the reference (0.890 -> 0.926) while random signs left it at 0.891. ``eval`` compares, per model,
every ``adv_*`` condition with ``adv_random_sign`` at the same severity (paired over cases, foreground mean
of Dice) and flags the ones that hurt less, in the verdict (torch-free, like the rest of eval).
"""

from __future__ import annotations

import json

import pandas as pd

from nnunet_robustness.conditions import ADVERSARIAL_FAMILIES

CONTROL = "adv_random_sign"


def _objective(parameters: object) -> str | None:
    try:
        return json.loads(parameters).get("objective") if isinstance(parameters, str) else None
    except (ValueError, AttributeError):
        return None


def weak_attacks(foreground: pd.DataFrame, conditions: pd.DataFrame, metric: str = "dice") -> list[str]:
    """One sentence per model x attack condition whose mean ``metric`` (higher = better) over the cases is not
    below that under random signs of the same severity. ``foreground``: model, condition, case, metric (the
    per-case foreground mean); ``conditions``: eval's conditions table."""
    attacks = conditions[conditions["family"].isin(set(ADVERSARIAL_FAMILIES) - {CONTROL})
                         & conditions["severity"].notna()]
    controls = conditions[(conditions["family"] == CONTROL) & conditions["severity"].notna()]
    sentences = []
    for _, attack in attacks.iterrows():
        control = controls[(controls["model"] == attack["model"]) & (controls["severity"] == attack["severity"])]
        if not len(control):
            continue
        rows = foreground[foreground["model"] == attack["model"]]
        scores = rows.pivot_table(index="case", columns="condition", values=metric, aggfunc="first")
        names = [attack["condition"], control["condition"].iloc[0]]
        if not set(names) <= set(scores.columns):
            continue
        paired = scores[names].dropna()
        if not len(paired):
            continue
        under_attack, under_noise = paired[names[0]].mean(), paired[names[1]].mean()
        if under_attack >= under_noise:
            objective = _objective(attack.get("parameters"))
            aimed = f" (objective: the {objective})" if objective else ""
            sentences.append(
                f"{attack['model']}: {names[0]}{aimed} lowered Dice no more than random signs of the same budget "
                f"({under_attack:.3f} vs {under_noise:.3f} over {len(paired)} cases): the attack did not find this "
                "model's weak directions, so its score is no measure of adversarial robustness"
                + (" (aimed at the model's own prediction, it can even raise Dice against the reference: run with "
                   "--reference)" if objective == "prediction" else "") + ".")
    return sentences
