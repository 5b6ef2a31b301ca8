"""How big a study is: ``smoke`` (tests, minutes), ``cpu`` (this project's 2-core CPU, hours), ``gpu``
(the published protocol's sizes, nnU-Net's 1000-epoch schedule).

The published protocol (../shared/notes/research.md, docs/studies/README.md): 256 x 256 images,
100 per blend level alpha (70 train / 10 validation / 20 test), alpha 0.1 ... 0.9.

The ``cpu`` scale spends its budget on fewer, converged and replicated models rather than more,
unconverged ones: one training level (alpha 0.1, where every architecture learns the task at 64 x 64;
the first wave's alpha 0.9 models stayed below an image-independent prior mask), three training runs
per architecture (nnU-Net's folds 0-2), 5000 iterations each (``_20epochs``: the first wave's 2500 left
No-Skip still rising 0.008 Dice per epoch) and 12,500 for No-Skip (``_50epochs``: at 5000 two of its three
runs still rose 0.0021 Dice per epoch; without skip connections it learns more slowly, and an arm is
compared once it has stopped improving, not after equal work), and 12,500 for the attention-gated U-Net at
patch scale 0.5 (F3; at 5000 two of its three runs still rose 0.0020-0.0025 Dice per epoch over 9 epochs,
while at nnU-Net's own patch all three had stopped), 20 test images per test level (paired tests can reach
p < 0.05). ``wide_factor``: F3's test images are this many times larger per side than the training
images, with the same blobs in pixels, so that their foreground fraction falls below the training range
(about 1/9 of it at factor 3), as in the paper's whole-volume test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SEED = 0


def _epochs(schedule: str) -> int:
    """Epochs of an epoch-count schedule suffix: "50epochs" -> 50; nnU-Net's 1000 without one."""
    return int(schedule.removesuffix("epochs")) if schedule else 1000


@dataclass(frozen=True)
class Scale:
    name: str
    image_size: int
    train_alphas: tuple[float, ...]  # one dataset (and three models per fold) per training level
    test_alphas: tuple[float, ...]  # every dataset is tested at all of these (same test images everywhere)
    num_train: int  # training images per dataset (nnU-Net's folds keep 80 % each for training)
    num_test: int  # test images per test alpha
    schedule: str  # trainer suffix after _fg033: "tiny", "20epochs", "" (nnU-Net's 1000 epochs)
    folds: tuple[int, ...]  # nnU-Net folds trained per architecture: the replicate runs of an arm
    contexts: tuple[float, ...]  # patch-edge scales of the context-vs-FBR study (1.0: nnU-Net's own patch)
    wide_factor: int  # F3's test images: this many times the training image side, same blob sizes
    example_alphas: tuple[float, ...]  # the recommendation is asked for datasets at these levels
    seconds_per_iteration: float  # for the ETA only
    iterations: int  # training iterations (train + validation) per model, for the ETA only
    # (architecture, schedule) or (architecture, schedule, configuration): architectures that train longer than
    # ``schedule`` (in that configuration only, where one is named) because their runs were still rising at its
    # end (the convergence rule, nnunet_robustness.studies.convergence)
    longer_schedules: tuple[tuple[str, ...], ...] = ()

    def schedule_for(self, architecture: str, configuration: str = "2d") -> str:  # "2d": protocols.CONFIGURATION
        """The trainer schedule of ``architecture``'s runs in ``configuration`` at this scale."""
        for architecture_named, schedule, *only in self.longer_schedules:
            if architecture_named == architecture and (not only or only[0] == configuration):
                return schedule
        return self.schedule

    def iterations_for(self, architecture: str, configuration: str = "2d") -> int:
        """Training iterations of one of ``architecture``'s runs, for the ETA only."""
        own = self.schedule_for(architecture, configuration)
        return self.iterations if own == self.schedule else round(self.iterations * _epochs(own) / _epochs(self.schedule))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


SCALES: dict[str, Scale] = {
    # one training level and one fold: the smoke scale checks the pipeline (CI runs all three studies); its
    # models train 10 iterations, so every finding is "unconverged" (or "not learned") there by design. Its
    # test levels are the ones a finding reads (F1's trained-at-0.1 findings test at 0.1 and 0.6; alpha 0.9
    # is read only by the hard-level finding, which smoke does not train): every test image is predicted
    # under each condition by each model, most of the smoke studies' prediction time
    "smoke": Scale("smoke", image_size=32, train_alphas=(0.1,), test_alphas=(0.1, 0.6), num_train=10,
                   num_test=3, schedule="tiny", folds=(0,), contexts=(0.5, 1.0), wide_factor=2,
                   example_alphas=(0.3, 0.7), seconds_per_iteration=0.1, iterations=12),
    "cpu": Scale("cpu", image_size=64, train_alphas=(0.1,), test_alphas=(0.1, 0.6, 0.9), num_train=60,
                 num_test=20, schedule="20epochs", folds=(0, 1, 2), contexts=(0.5, 1.0), wide_factor=3,
                 example_alphas=(0.3, 0.7), seconds_per_iteration=0.3, iterations=6000,
                 longer_schedules=(("NoSkip", "50epochs"), ("AttentionGate", "50epochs", "2d_ctx0.50"))),
    "gpu": Scale("gpu", image_size=256, train_alphas=tuple(round(0.1 * i, 1) for i in range(1, 10)),
                 test_alphas=tuple(round(0.1 * i, 1) for i in range(1, 10)), num_train=80, num_test=20, schedule="",
                 folds=(0, 1, 2, 3, 4), contexts=(0.5, 0.75, 1.0, 1.25), wide_factor=3, example_alphas=(0.3, 0.7),
                 seconds_per_iteration=0.1, iterations=300_000),
}
