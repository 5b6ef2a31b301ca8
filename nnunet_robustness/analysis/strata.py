"""Strata: groups of test cases that ``eval`` summarises and judges separately as well as pooled.

A test set often mixes populations whose results should not be averaged away: the complexity levels
of a ``make-dataset textures`` dataset (an easy and a hard level pooled hide that one architecture wins
on easy cases and loses on hard ones), scanners, sites. Strata come from ``eval --strata FILE`` (a CSV
with columns ``case`` and ``stratum``) or, for datasets made by ``make-dataset textures``, from its
generation record next to dataset.json (each test case's blend level, ``alpha 0.1``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nnunet_robustness.errors import UserInputError

STRATUM = "stratum"
ALL_CASES = ""  # the stratum value of pooled rows in stratified tables


def read_strata_file(path: Path) -> dict[str, str]:
    """``case,stratum`` CSV -> case -> stratum (both as text)."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise UserInputError(f"--strata {path}: no such file") from None
    except Exception as e:  # noqa: BLE001 - pandas raises many types; the user needs the file name
        raise UserInputError(f"--strata {path}: cannot be read as CSV ({e})") from None
    if not {"case", STRATUM} <= set(table.columns):
        raise UserInputError(f"--strata {path}: needs the columns 'case' and 'stratum' (found {list(table.columns)})")
    if table["case"].duplicated().any():
        raise UserInputError(f"--strata {path}: case {table.loc[table['case'].duplicated(), 'case'].iloc[0]!r} "
                             "is listed twice")
    if (table[STRATUM].str.strip() == "").any():
        raise UserInputError(f"--strata {path}: case {table.loc[table[STRATUM].str.strip() == '', 'case'].iloc[0]!r} "
                             "has an empty stratum")
    return dict(zip(table["case"], table[STRATUM].str.strip()))


def generation_strata(dataset_json: Path) -> dict[str, str] | None:
    """Test case -> ``alpha X`` from make-dataset's record next to dataset.json; None for other datasets or
    a single level (nothing to stratify)."""
    from nnunet_robustness.datasets.textures_dataset import case_alphas

    strata = {case: f"alpha {alpha:g}" for case, alpha in case_alphas(Path(dataset_json).parent, "test").items()}
    return strata if len(set(strata.values())) > 1 else None


def resolve_strata(strata_file: Path | None, dataset_json: Path, cases: list[str]) -> dict[str, str] | None:
    """The strata of the evaluated cases (the file's when given, else the dataset's own), or None.
    Every evaluated case needs a stratum from a file the user gave."""
    if strata_file is None:
        strata = generation_strata(dataset_json)
        return None if strata is None or not set(cases) <= set(strata) else {c: strata[c] for c in cases}
    strata = read_strata_file(strata_file)
    missing = sorted(set(cases) - set(strata))
    if missing:
        raise UserInputError(f"--strata {strata_file}: no stratum for case(s) {', '.join(missing[:5])}"
                             + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return {c: strata[c] for c in cases}
