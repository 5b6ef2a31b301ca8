"""Strata and subgroups: groups of test cases that ``eval`` summarises and judges separately as well as pooled.

A test set often mixes populations whose results should not be averaged away: the complexity levels
of a ``make-dataset textures`` dataset (an easy and a hard level pooled hide that one architecture wins
on easy cases and loses on hard ones), scanners, sites, sexes. Groups come from

- ``eval --strata FILE`` (a CSV with columns ``case`` and ``stratum``; groups named by the value) or,
  for datasets made by ``make-dataset textures``, from its generation record next to dataset.json
  (each test case's blend level, ``alpha 0.1``);
- ``eval --metadata FILE --by COLUMN[,COLUMN...]`` (a CSV of case metadata, one row per case): each
  column is a grouping of its own, its values the subgroups, named ``column=value`` (``scanner=B``), so
  that groups of different columns never share a name and a case belongs to one group per grouping.

Every group is judged the same way (the same comparisons and verdict, its own cases, all tests in the
report's one FDR family); groups of fewer than ``SMALL_GROUP`` cases carry a warning sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from nnunet_robustness.analysis import robustness
from nnunet_robustness.analysis import statistics as stats
from nnunet_robustness.analysis.verdict import verdict
from nnunet_robustness.errors import UserInputError

STRATUM = "stratum"
ALL_CASES = ""  # the stratum value of pooled rows in stratified tables
CASE = "case"
# Below this many cases a group's intervals are wide and its tests weak (the smallest two-sided Wilcoxon p of
# 9 cases is 2/512 = 0.004, before the FDR adjustment over every group): its verdict is a hint, and says so.
SMALL_GROUP = 10
SEPARATOR = "; "  # between a case's groups in the per-case ``stratum`` column


@dataclass(frozen=True)
class CaseTable:
    """A CSV with one row per case: a ``case`` column and text columns (``--strata``: ``stratum``;
    ``--metadata``: patient/scan metadata). The one reader of both files; every error names the option
    and the file."""

    path: Path
    option: str  # the command-line option that gave the file, e.g. "--metadata"
    columns: tuple[str, ...]  # every column of the file but ``case``
    rows: dict[str, dict[str, str]]  # case -> column -> value (stripped text)

    @classmethod
    def read(cls, path: str | Path, option: str, needed: Sequence[str]) -> "CaseTable":
        """Read ``path``; refuse it without a ``case`` column or any of the ``needed`` columns, with a case
        listed twice, or with an empty value in a ``needed`` column."""
        path = Path(path)
        where = f"{option} {path}"
        try:
            # text, and "NA"/"" kept as written: a missing value must be refused, not become NaN
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except FileNotFoundError:
            raise UserInputError(f"{where}: no such file") from None
        except Exception as e:  # noqa: BLE001 - pandas raises many types; the user needs the file name
            raise UserInputError(f"{where}: cannot be read as CSV ({e})") from None
        wanted = [CASE, *needed]
        if not set(wanted) <= set(table.columns):
            listed = ", ".join(repr(c) for c in wanted[:-1]) + f" and {wanted[-1]!r}"
            raise UserInputError(f"{where}: needs the columns {listed} (found {list(table.columns)})")
        if table[CASE].duplicated().any():
            raise UserInputError(f"{where}: case {table.loc[table[CASE].duplicated(), CASE].iloc[0]!r} is listed twice")
        for column in needed:
            empty = table[column].str.strip() == ""
            if empty.any():
                raise UserInputError(f"{where}: case {table.loc[empty, CASE].iloc[0]!r} has an empty {column}")
        columns = tuple(c for c in table.columns if c != CASE)
        rows = {case: {c: str(v).strip() for c, v in zip(columns, values)}
                for case, *values in table[[CASE, *columns]].itertuples(index=False)}
        return cls(path, option, columns, rows)

    def column(self, name: str, cases: Sequence[str], value_name: str | None = None) -> dict[str, str]:
        """Case -> value of column ``name`` for every evaluated case (``value_name``: how an error calls it)."""
        missing = [c for c in cases if c not in self.rows]
        if missing:
            raise UserInputError(f"{self.option} {self.path}: no row for case(s) {', '.join(missing[:5])}"
                                 + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                                 + f" (every evaluated case needs its {value_name or name})")
        return {case: self.rows[case][name] for case in cases}


def read_strata_file(path: Path, cases: Sequence[str]) -> dict[str, str]:
    """``case,stratum`` CSV -> case -> stratum of every evaluated case."""
    return CaseTable.read(path, "--strata", [STRATUM]).column(STRATUM, cases, "stratum")


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
    return read_strata_file(strata_file, cases)


def parse_by(text: str | Sequence[str] | None) -> list[str]:
    """``--by scanner,sex`` (or a list of names) -> the column names, in order, each once."""
    if text is None:
        return []
    parts = text.split(",") if isinstance(text, str) else [p for item in text for p in str(item).split(",")]
    names = [p.strip() for p in parts]
    if not names or any(not n for n in names):
        raise UserInputError(f"--by {text!r}: an empty column name (expected e.g. --by scanner,sex)")
    if CASE in names:
        raise UserInputError(f"--by {text!r}: 'case' names the cases; group by other columns of the metadata")
    return list(dict.fromkeys(names))


def resolve_subgroups(metadata_file: Path | None, by: Sequence[str], cases: Sequence[str]) -> dict[str, dict[str, str]]:
    """Column -> case -> ``column=value`` for each ``--by`` column of the metadata file (empty without one)."""
    if metadata_file is None:
        if by:
            raise UserInputError(f"--by {','.join(by)}: needs --metadata CSV (a case column and the columns to group by)")
        return {}
    if not by:
        columns = CaseTable.read(metadata_file, "--metadata", []).columns
        raise UserInputError(f"--metadata {metadata_file}: name the columns to group the cases by with --by "
                             f"(the file's columns: {', '.join(columns) or 'none besides case'})")
    table = CaseTable.read(metadata_file, "--metadata", by)
    return {column: {case: f"{column}={value}" for case, value in table.column(column, cases).items()}
            for column in by}


def groupings_of(strata: dict[str, str] | None, subgroups: dict[str, dict[str, str]]) -> dict[str, dict[str, list[str]]]:
    """Grouping -> group name -> its cases: the strata (grouping ``stratum``, groups in the order of their first
    case) and each metadata column (groups in the order of their values). Group names are unique across
    groupings; the statistics of a group are keyed by its name alone."""
    groupings: dict[str, dict[str, list[str]]] = {}
    if strata:
        groupings[STRATUM] = {}
        for case in sorted(strata):
            groupings[STRATUM].setdefault(strata[case], []).append(case)
    for column, members in subgroups.items():
        groupings[column] = {}
        for case, name in sorted(members.items(), key=lambda item: (item[1], item[0])):
            groupings[column].setdefault(name, []).append(case)
    seen: dict[str, str] = {}
    for grouping, groups in groupings.items():
        for name in groups:
            if name in seen:
                raise UserInputError(f"the group {name!r} comes from both {seen[name]} and {grouping}; rename the "
                                     "stratum in the --strata file")
            seen[name] = grouping
    return groupings


def case_groups(groupings: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    """Case -> its groups joined by ``SEPARATOR`` (the per-case ``stratum`` column)."""
    out: dict[str, list[str]] = {}
    for groups in groupings.values():
        for name, members in groups.items():
            for case in members:
                out.setdefault(case, []).append(name)
    return {case: SEPARATOR.join(names) for case, names in out.items()}


def small_group_sentence(name: str, n_cases: int) -> str | None:
    """The warning of a group with fewer than ``SMALL_GROUP`` cases, else None."""
    if n_cases >= SMALL_GROUP:
        return None
    return (f"{name}: only {n_cases} case{'' if n_cases == 1 else 's'} (fewer than {SMALL_GROUP}): its intervals are "
            "wide and its tests weak, so a real difference can stay undetected here; read this group's results as "
            "a hint to check on more cases.")


def compare_within_groups(comparisons: pd.DataFrame, groups: Mapping[str, Sequence[str]], with_mean: pd.DataFrame,
                          robust: pd.DataFrame, degradation_rows: pd.DataFrame,
                          judged_runs: Mapping[str, Sequence[str]], clean: str | None, seed: int, n_bootstrap: int
                          ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``eval``'s pooled comparisons followed by each group's own, and each group's statistics and
    degradation (empty without groups)."""
    if not groups:
        return comparisons, pd.DataFrame(), pd.DataFrame()
    parts, summaries, drops = [comparisons], [], []
    foreground = with_mean[with_mean["label"] == stats.FOREGROUND_MEAN]
    robust_foreground = robust[robust["label"] == stats.FOREGROUND_MEAN]
    for name, members in groups.items():
        stratum_rows = robustness.compare_models(
            degradation_rows[degradation_rows["case"].isin(members)], judged_runs, seed, n_bootstrap)
        parts.append(stratum_rows.assign(**{STRATUM: name}))
        summaries.append(stats.summary_statistics(foreground[foreground["case"].isin(members)], seed,
                                                  n_bootstrap).assign(**{STRATUM: name}))
        drops.append(stats.degradation(robust_foreground[robust_foreground["case"].isin(members)], clean, seed,
                                       n_bootstrap).assign(**{STRATUM: name}))
    return (pd.concat(parts, ignore_index=True), pd.concat(summaries, ignore_index=True),
            pd.concat(drops, ignore_index=True))


def group_verdicts(groups: Mapping[str, Sequence[str]], comparisons: pd.DataFrame,
                   judged_runs: Mapping[str, Sequence[str]], equivalence: float | None) -> dict[str, list[str]]:
    """Each group's verdict without the training-run sentence, which the pooled verdict already states (and
    with one model: no sentence but a small group's warning; its scores and degradation say the rest)."""
    return {name: [s for s in [small_group_sentence(name, len(members))] if s] + verdict(
        comparisons[comparisons[STRATUM] == name], judged_runs, stats.FOREGROUND_MEAN,
        equivalence=equivalence)[1:] for name, members in groups.items()}
