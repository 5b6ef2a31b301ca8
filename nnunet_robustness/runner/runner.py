"""``nnunet-robust run``: a trained nnU-Net model on corrupted copies of the test images.

Where corruptions act: each case is read once with the model's own image reader (the
``image_reader_writer`` of its plans, i.e. exactly what ``nnUNetv2_predict`` reads), and every
corruption is applied **in memory to that raw image, in its original intensity space and
geometry** — what a scanner would have changed. The corrupted array then goes through nnU-Net's
complete inference path, ``nnUNetPredictor.predict_single_npy_array``: cropping to the non-zero
region, resampling, normalisation, sliding-window prediction (with the model loaded once), and
resampling back to the input geometry. Preprocessing is therefore re-run per condition: every
preprocessing step depends on the intensities (the crop box on which voxels are non-zero, the
normalisation on the image statistics), so reusing it across conditions would not be equivalent.
Only the file reading is shared.

Outputs follow ``nnUNetv2_predict``: ``<out>/<condition>/<case><file_ending>`` with the input
geometry, and with ``save_probabilities`` also ``<case>.npz`` (key ``probabilities``) and
``<case>.pkl`` (properties). ``<out>/run.json`` records the model, folds, checkpoint, conditions,
seed, cases and package versions; it is identical for every shard, so shards merge by construction.

Work is the list of (case, condition) items in a fixed order; ``num_parts``/``part_id`` take every
``num_parts``-th item from ``part_id``. Every file is written to a temporary name and renamed, and
the segmentation is written last, so a finished item is one whose segmentation exists: a re-run
skips those, and an interrupted run loses at most the items in flight.

The predictor is kept busy: while it predicts one item, a reader thread reads the next case, worker
threads corrupt and measure the next items, and a writer thread writes the finished ones (compressing
NIfTI is slow). Only the prediction runs on the calling thread, in the fixed item order, and each item's
work depends on its own seed alone, so the outputs are the same as one item after another. On a CUDA
device the corruptions run on the GPU too (one copy of the case there, shared by its conditions); the
corrupted image then goes to the host, because nnU-Net's preprocessing (crop, resampling, normalisation)
takes NumPy arrays. A GPU's random generator differs from the CPU's, so noise realisations differ
between ``-device cpu`` and ``-device cuda``: ``run.json`` records the corruption device, and a folder
started on one is not resumed on the other.
"""

from __future__ import annotations

import os
import pickle
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from nnunet_robustness.conditions import Condition, ConditionKind
from nnunet_robustness.corruptions._core import shared_image_statistics
from nnunet_robustness.corruptions.background import DEFAULT_BACKGROUND, body_mask, keep_background
from nnunet_robustness.corruptions.specs import corruption_for, item_seed, requires_label
from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import atomic_path, json_ready
from nnunet_robustness.records.input_change import InputChange
from nnunet_robustness.records.item_view import ItemView, display_range
from nnunet_robustness.records.run_manifest import RunManifest, file_sha256, input_fingerprint
from nnunet_robustness.runner.cases import read_case, read_label
from nnunet_robustness.runner.input_space import ModelInputSpace
from nnunet_robustness.runner.model_folder import LOAD_ERRORS, check_model_files, explain_load_failure
from nnunet_robustness.runner.ssim_scale import SSIM_SCALE_CASES, ssim_scale_conditions


@dataclass(frozen=True)
class PredictionSettings:
    """What ``nnUNetv2_predict`` would be told: model folder, folds, checkpoint, step size, TTA."""

    model_folder: Path
    folds: tuple[int | str, ...] | None = None  # None: every fold with the checkpoint, as nnU-Net does
    checkpoint: str = "checkpoint_final.pth"
    step_size: float = 0.5
    use_mirroring: bool = True
    device: str = "cuda"
    # an exact-zero background (skull-stripped MRI) stays zero after a corruption (corruptions/background.py)
    background: str = DEFAULT_BACKGROUND
    # what attacks push away from: "reference" (what Dice is scored against; needs --reference), "prediction"
    # (the model's own clean prediction), or None: the reference where one is given (docs/adversarial.md)
    attack_objective: str | None = None

    @property
    def corruption_device(self) -> torch.device:
        """Where corruptions run: the predictor's GPU, else the CPU (MPS lacks ops the corruptions use)."""
        device = torch.device(self.device)
        return device if device.type == "cuda" else torch.device("cpu")

    def manifest(self) -> dict:
        return {
            "model_folder": str(Path(self.model_folder).resolve()),
            "folds": None if self.folds is None else list(self.folds),
            "checkpoint": self.checkpoint,
            "step_size": self.step_size,
            "tta": self.use_mirroring,
            # random corruptions draw from the device's generator: CPU and CUDA realisations differ
            "corruption_device": self.corruption_device.type,
            "background": self.background,
        }


@dataclass
class RunStats:
    items: int = 0
    predicted: int = 0
    skipped: int = 0
    seconds_total: float = 0.0
    seconds_predictor: float = 0.0
    seconds_input_space: float = 0.0  # normalising and comparing inputs: what the model saw (worker threads)
    # condition -> [items whose change the model's preprocessing cancelled, items measured], this run
    cancelled: dict[str, list[int]] = field(default_factory=dict)

    def cancelled_conditions(self) -> list[str]:
        """Conditions whose every measured item reached the network unchanged (eval's rule, per item)."""
        return [name for name, (cancelled, measured) in self.cancelled.items() if measured and cancelled == measured]


@dataclass
class _CaseData:
    """One case as read once and shared by all its conditions."""

    image: np.ndarray
    properties: dict
    label: np.ndarray | None
    view_range: tuple[float, float]
    clean_input: np.ndarray | None  # what the model sees of the clean image (None when no condition needs it)
    on_device: torch.Tensor | None = None  # the image on the CUDA corruption device
    statistics: dict = field(default_factory=dict)  # shared_image_statistics' cache, shared across threads
    body: np.ndarray | None = None  # nnU-Net's non-zero mask where the image has an exact-zero background to keep
    seconds_input_space: float = 0.0  # normalising the clean image


@dataclass
class _Prepared:
    """One item ready for the predictor: the image it gets and what is written with its prediction."""

    case: str
    condition: Condition
    data: _CaseData
    image: np.ndarray | None  # None: prepared on the predictor's thread (attacks, context crops)
    change: InputChange | None = None
    view: ItemView | None = None
    seconds_input_space: float = 0.0


def work_items(cases: Sequence[str], conditions: Sequence[Condition], num_parts: int = 1,
               part_id: int = 0) -> list[tuple[str, Condition]]:
    """This shard's (case, condition) items, case-major so each case is read once per shard."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise UserInputError(f"--part-id {part_id} must be in [0, --num-parts {num_parts})")
    items = [(case, condition) for case in cases for condition in conditions]
    return items[part_id::num_parts]


class RobustnessRunner:
    """Loads a trained model once and predicts cases under conditions, writing nnU-Net-style outputs."""

    def __init__(self, settings: PredictionSettings, verbose: bool = False) -> None:
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        model_folder = Path(settings.model_folder)
        if not (model_folder / "plans.json").is_file() or not (model_folder / "dataset.json").is_file():
            raise UserInputError(f"{model_folder}: not a trained nnU-Net model folder (needs plans.json, "
                                 "dataset.json and fold_X/ checkpoints)")
        self.settings = settings
        device = torch.device(settings.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UserInputError("-device cuda requested but torch sees no CUDA device; use -device cpu")
        self.predictor = nnUNetPredictor(tile_step_size=settings.step_size, use_gaussian=True,
                                         use_mirroring=settings.use_mirroring,
                                         perform_everything_on_device=device.type == "cuda", device=device,
                                         verbose=verbose, verbose_preprocessing=verbose, allow_tqdm=False)
        folds = settings.folds
        if folds is not None:
            missing = [f for f in folds if not (model_folder / f"fold_{f}" / settings.checkpoint).is_file()]
            if missing:
                raise UserInputError(f"{model_folder}: no {settings.checkpoint} for fold(s) "
                                     f"{', '.join(map(str, missing))}")
        # a damaged file (truncated checkpoint, invalid plans.json, channels that disagree with the weights)
        # is named in one line instead of ending in whatever torch or nnU-Net raises (model_folder.py)
        used = list(folds if folds is not None else
                    nnUNetPredictor.auto_detect_available_folds(str(model_folder), settings.checkpoint))
        if not used:
            raise UserInputError(f"{model_folder}: no fold_X/{settings.checkpoint} (not a trained model folder?)")
        check_model_files(model_folder, used, settings.checkpoint)
        try:
            self.predictor.initialize_from_trained_model_folder(str(model_folder), folds, settings.checkpoint)
        except FileNotFoundError as e:
            raise UserInputError(f"{model_folder}: cannot load the model ({e})") from None
        except LOAD_ERRORS as e:
            raise UserInputError(explain_load_failure(model_folder, used, settings.checkpoint, e)) from None
        self.used_folds = used
        self.dataset_json = self.predictor.dataset_json
        self.file_ending = self.dataset_json["file_ending"]
        self.num_channels = len(self.dataset_json.get("channel_names", self.dataset_json.get("modality", {})))
        self.reader_writer = self.predictor.plans_manager.image_reader_writer_class()
        self.input_space = ModelInputSpace(self.predictor.plans_manager, self.predictor.configuration_manager)
        self._objective = "prediction"  # set per run by attack_objective()
        self._calibration: dict[str, dict] = {}  # calibrated condition -> what its level reached (calibrate())
        # threads that corrupt and measure the next items while the predictor works: on a CPU one (more
        # would only share the cores the predictor uses), on a GPU machine up to 4 (its cores are idle)
        self.prepare_workers = (max(1, min(4, (os.cpu_count() or 1) // 4))
                                if settings.corruption_device.type == "cuda" else 1)

    # ---------------------------------------------------------------- manifest

    def manifest(self, conditions: Sequence[Condition], cases: Sequence[str], seed: int,
                 save_probabilities: bool, inputs: dict[str, str] | None = None,
                 modality_forced: dict[str, str] | None = None) -> RunManifest:
        model_folder = Path(self.settings.model_folder).resolve()
        model = {
            **self.settings.manifest(),
            "folds_used": self.used_folds,
            # a retrained model under the same folder must not be mistaken for the one that predicted
            "checkpoint_sha256": {str(f): file_sha256(model_folder / f"fold_{f}" / self.settings.checkpoint)
                                  for f in self.used_folds},
            "dataset": self.dataset_json.get("name", model_folder.parent.name),
            "results_subfolder": model_folder.name,  # TRAINER__PLANS__CONFIGURATION
        }
        return RunManifest(model=model, seed=seed, save_probabilities=save_probabilities, file_ending=self.file_ending,
                           conditions=tuple(conditions), cases=tuple(cases), inputs=dict(inputs or {}),
                           parameters={c.name: condition_parameters(c, self._objective, self._calibration.get(c.name))
                                       for c in conditions if not c.is_clean},
                           modality_forced=dict(modality_forced or {}))

    # ---------------------------------------------------------------- work

    def output_paths(self, output: Path, case: str, condition: Condition) -> dict[str, Path]:
        folder = output / condition.name
        return {"seg": folder / f"{case}{self.file_ending}", "npz": folder / f"{case}.npz",
                "pkl": folder / f"{case}.pkl"}

    def is_done(self, output: Path, case: str, condition: Condition, save_probabilities: bool) -> bool:
        paths = self.output_paths(output, case, condition)
        return paths["seg"].is_file() and (not save_probabilities or paths["npz"].is_file())

    def _read_case(self, case: str, files: list[Path]):
        image, properties = read_case(self.reader_writer, case, files)
        trained_on = self.predictor.plans_manager.plans.get("original_median_shape_after_transp")
        if trained_on is not None and len(trained_on) == 3 and trained_on[0] == 1 and image.shape[1] > 1:
            # nnU-Net stores 2D images as one-slice volumes; a 2D model predicts a volume slice by slice,
            # which is right for a model trained on slices of volumes but not for one trained on 2D images
            raise UserInputError(f"case {case}: {files[0]} is a volume of {image.shape[1]} slices, but the model was "
                                 "trained on 2D images (one-slice volumes); give it 2D images")
        return image, properties

    def _read_reference(self, reference_folder: Path | None, case: str, image_shape) -> np.ndarray:
        if reference_folder is None:
            raise UserInputError("a condition needs the reference labels (e.g. background blur); pass "
                                 "--reference labelsTs")
        return read_label(self.reader_writer, Path(reference_folder) / f"{case}{self.file_ending}", case, image_shape)

    def attack_objective(self, reference_folder: Path | None) -> str:
        """The objective attacks of this run use: the reference when it is given, unless told otherwise."""
        chosen = self.settings.attack_objective
        if chosen not in (None, "reference", "prediction"):
            raise UserInputError(f"attack objective {chosen!r}: choose reference or prediction")
        if chosen == "reference" and reference_folder is None:
            raise UserInputError("--attack-objective reference needs the reference labels: pass --reference labelsTs")
        return chosen or ("reference" if reference_folder is not None else "prediction")

    def run(self, cases: dict[str, list[Path]], conditions: Sequence[Condition], output: Path, seed: int = 0,
            save_probabilities: bool = False, overwrite: bool = False, num_parts: int = 1, part_id: int = 0,
            reference_folder: Path | None = None, progress: bool = True, severity_scale: str = "physical",
            calibration_cases: int = SSIM_SCALE_CASES, modality_forced: dict[str, str] | None = None) -> RunStats:
        output = Path(output)
        self._calibration = {}
        if severity_scale == "calibrated":
            conditions = self.calibrate(cases, conditions, seed, calibration_cases)
        elif severity_scale != "physical":
            raise UserInputError(f"severity scale {severity_scale!r}: choose physical or calibrated")
        if any(requires_label(c) for c in conditions) and reference_folder is None:
            names = ", ".join(c.name for c in conditions if requires_label(c))
            raise UserInputError(f"conditions {names} need the reference labels; pass --reference labelsTs")
        self._objective = self.attack_objective(reference_folder)
        output.mkdir(parents=True, exist_ok=True)
        fingerprints = {case: input_fingerprint(files) for case, files in cases.items()}
        manifest = self.manifest(conditions, list(cases), seed, save_probabilities, fingerprints,
                                 modality_forced).merged_into(output, overwrite)
        manifest.write(output)

        items = work_items(list(cases), conditions, num_parts, part_id)
        stats = RunStats(items=len(items))
        todo = [(case, c) for case, c in items if overwrite or not self.is_done(output, case, c, save_probabilities)]
        stats.skipped = len(items) - len(todo)
        start = time.perf_counter()
        with tqdm(total=len(items), initial=stats.skipped, desc=f"run part {part_id + 1}/{num_parts}", unit="item",
                  disable=not progress) as bar:
            self._predict_all(todo, cases, output, seed, save_probabilities, reference_folder, stats, bar)
        stats.seconds_total = time.perf_counter() - start
        # decided per item on what the network receives (nnU-Net's crop and normalisation of this very case),
        # not from the normalisation scheme's name: on a skull-stripped image a brightness change survives
        cancelled = stats.cancelled_conditions()
        if cancelled:
            warnings.warn(f"{', '.join(cancelled)}: on every case run here, this model's preprocessing "
                          f"({', '.join(self.input_space.schemes)}, after its crop to the non-zero region) removed the "
                          "change, so the network saw the clean image; `eval` reports these conditions as cancelled "
                          "and leaves them out of robustness summaries", UserWarning, stacklevel=2)
        return stats

    def _predict_all(self, todo: list[tuple[str, Condition]], cases: dict[str, list[Path]], output: Path, seed: int,
                     save_probabilities: bool, reference_folder: Path | None, stats: RunStats, bar: tqdm) -> None:
        """Predict ``todo`` in order on this thread while threads read, corrupt and write around it."""
        if not todo:
            return
        workers = self.prepare_workers
        lookahead = 2 * workers
        needed: dict[str, list[Condition]] = {}
        for case, condition in todo:
            needed.setdefault(case, []).append(condition)
        remaining = {case: len(conds) for case, conds in needed.items()}
        reader = ThreadPoolExecutor(1, thread_name_prefix="run-read")
        preparer = ThreadPoolExecutor(workers, thread_name_prefix="run-prepare")
        writer = ThreadPoolExecutor(1, thread_name_prefix="run-write")
        case_futures: dict[str, Future] = {}
        prepared: deque[Future] = deque()
        written: deque[Future] = deque()

        def submit(index: int) -> None:
            case, condition = todo[index]
            if case not in case_futures:
                case_futures[case] = reader.submit(self._load_case, case, cases[case], needed[case],
                                                   reference_folder)
            prepared.append(preparer.submit(self._prepare_item, case_futures[case], case, condition, seed))

        try:
            for index in range(min(lookahead, len(todo))):
                submit(index)
            for index in range(len(todo)):
                item = prepared.popleft().result()
                if index + lookahead < len(todo):
                    submit(index + lookahead)
                if remaining[item.case] == len(needed[item.case]):  # the case's first item: its clean input
                    stats.seconds_input_space += item.data.seconds_input_space
                remaining[item.case] -= 1
                if not remaining[item.case]:
                    del case_futures[item.case]  # its items hold the data they need; let the case go
                bar.set_postfix_str(f"{item.case} / {item.condition.name}")
                segmentation, probabilities = self._predict_prepared(item, output, seed, save_probabilities, stats)
                stats.seconds_input_space += item.seconds_input_space
                if item.change is not None:
                    counts = stats.cancelled.setdefault(item.condition.name, [0, 0])
                    counts[0] += item.change.cancelled
                    counts[1] += 1
                written.append(writer.submit(self._write_item, segmentation, probabilities, item, output))
                # bounded: finished items are written in order, and at most two wait in memory
                while len(written) > 2 or (written and written[0].done()):
                    written.popleft().result()
                stats.predicted += 1
                bar.update(1)
            while written:
                written.popleft().result()
        finally:
            # on an error or an interruption: no new work, but what is being written is finished (atomic
            # writes; the segmentation, written last, marks an item done)
            for pool in (preparer, reader):
                pool.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True)

    def calibrate(self, cases: dict[str, list[Path]], conditions: Sequence[Condition], seed: int,
                  calibration_cases: int = SSIM_SCALE_CASES) -> list[Condition]:
        """Conditions on the calibrated severity scale, from the first ``calibration_cases`` cases (sorted;
        all of them when there are fewer). What each level reached goes into run.json (``manifest``); a
        level that duplicates a lower one is left out, and every unreached target or merge is warned of."""
        if calibration_cases < 1:
            raise UserInputError(f"--calibration-cases must be >= 1, got {calibration_cases}")
        samples = []
        for case in sorted(cases)[:calibration_cases]:
            image, properties = self._read_case(case, cases[case])
            samples.append((case, image, tuple(properties["spacing"])))
        calibrated, notes, self._calibration = ssim_scale_conditions(conditions, samples, self.input_space, seed)
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=2)
        return calibrated

    def _load_case(self, case: str, files: list[Path], conditions: list[Condition],
                   reference_folder: Path | None) -> _CaseData:
        """Read a case once for all its conditions (reader thread)."""
        image, properties = self._read_case(case, files)
        # the reference, when a condition needs it or (when given) to pick the slice of the views
        needs_label = any(requires_label(c) or (c.kind is ConditionKind.ATTACK and self._objective == "reference")
                          for c in conditions)
        label = (self._read_reference(reference_folder, case, image.shape)
                 if needs_label or (
                     reference_folder is not None
                     and (Path(reference_folder) / f"{case}{self.file_ending}").is_file()) else None)
        # what the model sees of the clean image, once per case for all its conditions
        t = time.perf_counter()
        clean_input = (self.input_space.normalise(image)
                       if any(handling(c).measured for c in conditions) else None)
        data = _CaseData(image, properties, label, display_range(image), clean_input,
                         seconds_input_space=time.perf_counter() - t,
                         body=body_mask(image) if self.settings.background == "keep" else None)
        device = self.settings.corruption_device
        if device.type == "cuda" and any(handling(c).corrupts for c in conditions):
            data.on_device = torch.from_numpy(image).to(device)
        return data

    def _prepare_item(self, case_future: Future, case: str, condition: Condition, seed: int) -> _Prepared:
        """Prepare one item on a worker thread, as its kind says (attacks and context crops need the
        predictor and are left to its thread)."""
        prepare = handling(condition).prepare
        data = case_future.result()
        return _Prepared(case, condition, data, None) if prepare is None else prepare(self, data, case, condition,
                                                                                        seed)

    def _prepare_clean(self, data: _CaseData, case: str, condition: Condition, seed: int) -> _Prepared:
        return _Prepared(case, condition, data, data.image, view=ItemView.of(data.image, data.view_range, data.label))

    def _prepare_corruption(self, data: _CaseData, case: str, condition: Condition, seed: int) -> _Prepared:
        """Corrupt and measure one item (worker thread)."""
        corruption = corruption_for(condition)
        with shared_image_statistics(data.statistics):  # per-image statistics once for all its conditions
            if data.on_device is not None:
                corrupted = corruption(data.on_device, spacing=data.properties["spacing"], label=data.label,
                                       seed=item_seed(seed, case, condition)).cpu().numpy()
            else:
                corrupted = corruption(data.image, spacing=data.properties["spacing"], label=data.label,
                                       seed=item_seed(seed, case, condition))
        return self._measured(_Prepared(case, condition, data, keep_background(corrupted, data.body)))

    def _measured(self, item: _Prepared) -> _Prepared:
        """The item with what the model saw of its change and the picture of what the predictor gets."""
        t = time.perf_counter()
        item.change = self.input_space.change(item.data.clean_input, item.image)
        item.seconds_input_space = time.perf_counter() - t
        item.view = ItemView.of(item.image, item.data.view_range, item.data.label)
        return item

    def _predict_prepared(self, item: _Prepared, output: Path, seed: int, save_probabilities: bool,
                          stats: RunStats) -> tuple[np.ndarray, np.ndarray | None]:
        """(segmentation, probabilities) of one item on the predictor's thread, as its kind says."""
        return handling(item.condition).predict(self, item, output, seed, save_probabilities, stats)

    def _predict_image(self, item: _Prepared, output: Path, seed: int, save_probabilities: bool,
                       stats: RunStats) -> tuple[np.ndarray, np.ndarray | None]:
        """nnU-Net's whole inference path on the item's prepared image."""
        t = time.perf_counter()
        # preprocessing mutates the properties it is given
        result = self.predictor.predict_single_npy_array(item.image, deepcopy(item.data.properties), None, None,
                                                         save_probabilities)
        stats.seconds_predictor += time.perf_counter() - t
        return result if save_probabilities else (result, None)

    def _predict_attack(self, item: _Prepared, output: Path, seed: int, save_probabilities: bool,
                        stats: RunStats) -> tuple[np.ndarray, np.ndarray | None]:
        """White-box, away from the reference or the model's own clean prediction (docs/adversarial.md)."""
        from nnunet_robustness.adversarial import attack_case, get_attack

        data, condition = item.data, item.condition
        item.image = keep_background(attack_case(self.predictor, data.image, data.properties,
                                                 get_attack(condition.family, severity=condition.severity),
                                                 seed=item_seed(seed, item.case, condition),
                                                 label=data.label if self._objective == "reference" else None
                                                 ).image, data.body)
        self._measured(item)
        return self._predict_image(item, output, seed, save_probabilities, stats)

    def _predict_context(self, item: _Prepared, output: Path, seed: int, save_probabilities: bool,
                         stats: RunStats) -> tuple[np.ndarray, np.ndarray | None]:
        """Test-time context shift: predict a crop around the reference foreground, paste it back into a
        background canvas of the full image (see :mod:`nnunet_robustness.foreground_ratio`)."""
        from nnunet_robustness.foreground_ratio import context_box, paste_into_background
        from nnunet_robustness.records.context_fbr import write_context_record

        data = item.data
        ignore = self.predictor.label_manager.ignore_label
        box = context_box(data.label[0], data.properties["spacing"], item.condition.context_fbr, ignore)
        cropped = np.ascontiguousarray(data.image[(slice(None), *box.slices)])
        t = time.perf_counter()
        result = self.predictor.predict_single_npy_array(cropped, deepcopy(data.properties), None, None,
                                                         save_probabilities)
        stats.seconds_predictor += time.perf_counter() - t
        segmentation, probabilities = result if save_probabilities else (result, None)
        write_context_record(output / item.condition.name, item.case, box)
        return paste_into_background(segmentation, data.image.shape[1:], box, probabilities)

    def _write_item(self, segmentation: np.ndarray, probabilities: np.ndarray | None, item: _Prepared,
                    output: Path) -> None:
        """The item's records and probabilities first, the segmentation last: its presence marks the item done
        (writer thread)."""
        folder = output / item.condition.name
        if item.change is not None:
            item.change.write(folder, item.case)
        if item.view is not None:  # the picture of what the predictor got, for eval's report
            item.view.write(folder, item.case)
        paths = self.output_paths(output, item.case, item.condition)
        if probabilities is not None:
            with atomic_path(paths["npz"]) as tmp:
                np.savez_compressed(tmp, probabilities=probabilities)
            with atomic_path(paths["pkl"]) as tmp:
                tmp.write_bytes(pickle.dumps(item.data.properties))
        with atomic_path(paths["seg"]) as tmp:
            self.reader_writer.write_seg(segmentation, str(tmp), item.data.properties)


def condition_parameters(condition: Condition, attack_objective: str | None = None,
                         calibration: dict | None = None) -> dict:
    """What a condition applies, as JSON: a corruption's graded values and settings (and, on the calibrated
    scale, under ``calibration`` its level's target and reached SSIM), an attack's budget and objective, a
    crop's target foreground fraction."""
    return handling(condition).parameters(condition, attack_objective, calibration)


def _context_parameters(condition: Condition, attack_objective: str | None, calibration: dict | None) -> dict:
    return {"target_fbr": condition.context_fbr}


def _attack_parameters(condition: Condition, attack_objective: str | None, calibration: dict | None) -> dict:
    from nnunet_robustness.adversarial import get_attack

    budget = get_attack(condition.family, severity=condition.severity).to_json()
    # the random-sign control has no objective; every gradient attack pushes away from one
    return budget if condition.family == "adv_random_sign" or attack_objective is None else {
        **budget, "objective": attack_objective}


def _corruption_parameters(condition: Condition, attack_objective: str | None, calibration: dict | None) -> dict:
    corruption = corruption_for(condition)
    return json_ready({**corruption.values, **corruption.settings,
                       **({"calibration": calibration} if calibration is not None else {})})


@dataclass(frozen=True)
class KindHandling:
    """How ``run`` treats one kind of condition: the one place that dispatches on ``Condition.kind``."""

    # makes the item's image on a worker thread; None: left to the predictor's thread (attacks and crops
    # need the model or the whole-image prediction)
    prepare: Callable[..., _Prepared] | None
    predict: Callable[..., tuple[np.ndarray, np.ndarray | None]]  # on the predictor's thread
    parameters: Callable[[Condition, str | None, dict | None], dict]  # what run.json says it applied
    measured: bool  # what the model saw of its change is measured against the clean input
    corrupts: bool  # a corruption of the catalogue makes its image (on the corruption device)


HANDLING: dict[ConditionKind, KindHandling] = {
    ConditionKind.CLEAN: KindHandling(RobustnessRunner._prepare_clean, RobustnessRunner._predict_image,
                                      lambda condition, objective, calibration: {}, measured=False, corrupts=False),
    ConditionKind.CORRUPTION: KindHandling(RobustnessRunner._prepare_corruption, RobustnessRunner._predict_image,
                                           _corruption_parameters, measured=True, corrupts=True),
    ConditionKind.PRESET: KindHandling(RobustnessRunner._prepare_corruption, RobustnessRunner._predict_image,
                                       _corruption_parameters, measured=True, corrupts=True),
    ConditionKind.ATTACK: KindHandling(None, RobustnessRunner._predict_attack, _attack_parameters, measured=True,
                                       corrupts=False),
    ConditionKind.CONTEXT: KindHandling(None, RobustnessRunner._predict_context, _context_parameters,
                                        measured=False, corrupts=False),
}


def handling(condition: Condition) -> KindHandling:
    if condition.kind not in HANDLING:  # a folder name read back that says neither family nor severity
        raise UserInputError(f"condition {condition.name!r}: run cannot apply a condition of kind "
                             f"{condition.kind.value}")
    return HANDLING[condition.kind]


def resolve_folds(folds: Iterable[str] | None) -> tuple[int | str, ...] | None:
    if folds is None:
        return None
    return tuple(int(f) if f.isdigit() else f for f in folds)
