"""Measured foreground-to-background ratio (FBR) of the training patches a trainer actually samples.

Two numbers per training patch, both the foreground fraction (foreground voxels / annotated voxels
of the patch; padding outside the image counts as background, as the network sees it):

- ``network``: of the target the network is trained on, i.e. after nnU-Net's augmentation
  (rotation, scaling, ... change the fraction). Computed in the main process from the batch that
  ``train_step`` receives, so it is exact whatever the number of data-loading workers. This is the
  FBR the model was trained on; ``nnunet-robust eval`` compares test FBRs with its range.
- ``sampled``: of the final-size patch at the centre of the crop the data loader sampled, before
  augmentation. This is what ``oversample_foreground_percent`` controls (a forced patch is centred
  on a foreground voxel), so it is the quantity to check the sampler with. It is computed inside
  the data-loading worker that cut the patch and travels with the batch (key ``fbr_sampled``).

Per epoch, ``<fold folder>/fbr_train.json`` gets mean/min/max/percentiles and a 20-bin histogram of
both (rewritten atomically after every epoch); at the end of training ``fbr_train_histogram.png``
plots the pooled histograms.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.foreground_ratio import foreground_fraction
from nnunet_robustness.io import atomic_path
from nnunet_robustness.records.training_fbr import HISTOGRAM_EDGES, KINDS, TRAINING_LOG, TrainingFBR, summarize

FBR_HISTOGRAM_PNG = "fbr_train_histogram.png"
SAMPLED_KEY = "fbr_sampled"


def batch_target_fractions(target: torch.Tensor | Sequence[torch.Tensor], label_manager: Any) -> list[float]:
    """Per-sample foreground fraction of a training batch's target (full resolution).

    Label targets ``(B, 1, ...)``: as :func:`nnunet_robustness.foreground_ratio.foreground_fraction`. Region targets
    ``(B, R[+1], ...)`` (nnU-Net's region training): a voxel is foreground if it is in any region; with
    an ignore label, nnU-Net appends the ignore mask as the last channel.
    """
    full = target[0] if isinstance(target, (list, tuple)) else target
    full = full.detach().cpu()
    if label_manager.has_regions:
        n_regions = len(label_manager.foreground_regions)
        foreground = (full[:, :n_regions] > 0).any(1)
        if label_manager.has_ignore_label and full.shape[1] > n_regions:
            annotated = full[:, n_regions] == 0
        else:
            annotated = torch.ones_like(foreground)
        return [float((f & a).sum()) / int(a.sum()) if int(a.sum()) else math.nan
                for f, a in zip(foreground, annotated)]
    return [foreground_fraction(sample[0], label_manager.ignore_label) for sample in full]


# --- worker side: the sampled crop ---------------------------------------------------------------------

class _SampledPatchRecorder:
    """Wraps the data loader's per-sample transforms: records the foreground fraction of the centre
    final-size patch of each sampled crop, then applies the real transforms (if any)."""

    def __init__(self, transforms: Any, final_patch_size: Sequence[int], ignore_label: int | None) -> None:
        self.transforms = transforms
        self.final_patch_size = tuple(int(s) for s in final_patch_size)
        self.ignore_label = ignore_label
        self.values: list[float] = []

    def __call__(self, **sample: torch.Tensor) -> dict:
        segmentation = sample["segmentation"][0]  # channel 0: the labels (1: previous stage in a cascade)
        # nnU-Net's training loader cuts a crop larger than the final patch (room for rotation); the
        # spatial transform then takes the centre. Without augmentation that centre is what the network sees.
        offsets = [(s - f) // 2 for s, f in zip(segmentation.shape, self.final_patch_size)]
        centre = segmentation[tuple(slice(max(o, 0), max(o, 0) + f) for o, f in zip(offsets, self.final_patch_size))]
        self.values.append(foreground_fraction(centre, self.ignore_label))
        return self.transforms(**sample) if self.transforms is not None else dict(sample)


def recording_data_loader_class() -> type:
    """nnUNetDataLoader that adds ``fbr_sampled`` (one value per sample) to every batch it generates.

    Built lazily so that importing this module does not import nnU-Net's data loading.
    """
    global _RecordingLoader
    if _RecordingLoader is None:
        from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader

        class FBRRecordingDataLoader(nnUNetDataLoader):
            def __init__(self, data, batch_size, patch_size, final_patch_size, label_manager, *args, **kwargs):
                super().__init__(data, batch_size, patch_size, final_patch_size, label_manager, *args, **kwargs)
                spatial = self.final_patch_size[1:] if self.patch_size_was_2d else self.final_patch_size
                self.transforms = _SampledPatchRecorder(self.transforms, spatial, label_manager.ignore_label)

            def generate_train_batch(self) -> dict:
                # a batch is generated entirely in one worker process, so the recorder holds exactly its samples
                self.transforms.values = []
                batch = super().generate_train_batch()
                batch[SAMPLED_KEY] = np.asarray(self.transforms.values, dtype=np.float64)
                return batch

        FBRRecordingDataLoader.__module__ = __name__
        FBRRecordingDataLoader.__qualname__ = "FBRRecordingDataLoader"
        _RecordingLoader = FBRRecordingDataLoader
    return _RecordingLoader


_RecordingLoader: type | None = None


@contextlib.contextmanager
def _trainer_uses_loader(loader_class: type) -> Iterator[None]:
    """nnUNetTrainer.get_dataloaders builds ``nnUNetDataLoader`` by its module-global name and has no
    hook to choose the class. Swapping that name for the duration of the call reuses nnU-Net's method
    unchanged (a copy would drift from future nnU-Net versions); the swap is undone afterwards."""
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module

    original = trainer_module.nnUNetDataLoader
    trainer_module.nnUNetDataLoader = loader_class
    try:
        yield
    finally:
        trainer_module.nnUNetDataLoader = original


# --- the histogram -----------------------------------------------------------------------------------

def write_histogram_png(log: TrainingFBR, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.asarray(HISTOGRAM_EDGES)
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    for kind, colour in zip(KINDS, ("C0", "C1")):
        counts = np.asarray(log.overall(kind)["histogram"], dtype=float)
        if counts.sum():
            axis.stairs(counts / counts.sum(), edges, color=colour, label=f"{kind} (n={int(counts.sum())})")
    axis.set_xlabel("foreground fraction of training patch")
    axis.set_ylabel("share of patches")
    axis.set_title(f"training FBR, oversample_foreground_percent={log.oversample_foreground_percent}")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)


# --- the trainer mixin ---------------------------------------------------------------------------------

class FBRLoggingMixin:
    """Logs the foreground fraction of every training patch (see the module docstring).

    Put before an nnUNetTrainer subclass in the bases; defines no ``__init__`` (our variants set
    hyper-parameters in theirs), its state starts in ``on_train_epoch_start``.
    """

    def get_dataloaders(self):
        with _trainer_uses_loader(recording_data_loader_class()):
            return super().get_dataloaders()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._fbr_epoch = {kind: [] for kind in KINDS}

    def train_step(self, batch: dict) -> dict:
        if SAMPLED_KEY not in batch:
            raise RuntimeError(f"{type(self).__name__}: the training batch has no {SAMPLED_KEY!r}; nnU-Net's "
                               "get_dataloaders no longer builds nnUNetDataLoader by name (nnunet-robustness "
                               "supports nnunetv2 2.8.x)")
        self._fbr_epoch["network"].extend(batch_target_fractions(batch["target"], self.label_manager))
        self._fbr_epoch["sampled"].extend(float(v) for v in np.asarray(batch[SAMPLED_KEY]).ravel())
        return super().train_step(batch)

    def on_train_epoch_end(self, train_outputs: list) -> None:
        super().on_train_epoch_end(train_outputs)
        if self.local_rank != 0:  # DDP: rank 0 logs its own patches
            return
        path = Path(self.output_folder) / TRAINING_LOG
        epochs = [e for e in self._fbr_previous_epochs(path) if e["epoch"] < self.current_epoch]
        epochs.append({"epoch": self.current_epoch, **{kind: summarize(self._fbr_epoch[kind]) for kind in KINDS}})
        self._fbr_log(epochs).write(path)

    def on_train_end(self) -> None:
        path = Path(self.output_folder) / TRAINING_LOG
        if self.local_rank == 0 and path.is_file():
            write_histogram_png(TrainingFBR.read(path), Path(self.output_folder) / FBR_HISTOGRAM_PNG)
        super().on_train_end()

    def _fbr_previous_epochs(self, path: Path) -> list[dict]:
        # continued training re-runs epochs from the checkpoint on: entries at or after it are replaced
        if not path.is_file():
            return []
        try:
            return list(TrainingFBR.read(path).epochs)
        except UserInputError:  # a damaged log of an interrupted run: start it afresh
            return []

    def _fbr_log(self, epochs: list[dict]) -> TrainingFBR:
        return TrainingFBR(type(self).__name__, self.configuration_name, self.fold, self.oversample_foreground_percent,
                           self.batch_size, list(self.configuration_manager.patch_size), epochs)
