"""``run.json``: the record of a ``run`` output folder, and the only code that reads or writes it.

``run`` writes it before predicting (identical for every shard, so shards merge by construction);
``eval``, ``rate`` and the context study read it to know each folder's condition, the promised cases
and the model behind the predictions. Torch-free, so readers do not load the inference stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nnunet_robustness.conditions import Condition, merge_conditions
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_write_json, is_plain_name, package_versions, read_json

MANIFEST_NAME = "run.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class RunManifest:
    """What a ``run`` folder holds: ``<folder>/<condition>/<case><file_ending>`` for every condition
    and case listed, predicted by ``model`` (model folder, folds, checkpoint, step size, TTA)."""

    model: dict[str, Any]
    seed: int
    save_probabilities: bool
    file_ending: str
    conditions: tuple[Condition, ...]
    cases: tuple[str, ...]
    versions: dict[str, str] = field(default_factory=package_versions)
    format: int = MANIFEST_FORMAT
    # case -> fingerprint of its input files (size and modification time of each channel file): a
    # resumed run with other images under the same case names is refused instead of reusing predictions
    inputs: dict[str, str] = field(default_factory=dict)
    # condition name -> the parameters it applied (a family's values and settings at that severity, an
    # attack's budget, a crop's target FBR): the definitions table of eval's report
    parameters: dict[str, dict] = field(default_factory=dict)
    # family -> why it does not fit the model's data (run --force-modality applied it anyway: a CT family on
    # MR channels, ...), so that a reader of the folder sees it; empty for runs that needed no forcing
    modality_forced: dict[str, str] = field(default_factory=dict)

    # Keys whose change means another run: the folder cannot hold both.
    IDENTITY = ("format", "model", "seed", "file_ending")

    @property
    def model_folder(self) -> Path:
        return Path(self.model["model_folder"])

    @property
    def folds_used(self) -> list[Any] | None:
        return self.model.get("folds_used")

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "model": self.model, "seed": self.seed,
                "save_probabilities": self.save_probabilities, "file_ending": self.file_ending,
                "conditions": [c.to_json() for c in self.conditions], "cases": list(self.cases),
                "versions": self.versions, "inputs": self.inputs, "parameters": self.parameters,
                "modality_forced": self.modality_forced}

    @classmethod
    def from_json(cls, data: Any, path: Path) -> "RunManifest":
        try:
            manifest = cls(model=dict(data["model"]), seed=int(data["seed"]),
                       save_probabilities=bool(data.get("save_probabilities", False)),
                       file_ending=str(data["file_ending"]),
                       conditions=tuple(Condition.from_json(c) for c in data["conditions"]),
                       cases=tuple(str(c) for c in data["cases"]), versions=dict(data.get("versions", {})),
                       format=int(data.get("format", MANIFEST_FORMAT)), inputs=dict(data.get("inputs", {})),
                       parameters=dict(data.get("parameters", {})),
                       modality_forced=dict(data.get("modality_forced", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise UserInputError(f"{path}: not a valid run manifest ({type(e).__name__}: {e}); it needs model, seed, "
                                 "file_ending, conditions (with names) and cases") from None
        # Condition and case names become paths (<folder>/<condition>/<case><ending>) in eval, rate,
        # calibrate and the studies: a run.json from elsewhere must not point them outside the folder
        # (``../other/x``, an absolute path) and have another folder's predictions read as this one's.
        for kind, names in (("condition", [c.name for c in manifest.conditions]), ("case", manifest.cases),
                            ("file_ending", [f"x{manifest.file_ending}"])):
            for name in names:
                if not is_plain_name(name):
                    raise UserInputError(f"{path}: {kind} name {name!r} is not a plain file or folder name (it "
                                         "must not be empty, '.', '..' or contain a path separator); this run.json "
                                         "would lead outside its folder")
        return manifest

    @staticmethod
    def path(folder: str | Path) -> Path:
        return Path(folder) / MANIFEST_NAME

    @classmethod
    def read(cls, folder: str | Path) -> "RunManifest":
        path = cls.path(folder)
        return cls.from_json(read_json(path, "run manifest"), path)

    @classmethod
    def read_if_present(cls, folder: str | Path) -> "RunManifest | None":
        return cls.read(folder) if cls.path(folder).is_file() else None

    def write(self, folder: str | Path) -> None:
        atomic_write_json(self.path(folder), self.to_json())

    def merged_into(self, folder: str | Path, overwrite: bool = False) -> "RunManifest":
        """This run merged with the manifest already in ``folder``: the same model, settings and seed are
        required (unless ``overwrite``); conditions and cases are unions, so adding conditions to a
        finished run works."""
        old = None if overwrite else self.read_if_present(folder)
        if old is None:
            return self
        mine, theirs = self.to_json(), old.to_json()
        if theirs["model"].get("checkpoint_sha256") != mine["model"].get("checkpoint_sha256") \
                and "checkpoint_sha256" in theirs["model"]:
            raise UserInputError(f"{self.path(folder)}: {_checkpoint_difference(theirs['model'], mine['model'])}; "
                                 "use another output folder or pass --overwrite")
        changed = sorted(case for case in set(old.inputs) & set(self.inputs) if old.inputs[case] != self.inputs[case])
        if changed:
            raise UserInputError(f"{self.path(folder)}: the input files of case {changed[0]} (and {len(changed) - 1} "
                                 "more) changed since this folder's predictions were made; use another output "
                                 "folder or pass --overwrite")
        # compared above (older run.json files have none); copies, so that self.model stays whole. Runs
        # before the corruption device was recorded corrupted on the CPU whatever -device said, and runs
        # before the background was recorded corrupted it (--background corrupt).
        theirs["model"] = {"corruption_device": "cpu", "background": "corrupt",
                           **{k: v for k, v in theirs["model"].items() if k != "checkpoint_sha256"}}
        mine["model"] = {"corruption_device": "cpu", "background": "corrupt",
                         **{k: v for k, v in mine["model"].items() if k != "checkpoint_sha256"}}
        for key in self.IDENTITY:
            if theirs[key] != mine[key]:
                raise UserInputError(
                    f"{self.path(folder)}: this folder holds a different run ({key}: {json.dumps(theirs[key])} "
                    f"here, {json.dumps(mine[key])} requested); use another output folder or pass --overwrite")
        for name in set(old.parameters) & set(self.parameters):  # an attack's done items keep their objective
            before, now = old.parameters[name].get("objective"), self.parameters[name].get("objective")
            if before is not None and now is not None and before != now:
                raise UserInputError(f"{self.path(folder)}: {name} was attacked with the {before} as objective here, "
                                     f"{now} requested; use another output folder, pass --overwrite, or "
                                     f"--attack-objective {before}")
        return replace(self, conditions=tuple(merge_conditions(old.conditions, self.conditions)),
                       cases=tuple(dict.fromkeys([*old.cases, *self.cases])),
                       save_probabilities=old.save_probabilities or self.save_probabilities,
                       versions=old.versions or self.versions, inputs={**old.inputs, **self.inputs},
                       parameters={**old.parameters, **self.parameters},
                       # not part of the identity: adding conditions to a forced run keeps its record
                       modality_forced={**old.modality_forced, **self.modality_forced})

    def is_complete(self, folder: str | Path, conditions: Any = None) -> bool:
        """Whether every listed case has its prediction for every condition (or for ``conditions``)."""
        names = [c.name for c in (self.conditions if conditions is None else conditions)]
        listed = {c.name for c in self.conditions}
        return set(names) <= listed and all((Path(folder) / name / f"{case}{self.file_ending}").is_file()
                                            for name in names for case in self.cases)


def input_fingerprint(files: list[Path]) -> str:
    """Size and modification time (ns) of each channel file of a case: changes when an image is replaced."""
    return ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checkpoint_difference(theirs: dict, mine: dict) -> str:
    """What differs between the model that made a folder's predictions and the one asked for now, in words:
    another model folder, other folds, or the same checkpoint file with other contents."""
    if theirs.get("model_folder") != mine.get("model_folder"):
        return (f"this folder holds predictions of another model ({theirs.get('model_folder')}), not of "
                f"{mine.get('model_folder')}")
    old, new = theirs.get("checkpoint_sha256") or {}, mine.get("checkpoint_sha256") or {}
    if set(old) != set(new):
        return (f"this folder holds predictions of folds {', '.join(sorted(old)) or 'none'} of this model, not of "
                f"folds {', '.join(sorted(new)) or 'none'}")
    changed = sorted(fold for fold in old if old[fold] != new[fold])
    return (f"the checkpoint of fold {changed[0]} in {mine.get('model_folder')} has other contents than when this "
            f"folder's predictions were made (sha256 {str(old[changed[0]])[:12]}... then, {str(new[changed[0]])[:12]}... "
            "now): it was retrained or replaced")
