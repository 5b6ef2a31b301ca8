"""The torch surface distances (``eval -device cuda``) on CPU tensors: the same values as the NumPy
code and DeepMind's surface-distance, the same errors, and the dispatch of ``compare_masks``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

surface_distance = pytest.importorskip("surface_distance")
torch = pytest.importorskip("torch")

from nnunet_robustness.metrics import per_case, surface_torch  # noqa: E402
from nnunet_robustness.metrics.inputs import collect_predictions, load_dataset_json  # noqa: E402
from nnunet_robustness.metrics.masks import compare_masks  # noqa: E402
from nnunet_robustness.metrics.surface import (  # noqa: E402
    average_symmetric_surface_distance,
    normalized_surface_dice,
    robust_hausdorff,
    surface_distances,
)
from nnunet_robustness.metrics.surface_torch import surface_distances_torch  # noqa: E402
from tests.helpers.prediction_folders import write_study  # noqa: E402

TOLERANCE_MM = 1e-6
FIELDS = ("reference_to_prediction", "reference_areas", "prediction_to_reference", "prediction_areas")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:surface_distance.*")


def _values(distances, tolerances) -> dict[str, float]:
    return {"hd95": robust_hausdorff(distances, 95), "hd100": robust_hausdorff(distances, 100),
            "hd50": robust_hausdorff(distances, 50), "assd": average_symmetric_surface_distance(distances),
            **{f"nsd@{t}": normalized_surface_dice(distances, t) for t in tolerances}}


def _deepmind(a, b, spacing, tolerances) -> dict[str, float]:
    distances = surface_distance.compute_surface_distances(a, b, spacing)
    return {"hd95": surface_distance.compute_robust_hausdorff(distances, 95),
            "hd100": surface_distance.compute_robust_hausdorff(distances, 100),
            "hd50": surface_distance.compute_robust_hausdorff(distances, 50),
            "assd": float(np.mean(surface_distance.compute_average_surface_distance(distances))),
            **{f"nsd@{t}": surface_distance.compute_surface_dice_at_tolerance(distances, t) for t in tolerances}}


def _assert_same(a: np.ndarray, b: np.ndarray, spacing, tolerances=(0.0, 1.0, 2.0)) -> None:
    ours = surface_distances_torch(a, b, spacing)
    numpy_code = surface_distances(a, b, spacing)
    for field in FIELDS:  # element for element: the same points in the same order
        np.testing.assert_allclose(getattr(ours, field), getattr(numpy_code, field), rtol=0, atol=1e-12,
                                   err_msg=field)
    expected, actual = _deepmind(a, b, spacing, tolerances), _values(ours, tolerances)
    for name, value in expected.items():
        assert actual[name] == pytest.approx(value, abs=TOLERANCE_MM), (name, spacing, a.shape)


def _random_pair(rng: np.random.Generator, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    shape = tuple(int(s) for s in rng.integers(6, 26, ndim))
    a = ndimage.binary_dilation(rng.random(shape) > 0.96, iterations=int(rng.integers(1, 3)))
    if rng.random() < 0.5:  # close to the reference: most of the surface shared
        b = a.copy()
        b[tuple(slice(int(rng.integers(0, s // 2)), None) for s in shape)] &= rng.random() < 0.5
        b |= ndimage.binary_dilation(rng.random(shape) > 0.99)
    else:
        b = ndimage.binary_dilation(rng.random(shape) > 0.96, iterations=int(rng.integers(1, 3)))
    a[tuple(rng.integers(0, s) for s in shape)] = True
    b[tuple(rng.integers(0, s) for s in shape)] = True
    return a, b


@pytest.mark.parametrize("ndim", [2, 3])
def test_random_masks_match_the_numpy_code_and_surface_distance(ndim: int) -> None:
    rng = np.random.default_rng(10 + ndim)
    for _ in range(25):
        a, b = _random_pair(rng, ndim)
        spacing = tuple(float(s) for s in rng.choice([0.5, 0.7, 1.0, 1.3, 2.5, 3.0], ndim))
        _assert_same(a, b, spacing, (0.0, spacing[0], 1.0, float(np.hypot(spacing[0], spacing[-1])), 2.0))


@pytest.mark.parametrize("shape, spacing", [((7, 9), (0.8, 2.5)), ((5, 8, 6), (2.5, 0.7, 1.3))])
def test_single_voxels_and_masks_touching_the_border(shape, spacing) -> None:
    a, b = np.zeros(shape, bool), np.zeros(shape, bool)
    a[(0,) * len(shape)] = True  # single voxels in opposite corners of the image
    b[tuple(n - 1 for n in shape)] = True
    _assert_same(a, b, spacing)
    _assert_same(a, a.copy(), spacing)
    full = np.ones(shape, bool)  # the whole image: its surface is the image border
    _assert_same(full, b, spacing)
    half = full.copy()
    half[: shape[0] // 2] = False
    _assert_same(full, half, spacing)


def test_empty_and_mismatched_masks_are_rejected_as_by_the_numpy_code() -> None:
    a, b = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    b[1, 1, 1] = True
    for first, second in ((a, b), (b, a), (a, a)):
        with pytest.raises(ValueError, match="non-empty"):
            surface_distances_torch(first, second, (1, 1, 1))
    with pytest.raises(ValueError, match="different shapes"):
        surface_distances_torch(b, b[:3], (1, 1, 1))
    with pytest.raises(ValueError, match="one spacing per axis"):
        surface_distances_torch(b, b, (1, 1))


def test_slab_size_changes_no_value() -> None:
    rng = np.random.default_rng(3)
    a = ndimage.binary_dilation(rng.random((14, 30, 22)) > 0.985, iterations=2)
    b = ndimage.binary_dilation(rng.random((14, 30, 22)) > 0.99, iterations=1)
    whole = surface_distances_torch(a, b, (2.5, 0.7, 0.9))
    for max_elements in (1, 17, 400, 5000):
        sliced = surface_distances_torch(torch.from_numpy(a), torch.from_numpy(b), (2.5, 0.7, 0.9),
                                         max_elements=max_elements)
        for field in FIELDS:
            assert np.array_equal(getattr(sliced, field), getattr(whole, field)), (field, max_elements)


def test_far_false_positive_islands() -> None:
    # islands far from the reference: long offsets before the early stop of the min-plus passes
    a = np.zeros((12, 60, 50), bool)
    a[4:8, 5:15, 5:12] = True
    b = a.copy()
    b[10, 55, 45] = b[0, 58, 2] = True
    _assert_same(a, b, (3.0, 0.6, 0.8))


def _torch_on_cpu(monkeypatch: pytest.MonkeyPatch) -> list:
    """``device="cuda"`` dispatches to the torch code, here on CPU tensors; returns the calls made."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("device"))
        return surface_distances_torch(*args, **{**kwargs, "device": "cpu"})

    monkeypatch.setattr(surface_torch, "cuda_device", lambda device: device)
    monkeypatch.setattr(surface_torch, "surface_distances_torch", spy)
    return calls


def test_compare_masks_dispatches_to_torch_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _torch_on_cpu(monkeypatch)
    reference = np.zeros((10, 16, 14), bool)
    reference[2:7, 3:12, 4:10] = True
    prediction = np.zeros_like(reference)
    prediction[3:8, 4:13, 4:9] = True
    single = np.zeros_like(reference)
    single[0, 0, 0] = True
    empty = np.zeros_like(reference)
    for a, b in ((reference, prediction), (single, prediction), (reference, empty), (empty, single), (empty, empty)):
        expected = compare_masks(a, b, (2.0, 0.5, 0.75), 1.0)
        actual = compare_masks(a, b, (2.0, 0.5, 0.75), 1.0, device="cuda")
        assert actual.keys() == expected.keys()
        for key, value in expected.items():  # the empty-mask policy is shared: same values, NaN included
            assert actual[key] == pytest.approx(value, abs=TOLERANCE_MM, nan_ok=True), key
    assert calls == ["cuda", "cuda"]  # the two pairs with both masks non-empty
    compare_masks(reference, prediction, (2.0, 0.5, 0.75), device="cpu")
    compare_masks(reference, prediction, (2.0, 0.5, 0.75))
    assert len(calls) == 2


def test_without_cuda_the_numpy_code_runs_with_one_warning(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    surface_torch._warn_no_cuda.cache_clear()
    monkeypatch.setattr(surface_torch, "surface_distances_torch", lambda *a, **k: pytest.fail("torch path used"))
    a = np.zeros((6, 6), bool)
    a[1:4, 2:5] = True
    rows = [compare_masks(a, np.roll(a, 1, axis=0), (1.0, 2.0), device="cuda") for _ in range(3)]
    assert rows[0] == rows[2] == compare_masks(a, np.roll(a, 1, axis=0), (1.0, 2.0))
    assert capsys.readouterr().err.count("torch sees no CUDA device") == 1


@pytest.mark.parametrize("num_processes", [1, 2])
def test_per_case_table_on_the_torch_path_equals_the_cpu_table(tmp_path, monkeypatch, num_processes) -> None:
    folders = write_study(tmp_path, n_cases=2, conditions=(("clean", None, 0), ("noise_sev2", "noise", 2)),
                          models=("A",))
    dataset = load_dataset_json(tmp_path / "dataset.json")
    predictions, cases, references = collect_predictions({"A": folders["A"]}, tmp_path / "labelsTs",
                                                         dataset.file_ending)
    expected = per_case.per_case_table(predictions, cases, references, dataset, progress=False)
    # in this process: the torch code on CPU tensors; in spawned workers (CUDA's start method) the
    # patch is gone, torch sees no GPU and the NumPy code answers
    _torch_on_cpu(monkeypatch)
    actual = per_case.per_case_table(predictions, cases, references, dataset, num_processes=num_processes,
                                     progress=False, device="cuda")
    assert list(actual.columns) == list(expected.columns)
    for column in expected.columns:
        if expected[column].dtype.kind == "f":
            np.testing.assert_allclose(actual[column], expected[column], rtol=0, atol=TOLERANCE_MM, err_msg=column)
        else:
            assert actual[column].tolist() == expected[column].tolist(), column
    assert not math.isnan(actual["hd95_mm"].iloc[0])
