"""One nnU-Net folder tree for the whole test session (the ``nnunet_models`` fixture in tests/conftest.py).

Planning, preprocessing and training through nnU-Net's CLIs are most of the suite's time on a 2-core CPU,
and several modules used to do each for themselves on near-identical blob datasets. Here each blob
dataset is written and preprocessed once, and each (dataset, trainer, plans) is trained once, on first
use, by whichever test asks first. Modules that test a training itself (a trainer's log, the trainer's
lookup) still train, but on the shared preprocessed data.

Read-only for tests: a test that damages a model copies it first. Writing new plans files next to
``nnUNetPlans.json`` (``plan-arch``) is fine; rewriting ``nnUNetPlans.json`` itself (``plan-context``) is not,
so tests/analysis/test_e2e_context_fbr.py keeps its own dataset.

Under pytest-xdist (``make test`` runs two workers) the tree lies in the run's shared temporary root and each
dataset and model is built under a file lock, so the workers share one training of each instead of one each:
the second worker to ask waits for the first, then finds the finished files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from tests.helpers.nnunet_cli import run_cli
from tests.helpers.synthetic import write_nnunet_dataset


@dataclass(frozen=True)
class Blobs:
    dataset_id: int
    configuration: str
    n_train: int
    n_test: int
    seed: int


# 2D: 48 x 48 images, 8 training cases (the runner's known-good NoSkip_short model reaches Dice > 0.8 on
# them); 3D: 32^3. Both patches are the whole image, which the adversarial tests rely on (their test
# images are a little larger, so the sliding window has several tiles).
BLOBS = {2: Blobs(904, "2d", n_train=8, n_test=4, seed=4), 3: Blobs(903, "3d_fullres", n_train=6, n_test=2, seed=3)}
# The 2D model every module that only needs "a trained model" shares: 2 epochs of 50 iterations
KNOWN_GOOD_2D = "nnUNetTrainerNoSkip_short"
# The 3D model the adversarial tests attack (1 epoch of 10 iterations). Not the No-Skip one test_e2e_nnunet.py
# trains: after 10 iterations it is so unsure that random-sign noise changed 5 % of its voxels, and PGD failed
# the "more than twice the noise" acceptance check.
ATTACKED_3D = "nnUNetTrainer_tiny"


class SharedNnunet:
    def __init__(self, root: Path) -> None:
        self.root = root
        folders = {name: str(root / name) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
        for folder in folders.values():
            Path(folder).mkdir(parents=True, exist_ok=True)
        # nnUNet_def_n_proc 1: a training's final validation spawns that many export processes, each importing
        # torch (about 7 s of CPU) for a handful of tiny cases
        self.env = {**os.environ, **folders, "nnUNet_n_proc_DA": "2", "nnUNet_def_n_proc": "1",
                    "nnUNet_compile": "false", "OMP_NUM_THREADS": "2"}
        self._raw: dict[int, Path] = {}

    def _lock(self, name: str) -> FileLock:
        return FileLock(self.root / f".{name}.lock")

    def dataset(self, dim: int) -> Path:
        """The raw folder of the ``dim``-D blob dataset, planned and preprocessed (once per test run)."""
        if dim not in self._raw:
            spec = BLOBS[dim]
            ready = self.root / f".dataset{spec.dataset_id}.ready"  # written last: another worker may have built it
            with self._lock(f"dataset{spec.dataset_id}"):
                if not ready.is_file():
                    raw = write_nnunet_dataset(Path(self.env["nnUNet_raw"]), spec.dataset_id, dim, n_train=spec.n_train,
                                               n_test=spec.n_test, seed=spec.seed)
                    # one worker: for a handful of tiny cases a second torch-importing process costs more than it saves
                    run_cli(["nnUNetv2_plan_and_preprocess", "-d", str(spec.dataset_id), "-c", spec.configuration,
                             "-np", "1", "-npfp", "1", "--verify_dataset_integrity"], self.env)
                    ready.write_text(str(raw))
            self._raw[dim] = Path(ready.read_text())
        return self._raw[dim]

    def model_folder(self, dim: int, trainer: str, plans: str = "nnUNetPlans") -> Path:
        return Path(self.env["nnUNet_results"]) / self.dataset(dim).name / f"{trainer}__{plans}__{BLOBS[dim].configuration}"

    def model(self, dim: int, trainer: str, plans: str = "nnUNetPlans") -> Path:
        """The model folder of ``trainer`` with ``plans`` on the ``dim``-D blobs, fold 0, trained once per session.
        ``plans`` other than nnU-Net's default must have been written first (``nnunet-robust plan-arch``)."""
        folder = self.model_folder(dim, trainer, plans)
        # nnU-Net writes checkpoint_final.pth before its final validation: the lock, not the file, says "done"
        with self._lock(folder.name):
            if not (folder / "fold_0" / "validation" / "summary.json").is_file():
                run_cli(["nnUNetv2_train", str(BLOBS[dim].dataset_id), BLOBS[dim].configuration, "0", "-tr", trainer,
                         "-p", plans, "-device", "cpu"], self.env)
        return folder
