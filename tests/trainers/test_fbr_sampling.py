"""FBR logging: what oversampling does to the sampled patches, and that the log counts right.

The loader is nnU-Net's own ``nnUNetDataLoader`` (through our recording subclass) on a small
in-memory dataset, so the sampling code under test is exactly nnU-Net's.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nnunetv2.utilities.label_handling.label_handling import LabelManager
from scipy.stats import chisquare

from nnunet_robustness.foreground_ratio import foreground_fraction
from nnunet_robustness.records.training_fbr import TRAINING_LOG
from nnunet_robustness.trainers import TRAINERS
from nnunet_robustness.trainers.fbr_logging import (
    SAMPLED_KEY,
    FBRLoggingMixin,
    batch_target_fractions,
    recording_data_loader_class,
)

SHAPE, PATCH = (40, 40), (16, 16)
LABELS = LabelManager({"background": 0, "blob": 1}, None)


class InMemoryDataset:
    """What nnUNetDataLoader needs of nnU-Net's datasets: identifiers and load_case."""

    def __init__(self, n_cases: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.identifiers = [f"case{i}" for i in range(n_cases)]
        self.cases = {}
        yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
        for case in self.identifiers:
            cy, cx = rng.uniform(10, 30, size=2)
            radius = rng.uniform(4, 9)
            seg = (((yy - cy) ** 2 + (xx - cx) ** 2) <= radius ** 2).astype(np.int8)[None, None]  # (c, z, y, x)
            data = (seg + rng.normal(0, 0.1, seg.shape)).astype(np.float32)
            self.cases[case] = (data, seg, None, {"class_locations": {1: np.argwhere(seg == 1)}})

    def load_case(self, identifier: str):
        return self.cases[identifier]


def _loader(oversample: float, batch_size: int = 4, transforms=None, dataset=None):
    return recording_data_loader_class()(dataset or InMemoryDataset(), batch_size, PATCH, PATCH, LABELS,
                                         oversample_foreground_percent=oversample, transforms=transforms)


def _sampled(oversample: float, n_batches: int, seed: int) -> np.ndarray:
    np.random.seed(seed)  # nnU-Net samples with the global numpy generator
    loader = _loader(oversample)
    return np.concatenate([loader.generate_train_batch()[SAMPLED_KEY] for _ in range(n_batches)])


def _random_crop_distribution(dataset: InMemoryDataset) -> np.ndarray:
    """Every crop position a uniform (non-forced) draw can take, equally likely: image >= patch, so
    nnU-Net's bounds are [0, shape - patch] per axis. Counted independently of nnU-Net's code."""
    fractions = []
    for data, seg, _, _ in dataset.cases.values():
        label = seg[0, 0]
        for y in range(SHAPE[0] - PATCH[0] + 1):
            for x in range(SHAPE[1] - PATCH[1] + 1):
                fractions.append(label[y:y + PATCH[0], x:x + PATCH[1]].mean())
    return np.asarray(fractions)


BINS = np.array([0, 1e-9, 0.05, 0.15, 0.3, 1.0 + 1e-9])  # {0}, (0, .05), ..., [.3, 1]


def _goodness_of_fit(samples: np.ndarray, reference: np.ndarray) -> float:
    expected = np.histogram(reference, BINS)[0] / reference.size * samples.size
    observed = np.histogram(samples, BINS)[0]
    return chisquare(observed, expected).pvalue


def test_fg000_matches_uniform_random_crops():
    reference = _random_crop_distribution(InMemoryDataset())
    assert (reference == 0).mean() > 0.2, "the test needs crops without foreground to be common"
    samples = _sampled(0.0, n_batches=100, seed=0)  # 400 patches
    assert _goodness_of_fit(samples, reference) > 0.01
    # the same test has power: nnU-Net's default sampling (one forced patch in 4 at 0.33) is rejected
    assert _goodness_of_fit(_sampled(0.33, n_batches=100, seed=0), reference) < 1e-4


def test_fg100_every_sampled_patch_contains_foreground():
    samples = _sampled(1.0, n_batches=50, seed=1)
    assert samples.size == 200 and samples.min() > 0
    # and nnU-Net's default leaves patches without any
    assert _sampled(0.33, n_batches=50, seed=1).min() == 0


def test_oversampling_share_follows_nnunets_per_batch_rounding():
    # batch 4 at 0.33: the last 4 - round(4 * 0.67) = 1 sample is forced; at 0.66 the last 2
    np.random.seed(3)
    batches = [_loader(0.66).generate_train_batch()[SAMPLED_KEY] for _ in range(40)]
    assert all(b[2:].min() > 0 for b in batches)
    assert min(b[:2].min() for b in batches) == 0


def test_logged_fractions_equal_an_independent_recount_of_the_same_patches(tmp_path):
    """The mixin's bookkeeping on real batches, with nnU-Net's real training augmentation."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    transforms = nnUNetTrainer.get_training_transforms(
        PATCH, (-np.pi, np.pi), None, (0, 1), False, use_mask_for_norm=[False], foreground_labels=[1])
    np.random.seed(4)
    loader = _loader(0.5, transforms=transforms)

    class FakeTrainerBase:  # the nnUNetTrainer methods the mixin calls
        def on_train_epoch_start(self): pass
        def train_step(self, batch): return {"loss": np.float32(0)}
        def on_train_epoch_end(self, outputs): pass
        def on_train_end(self): pass

    trainer = type("T", (FBRLoggingMixin, FakeTrainerBase), {})()
    trainer.__dict__.update(label_manager=LABELS, output_folder=str(tmp_path), local_rank=0, current_epoch=0,
                            configuration_name="2d", fold=0, oversample_foreground_percent=0.5, batch_size=4,
                            configuration_manager=SimpleNamespace(patch_size=list(PATCH)))
    trainer.on_train_epoch_start()
    targets, sampled = [], []
    for _ in range(10):
        batch = loader.generate_train_batch()
        trainer.train_step(batch)
        targets.append(batch["target"].numpy())
        sampled.append(batch[SAMPLED_KEY])
    recount = np.concatenate([(t[:, 0] == 1).reshape(len(t), -1).mean(1) for t in targets])
    np.testing.assert_allclose(trainer._fbr_epoch["network"], recount, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(trainer._fbr_epoch["sampled"], np.concatenate(sampled))
    assert not np.allclose(recount, np.concatenate(sampled)), "augmentation changes the fraction"

    trainer.on_train_epoch_end([])
    log = json.loads((tmp_path / TRAINING_LOG).read_text())
    epoch = log["epochs"][0]
    assert epoch["network"]["n"] == 40 and sum(epoch["network"]["histogram"]) == 40
    assert epoch["network"]["mean"] == pytest.approx(recount.mean())
    assert epoch["network"]["min"] == pytest.approx(recount.min())
    assert log["overall"]["sampled"]["max"] == pytest.approx(np.concatenate(sampled).max())
    # a continued training re-runs epoch 0: its entry is replaced, not duplicated
    trainer.on_train_epoch_start()
    trainer.train_step(loader.generate_train_batch())
    trainer.on_train_epoch_end([])
    log = json.loads((tmp_path / TRAINING_LOG).read_text())
    assert [e["epoch"] for e in log["epochs"]] == [0] and log["epochs"][0]["network"]["n"] == 4
    trainer.on_train_end()
    assert (tmp_path / "fbr_train_histogram.png").stat().st_size > 1000


def test_fractions_of_targets_with_ignore_label_and_regions():
    seg = torch.tensor([[[0, 1], [2, -1]]])  # -1: padding (background), 2: ignore
    assert foreground_fraction(seg, ignore_label=2) == pytest.approx(1 / 3)
    assert foreground_fraction(seg) == pytest.approx(2 / 4)
    regions = LabelManager({"background": 0, "a": [1, 2], "b": 2}, [1, 2])
    target = torch.zeros(2, 2, 2, 2)
    target[0, 0, 0, 0] = 1
    target[1, 1, :, 0] = 1
    assert batch_target_fractions([target, target[:, :, :1]], regions) == [0.25, 0.5]


def test_fg_trainers_set_oversampling_and_log(nnunet_env):
    from tests.helpers.plans import DATASET_JSON, default_plans

    for name, percent in (("nnUNetTrainer_fg100_tiny", 1.0), ("nnUNetTrainerAttentionGate_fg000", 0.0),
                          ("nnUNetTrainerNoSkip_fg066_short", 0.66)):
        trainer = TRAINERS[name](dict(default_plans(), continue_training=False), "2d", 0, DATASET_JSON,
                                 device=torch.device("cpu"))
        assert trainer.oversample_foreground_percent == percent and isinstance(trainer, FBRLoggingMixin)
    assert TRAINERS["nnUNetTrainer_fg100_tiny"](dict(default_plans(), continue_training=False), "2d", 0,
                                                DATASET_JSON, device=torch.device("cpu")).num_epochs == 1


def test_sampled_fraction_is_of_the_centre_final_size_patch():
    """nnU-Net's training loader cuts a larger crop (room for rotation); the sampled FBR is of its centre."""
    np.random.seed(5)
    loader = recording_data_loader_class()(InMemoryDataset(), 4, (24, 24), PATCH, LABELS,
                                           oversample_foreground_percent=0.5)
    for _ in range(10):
        batch = loader.generate_train_batch()
        crop = batch["target"].numpy()[:, 0]  # no transforms: the 24x24 crop itself
        assert crop.shape[1:] == (24, 24)
        centre = crop[:, 4:20, 4:20]
        np.testing.assert_allclose(batch[SAMPLED_KEY], (centre == 1).reshape(4, -1).mean(1), atol=1e-12)
