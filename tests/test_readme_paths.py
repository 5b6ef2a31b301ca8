"""Every module, file and link the README and docs/*.md name exists: a renamed module or file fails here
instead of sending a reader to an ImportError or a dead link.

Checked: dotted module paths ``nnunet_robustness.x.y[.attribute]`` (the longest importable prefix,
then attributes of it), relative Markdown links, and backticked file paths of the repository
(``scripts/x.sh``, ``docs/y.md``, or relative to the document). Backticked names of files that
commands *write* (``run.json``, ``OUT/report.html``) cannot exist in the repository; they must be on
``OUTPUTS``, and each entry there must be a name the code really writes (its literal part occurs in
the package's source, or in nnU-Net's for nnU-Net's own files), so the list cannot vouch for a name
that no longer exists.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP_LEVEL = {"nnunet_robustness", "tests", "docs", "benchmarks", "scripts", ".ci"}
FILE_NAME = re.compile(r"\.(py|md|sh|json|png|csv|txt|toml|ya?ml|html|npz|pkl|parquet|pth)$")
MODULE_PATH = re.compile(r"(?<![\w./])nnunet_robustness(?:\.[A-Za-z_]\w*)+")
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)

#: Files that commands write at run time, by base name (a folder before it, ``OUT/``, ``fold_X/``, is
#: the user's): name -> who writes it. ``nnU-Net`` entries are nnU-Net's own files, checked in its source.
OUTPUTS = {
    "run.json": "run (records/run_manifest.py)",
    "<case>.input.json": "run: the change of the model's normalised input (records/input_change.py)",
    "<case>.view.npz": "run: the slice of what the model was given, for the report (records/item_view.py)",
    "<case>.npz": "run --save-probabilities, as nnUNetv2_predict (named by nnU-Net's export)",
    "<case>.pkl": "run --save-probabilities, as nnUNetv2_predict (named by nnU-Net's export)",
    "<case>.fbr.json": "run --conditions context: the crop of each case (records/context_fbr.py)",
    "corruption.json": "corrupt, one per output folder",
    "per_case.csv": "eval", "per_case.parquet": "eval", "summary.json": "eval, rate and study",
    "report.html": "eval, rate and study", "raters.csv": "eval with several -ref",
    "calibrator.json": "calibrate", "ratings.csv": "rate", "coverage.csv": "rate with -ref",
    "recommendation.json": "recommend -o", "<model>.card.md": "card", "<model>.card.html": "card",
    "<model>.card.json": "card", "robust_training.csv": "eval, for models with a robust-training record",
    "real_shift.csv": "eval --shift", "shift_agreement.csv": "eval --shift",
    "textures_generation.json": "make-dataset textures", "raters_generation.json": "make-dataset --raters",
    "complexity_<DatasetFolder>.csv": "complexity's default -o", "<name>_summary.csv": "complexity, next to -o",
    "robust_training_record.json": "the robust trainers (records/training_record.py)",
    "fbr_train.json": "the _fgXXX trainers (records/training_fbr.py)", "fbr_train_histogram.png": "the _fgXXX trainers",
    "learned_gates.json": "nnUNetTrainerLearnedSkip", "learned_gates.png": "nnUNetTrainerLearnedSkip",
    "robust_training.json": "the user's options file of the robust trainers (trainers/robust_trainers.py)",
    "nnunet_robustness_trainers.py": "the shim install-shim places into nnU-Net's trainer folder",
    "nnUNetPlans<Variant>.json": "plan-arch (nnUNetPlansNoSkip.json, ...)",
    "dataset.json": "nnU-Net", "checkpoint_final.pth": "nnU-Net", "debug.json": "nnU-Net", "plans.json": "nnU-Net",
}


def _literal(name: str) -> str:
    """The longest part of an output name without placeholders: what the writing code must contain."""
    return max(re.split(r"<[^>]*>", name), key=len)


def _sources(package: str) -> str:
    spec = importlib.util.find_spec(package)
    return "\n".join(p.read_text(errors="replace") for p in Path(spec.origin).parent.rglob("*.py"))


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        name = ".".join(parts[:cut])
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except ModuleNotFoundError:
            continue
        target = importlib.import_module(name)
        for attribute in parts[cut:]:
            if not hasattr(target, attribute):
                return False
            target = getattr(target, attribute)
        return True
    return False


def _file_problem(token: str, document: Path) -> str | None:
    """Why a backticked path does not name an existing file, or None when it does (or is not a path)."""
    token = token.rstrip(".,;:")
    if token.startswith("-") or re.fullmatch(r"\.[\w.]+", token) or "://" in token:
        return None  # an option, a bare extension (.nii.gz) or a URL
    first = token.split("/")[0]
    if first not in TOP_LEVEL and not FILE_NAME.search(token):
        return None  # a folder of the user's (robust/, OUT/<condition>/) or not a path at all
    for base in (ROOT, document.parent):
        if any(base.glob(token)) if "*" in token else (base / token).exists():
            return None
    if first in TOP_LEVEL:
        return "not in the repository"
    if token.rsplit("/", 1)[-1] not in OUTPUTS:
        return "neither in the repository nor an output on OUTPUTS"
    return None


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_modules_files_and_links_exist(document):
    text = document.read_text()
    problems = [f"module {m}" for m in sorted(set(MODULE_PATH.findall(text))) if not _resolves(m)]
    for target in LINK.findall(text):
        if re.match(r"(https?|mailto):", target) or target.startswith("#"):
            continue
        if not (document.parent / target.split("#")[0]).exists():
            problems.append(f"link {target}")
    for token in CODE_SPAN.findall(FENCE.sub("", text)):
        if " " not in token.strip():
            why = _file_problem(token.strip(), document)
            if why:
                problems.append(f"`{token}`: {why}")
    assert problems == [], f"{document.name} names what does not exist: {problems}"


def test_every_allowed_output_name_is_written_by_the_code():
    ours, nnunet = _sources("nnunet_robustness"), _sources("nnunetv2")
    missing = [name for name, writer in OUTPUTS.items()
               if _literal(name) not in (nnunet if writer == "nnU-Net" else ours + nnunet)]
    assert missing == []


def test_the_checks_catch_what_they_are_for(tmp_path):
    """The README once named these; each must be reported."""
    assert not _resolves("nnunet_robustness.corruptions.modality_sets")
    assert _resolves("nnunet_robustness.modalities.MODALITY_SETS")
    document = tmp_path / "x.md"
    assert _file_problem("OUT/<condition>/<case>.inputs.json", document)
    assert _file_problem("scripts/no_such_script.sh", document) == "not in the repository"
    assert _file_problem("OUT/run.json", document) is None and _file_problem("robust/", document) is None
