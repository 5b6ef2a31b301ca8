"""How big a study is: ``smoke`` (tests, minutes), ``cpu`` (this project's 2-core CPU, <= 2 h per
study), ``gpu`` (the published protocol's sizes, nnU-Net's 1000-epoch schedule).

The published protocol (../shared/notes/research.md, docs/studies/README.md): 256 x 256 images,
100 per blend level alpha (70 train / 10 validation / 20 test), alpha 0.1 ... 0.9. The ``cpu`` scale
keeps the task and the test-set size (20 test images per level, so paired tests can reach
p < 0.05) and shrinks what costs time: 64 x 64 images, two training levels (the ends of the range,
where the published effect is largest), 60 training images per level and 2500 iterations per model
(nnU-Net's ``_10epochs``), which is enough for every architecture to pass eval's sanity gate on the
easy level (the training curves are in study.html).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SEED = 0


@dataclass(frozen=True)
class Scale:
    name: str
    image_size: int
    train_alphas: tuple[float, ...]  # one dataset (and three models) per training level
    test_alphas: tuple[float, ...]  # every dataset is tested at all of these (same test images everywhere)
    num_train: int  # training images per dataset (nnU-Net's fold 0 keeps 80 % for training)
    num_test: int  # test images per test alpha
    schedule: str  # trainer suffix after _fg033: "tiny", "10epochs", "" (nnU-Net's 1000 epochs)
    contexts: tuple[float, ...]  # patch-edge scales of the context-vs-FBR study (1.0: nnU-Net's own patch)
    example_alphas: tuple[float, ...]  # the recommendation is asked for datasets at these levels
    seconds_per_iteration: float  # for the ETA only
    iterations: int  # training iterations (train + validation) per model, for the ETA only

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


SCALES: dict[str, Scale] = {
    # one training level: the smoke scale checks the pipeline (CI runs all three studies), so the F1
    # finding at the hard level is "not evaluated" there
    "smoke": Scale("smoke", image_size=32, train_alphas=(0.1,), test_alphas=(0.1, 0.6, 0.9), num_train=10,
                   num_test=3, schedule="tiny", contexts=(0.5, 1.0), example_alphas=(0.3, 0.7),
                   seconds_per_iteration=0.1, iterations=12),
    "cpu": Scale("cpu", image_size=64, train_alphas=(0.1, 0.9), test_alphas=(0.1, 0.6, 0.9), num_train=60,
                 num_test=20, schedule="10epochs", contexts=(0.5, 1.0), example_alphas=(0.3, 0.7),
                 seconds_per_iteration=0.15, iterations=3000),
    "gpu": Scale("gpu", image_size=256, train_alphas=tuple(round(0.1 * i, 1) for i in range(1, 10)),
                 test_alphas=tuple(round(0.1 * i, 1) for i in range(1, 10)), num_train=80, num_test=20, schedule="",
                 contexts=(0.5, 0.75, 1.0, 1.25), example_alphas=(0.3, 0.7), seconds_per_iteration=0.1,
                 iterations=300_000),
}
