"""Adversarial perturbations through the pipeline nnU-Net deploys: its preprocessing, its trained
network(s) over its Gaussian-weighted sliding window, and the way back to the raw image.

What is differentiated
----------------------
``nnUNetPredictor.predict_single_npy_array`` maps a raw image ``x`` to logits as

    z   = R(N(C(T(x))))                 transpose T, crop to the non-zero box C, normalise N, resample R
    l_v = sum_t g_t(v) f_theta(z[tile_t])(v) / sum_t g_t(v)      Gaussian-weighted sliding window

(averaged over folds and, with test-time augmentation, over mirrorings inside ``f_theta``). The
attack maximises a loss of the **aggregated** logits ``l`` (the very quantity nnU-Net turns into the
segmentation), using the predictor's own network and parameters, its tiling
(``_internal_get_sliding_window_slicers``), its padding (``pad_nd_image``), its Gaussian weights
(``compute_gaussian``) and its mirroring (the undecorated ``_internal_maybe_mirror_and_predict``).
Only the accumulation is re-done here, in float32 (nnU-Net accumulates in float16 on every device),
because nnU-Net's loop runs under ``torch.inference_mode``.

Tile-by-tile gradient (no graph of the whole volume)
----------------------------------------------------
The loss couples tiles (a voxel's logits mix every tile covering it), so the exact gradient needs
``dLoss/dl`` of the whole aggregated volume before any tile is differentiated. Each step therefore
makes two passes: (1) a no-grad pass over all tiles gives ``l`` and, through autograd on ``l``
alone, ``G = dLoss/dl`` (the size of the logits); (2) for each tile, the network runs again with
gradients and the scalar ``sum(f(z_t) * g_t * G[t] / sum g)`` is differentiated with respect to
that tile's input only; the tile gradients are added into the input gradient. By the chain rule
this is the exact gradient of the loss of the aggregated logits, and at most one tile's graph is
in memory. Cost per step: about one forward + (one forward and one backward) per tile, i.e. ~3-4x
a clean prediction (see ``benchmarks/results/adversarial.json``).

Where the attack lives and how it is mapped back (the non-differentiable gap)
---------------------------------------------------------------------------
Cropping and resampling are numpy/scipy code and are not differentiable, so the perturbation
``delta`` is optimised **on the preprocessed grid, in raw intensity units**: the network sees
``z + s * delta``, where ``s`` (per voxel and channel) is the derivative of nnU-Net's own
normalisation with respect to the raw intensity, measured by a finite difference through
``DefaultPreprocessor._normalize`` (whatever scheme the plans name: ``1/std`` for z-score, ``1/std``
inside and 0 outside the clipping window for CT, ``1/255`` for RGB, 0 outside the mask when
``use_mask_for_norm``). Budgets are therefore enforced in raw units. The perturbation is then mapped
back with nnU-Net's own inverse geometry: resampled to the cropped shape with the plans' data
resampling function (only when the plans resample), put back into the crop box, transposed back.
It is finally re-projected onto the epsilon ball on the raw grid and added to the raw image.

The gap, exactly:

1. *Normalisation statistics.* z-score normalisation recomputes the mean and std from the
   perturbed image; the attack holds them at their clean values (only the diagonal of the
   normalisation's Jacobian is used). The shift of the mean is at most ``eps`` raw units and the
   std changes to first order by ``<delta, x - mean> / (n std)``, so for ``n`` of 10^4..10^7 voxels
   the neglected term is tiny; the runner re-runs the real pipeline on the returned image, so the
   reported numbers include it, and ``attack_case(..., verify=True)`` measures it.
2. *Resampling.* When the plans resample (target spacing != image spacing) ``delta`` lives on the
   resampled grid and is mapped back by resampling, which is not the adjoint of nnU-Net's forward
   resampling: the mapped-back perturbation is a smoothed / interpolated version, and after the
   re-projection on the raw grid it is a weaker attack than the one optimised. Without resampling
   (the common isotropic case and all tests here) step 2 is the identity and the map is exact.
3. *Voxels that are not perturbed.* Voxels that are zero in every channel (the background that
   nnU-Net crops away) are never changed, so the crop box and the non-zero mask are those of the
   clean image; a perturbed voxel that would land exactly on 0 is left unperturbed.

Target
------
Untargeted, away from the **reference segmentation** when ``label=`` is given (voxels outside the
non-zero region and the ignore label excluded): what Dice is scored against, so the attack lowers
that score. ``nnunet-robust run`` does this whenever ``--reference`` is given. Without a label, away
from the model's **own clean prediction** (the argmax of the clean aggregated logits): it needs no
reference and measures the stability of the prediction, but Dice against the reference need not
drop: on a model that over-segments, pushing away from its own prediction *raised* Dice (0.890 ->
0.926 at severity 5, issue #29).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
import torch

from nnunet_robustness.adversarial.attacks import (
    ATTACKS,
    ENSEMBLE_MEMBERS,
    AttackSpec,
    as_class_logits,
    ascent_step,
    attack_objective,
    flipped_fraction,
    mean_cross_entropy,
    norms,
    parse_attack_spec,
    project,
    random_start,
)
from nnunet_robustness.corruptions import intensity_reference
from nnunet_robustness.errors import UserInputError

# Finite-difference step of the normalisation derivative, as a fraction of the channel's robust range:
# large enough for float32 arithmetic (relative error ~1e-4 on the tests' images), small enough that
# the central difference's O(h^2) error is ~1e-5 and CT clipping is resolved voxel by voxel.
_SLOPE_STEP = 1e-3


# --- nnU-Net's preprocessing, and back ----------------------------------------------------------------

@dataclasses.dataclass
class PreprocessedCase:
    """A raw case in nnU-Net's network-input space, with what is needed to map perturbations back."""

    network_input: torch.Tensor  # z, float32 (C, *S_pre), exactly what predict_single_npy_array feeds the network
    slope: torch.Tensor  # d z / d raw intensity (C, *S_pre), 0 where a raw change has no effect
    mask: torch.Tensor  # bool (C, *S_pre): voxels the attack may change
    segmentation: np.ndarray | None  # the label in preprocessed space (1, *S_pre), if one was given
    properties: dict  # nnU-Net's properties after preprocessing (bbox, shapes)
    raw_shape: tuple[int, ...]
    resampled: bool
    spacing_raw: list[float]  # transposed raw spacing
    spacing_target: list[float]


def _target_spacing(configuration_manager, spacing_raw: Sequence[float], ndim: int) -> list[float]:
    # As DefaultPreprocessor.run_case_npy: a 2D configuration keeps the first (slice) axis' spacing.
    target = list(configuration_manager.spacing)
    return [spacing_raw[0], *target] if len(target) < ndim else target


def _neutral_signs(cropped: np.ndarray, perturbable: np.ndarray) -> np.ndarray:
    """A +-1 field (C, *S) on the perturbable voxels that moves neither a channel's mean nor, to first
    order, its standard deviation (the second-order growth cancels in the central difference): voxels
    are sorted by intensity and paired with their neighbour in that order, one of each pair +1 and
    the other -1 (which one is random, fixed seed).

    A plain random-sign field would shift a z-score's mean and std by O(h / sqrt(n)), which is as
    large as the diagonal term being measured divided by sqrt(n): ~0.5 % per voxel on a 32^3 image.
    Pairing makes ``sum r = 0`` exactly and ``sum (x - mean) r`` a sum of neighbour differences.
    """
    rng = np.random.default_rng(0)
    signs = np.zeros(cropped.shape, dtype=np.float32)
    index = np.flatnonzero(perturbable)
    for channel in range(cropped.shape[0]):
        values = cropped[channel].reshape(-1)[index]
        order = index[np.argsort(values, kind="stable")]
        pairs = len(order) // 2
        first = np.where(rng.random(pairs) < 0.5, 1.0, -1.0).astype(np.float32)
        flat = signs[channel].reshape(-1)
        flat[order[0:2 * pairs:2]] = first
        flat[order[1:2 * pairs:2]] = -first
        if len(order) % 2:  # one voxel left over: its mean shift is 1/n, negligible
            flat[order[-1]] = 1.0
    return signs


def preprocess_case(predictor, image: np.ndarray, properties: dict, label: np.ndarray | None = None
                    ) -> PreprocessedCase:
    """Run nnU-Net's own preprocessor on ``image`` (C, *spatial) float and measure the derivative of
    its normalisation with respect to the raw intensities."""
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero

    plans_manager, configuration_manager = predictor.plans_manager, predictor.configuration_manager
    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    seg = None
    if label is not None:
        seg = np.asarray(label)
        seg = seg[None] if seg.ndim == image.ndim - 1 else seg
        # a signed type: cropping marks the outside of the non-zero region with -1
        seg = np.rint(seg).astype(np.int16) if seg.dtype.kind == "f" else seg.astype(np.int16)
        if seg.shape[1:] != image.shape[1:]:
            raise UserInputError(f"label shape {seg.shape[1:]} does not match the image's {image.shape[1:]}")
    data, seg_pre, props = preprocessor.run_case_npy(image, seg, deepcopy(properties), plans_manager,
                                                     configuration_manager, predictor.dataset_json)
    transpose = [0, *[i + 1 for i in plans_manager.transpose_forward]]
    spacing_raw = [properties["spacing"][i] for i in plans_manager.transpose_forward]
    spacing_target = _target_spacing(configuration_manager, spacing_raw, image.ndim - 1)
    shape_cropped = tuple(props["shape_after_cropping_and_before_resampling"])
    resampled = shape_cropped != tuple(data.shape[1:])

    # d N / d x: a finite difference through nnU-Net's own _normalize, whatever the scheme, along a
    # +-h sign field that leaves the image statistics unchanged to first order (see _neutral_signs),
    # so the quotient is the diagonal of the normalisation's Jacobian (module docstring, gap 1).
    cropped, crop_seg, _ = crop_to_nonzero(image.astype(np.float32).transpose(transpose))
    spans = intensity_reference(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))).span
    h = (_SLOPE_STEP * np.asarray(spans, dtype=np.float32)).reshape(-1, *[1] * (cropped.ndim - 1))
    perturbable = np.broadcast_to((cropped != 0).any(axis=0), cropped.shape)
    signs = _neutral_signs(cropped, perturbable[0])
    intensities = plans_manager.foreground_intensity_properties_per_channel
    # central difference: the std of x +- h r grows by the same O(h^2) both ways, so (x - mean) / std
    # cancels and only the wanted term remains (a one-sided difference errs by ~|z| h / (2 std), ~1 %)
    up = preprocessor._normalize(cropped + h * signs, crop_seg, configuration_manager, intensities)
    down = preprocessor._normalize(cropped - h * signs, crop_seg, configuration_manager, intensities)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (up.astype(np.float64) - down) / (2 * h * signs)
    slope = np.where(perturbable & (signs != 0), slope, 0.0).astype(np.float32)
    mask = slope != 0
    if resampled:
        slope = configuration_manager.resampling_fn_data(slope, data.shape[1:], spacing_raw, spacing_target)
        mask = configuration_manager.resampling_fn_seg(mask.astype(np.int8), data.shape[1:], spacing_raw,
                                                       spacing_target) > 0
        slope = np.where(mask, slope, 0.0).astype(np.float32)
    return PreprocessedCase(
        network_input=torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)),
        slope=torch.from_numpy(np.ascontiguousarray(slope, dtype=np.float32)),
        mask=torch.from_numpy(np.ascontiguousarray(mask)),
        segmentation=seg_pre if label is not None else None,
        properties=props, raw_shape=tuple(image.shape), resampled=resampled,
        spacing_raw=spacing_raw, spacing_target=spacing_target)


def delta_to_raw(predictor, case: PreprocessedCase, delta: torch.Tensor) -> np.ndarray:
    """Map a perturbation (C, *S_pre) in raw units on the preprocessed grid back to the raw image's
    grid, inverting nnU-Net's geometry in the order its export does: resample, uncrop, untranspose."""
    from acvl_utils.cropping_and_padding.bounding_boxes import bounding_box_to_slice

    plans_manager, configuration_manager = predictor.plans_manager, predictor.configuration_manager
    values = delta.detach().cpu().numpy().astype(np.float32)
    props = case.properties
    if case.resampled:
        values = configuration_manager.resampling_fn_data(
            values, props["shape_after_cropping_and_before_resampling"], case.spacing_target, case.spacing_raw)
    full = np.zeros((values.shape[0], *props["shape_before_cropping"]), dtype=np.float32)
    full[(slice(None), *bounding_box_to_slice(props["bbox_used_for_cropping"]))] = values
    return full.transpose([0, *[i + 1 for i in plans_manager.transpose_backward]])


# --- the sliding window, differentiably ---------------------------------------------------------------

def _mirror_and_predict(predictor) -> Callable[[torch.Tensor], torch.Tensor]:
    """nnU-Net's network call with its test-time mirroring, without the inference_mode decorator (which
    would forbid gradients). ``torch.inference_mode()`` as a decorator keeps the function in
    ``__wrapped__``."""
    method = type(predictor)._internal_maybe_mirror_and_predict
    plain = getattr(method, "__wrapped__", None)
    if plain is None:  # pragma: no cover - only if a future nnU-Net drops the decorator
        plain = method
    return lambda x: plain(predictor, x)


class SlidingWindow:
    """Aggregated logits of an initialised ``nnUNetPredictor`` over its sliding window, for network
    inputs of one shape, and the exact input gradient of a loss on them, tile by tile."""

    def __init__(self, predictor, spatial_shape: Sequence[int]) -> None:
        from acvl_utils.cropping_and_padding.padding import pad_nd_image
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian

        self.predictor = predictor
        self.device = predictor.device
        self.patch_size = tuple(predictor.configuration_manager.patch_size)
        self._pad = lambda x: pad_nd_image(x, self.patch_size, "constant", {"value": 0}, True, None)
        padded, revert = self._pad(torch.zeros((1, *spatial_shape)))
        self.padded_shape = tuple(padded.shape[1:])
        self.revert = revert[1:]
        self.slicers = predictor._internal_get_sliding_window_slicers(self.padded_shape)
        if predictor.use_gaussian:
            # nnU-Net's weights, computed in its float16 and then widened, so they are bit-identical
            gaussian = compute_gaussian(self.patch_size, sigma_scale=1. / 8, value_scaling_factor=10,
                                        device=torch.device("cpu")).float()
        else:
            gaussian = torch.ones(self.patch_size)
        self.gaussian = gaussian
        weight_sum = torch.zeros(self.padded_shape)
        for slicer in self.slicers:
            weight_sum[slicer[1:]] += gaussian
        self.weight_sum = weight_sum
        self.num_heads = predictor.label_manager.num_segmentation_heads
        self.parameters = list(predictor.list_of_parameters)
        self.network_calls = 0
        self._predict = _mirror_and_predict(predictor)
        self.predictor.network.to(self.device)
        self.predictor.network.eval()
        if len(self.parameters) == 1:
            self._load(0)

    @property
    def num_tiles(self) -> int:
        return len(self.slicers)

    def _load(self, fold: int) -> None:
        network = self.predictor.network
        network = getattr(network, "_orig_mod", network)  # a torch.compile'd network holds the module here
        network.load_state_dict(self.parameters[fold])

    def _folds(self):
        for fold in range(len(self.parameters)):
            if len(self.parameters) > 1:
                self._load(fold)
            yield fold

    def _tile(self, padded: torch.Tensor, slicer) -> torch.Tensor:
        return padded[slicer][None].to(self.device, torch.float32).contiguous()

    def logits(self, network_input: torch.Tensor) -> torch.Tensor:
        """Aggregated logits (heads, *S) float32 on the CPU for network input (C, *S)."""
        padded, _ = self._pad(network_input)
        total = torch.zeros((self.num_heads, *self.padded_shape))
        with torch.no_grad():
            for _ in self._folds():
                for slicer in self.slicers:
                    out = self._predict(self._tile(padded, slicer))[0].float().cpu()
                    total[slicer] += out * self.gaussian
                    self.network_calls += 1
        total /= self.weight_sum * len(self.parameters)
        return total[(slice(None), *self.revert)]

    def input_gradient(self, network_input: torch.Tensor, logits_gradient: torch.Tensor) -> torch.Tensor:
        """``d loss / d input`` given ``logits_gradient = d loss / d logits`` (heads, *S): per tile,
        differentiate ``sum(f(tile) * g * G / sum g)`` with respect to the tile only."""
        padded, _ = self._pad(network_input)
        upstream = torch.zeros((self.num_heads, *self.padded_shape))
        upstream[(slice(None), *self.revert)] = logits_gradient
        upstream /= self.weight_sum * len(self.parameters)
        gradient = torch.zeros_like(padded, dtype=torch.float32)
        for _ in self._folds():
            for slicer in self.slicers:
                # inference_mode(False): gradients also when a caller runs us inside inference mode
                with torch.inference_mode(False), torch.enable_grad():
                    tile = self._tile(padded, slicer).clone().requires_grad_(True)
                    out = self._predict(tile)[0]
                    weight = (upstream[slicer] * self.gaussian).to(self.device)
                    (tile_gradient,) = torch.autograd.grad((out.float() * weight).sum(), tile)
                gradient[slicer] += tile_gradient[0].cpu()
                self.network_calls += 1
        return gradient[(slice(None), *self.revert)]


# --- attacks ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class AttackResult:
    """A perturbed raw image and what the attack saw (losses on the aggregated logits, preprocessed grid)."""

    image: np.ndarray  # perturbed raw image, same shape and (float) dtype as the input
    spec: AttackSpec
    eps_raw: list[float]  # per channel, raw units
    linf_raw: list[float]  # achieved max |delta| per channel on the raw grid
    rms_raw: list[float]  # achieved RMS of delta per channel over the perturbable voxels
    loss_clean: float | None = None  # mean CE of the clean logits vs the target
    loss_history: list[float] = dataclasses.field(default_factory=list)  # mean CE at each iterate, last = final
    flipped_fraction: float | None = None  # share of voxels whose argmax left the target (final iterate)
    loss_after_pipeline: float | None = None  # with verify=True: mean CE after re-running nnU-Net's preprocessing
    member: str | None = None  # adv_ensemble: the member attack that was strongest on this case
    member_losses: dict[str, float] = dataclasses.field(default_factory=dict)  # adv_ensemble: final loss per member
    resampled: bool = False
    num_tiles: int = 0
    network_calls: int = 0
    seconds: float = 0.0

    @property
    def loss_final(self) -> float | None:
        return self.loss_history[-1] if self.loss_history else None

    def record(self) -> dict[str, Any]:
        """JSON-friendly summary (everything but the image)."""
        data = dataclasses.asdict(self)
        data.pop("image")
        data["spec"] = self.spec.to_json()
        data["name"] = self.spec.name
        return data


def resolve_attack(attack: str | AttackSpec) -> AttackSpec:
    """An ``AttackSpec`` from a spec or one-condition spec string (``adv_pgd_linf:3``,
    ``adv_pgd_l2:eps=0.02;steps=5``)."""
    if isinstance(attack, AttackSpec):
        return attack
    if not isinstance(attack, str):
        raise UserInputError(f"attack must be a spec string or AttackSpec, got {type(attack).__name__}")
    specs = parse_attack_spec(attack)
    if len(specs) != 1:
        raise UserInputError(f"attack {attack!r} names {len(specs)} conditions; give one severity or value each")
    return specs[0]


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise UserInputError(f"image must be a numpy array (C, *spatial), got {type(image).__name__}")
    if image.ndim not in (3, 4) or image.size == 0:
        raise UserInputError(f"image must have shape (C, X, Y) or (C, X, Y, Z), got {image.shape}")
    if image.dtype.kind not in "fiu":
        raise UserInputError(f"image dtype {image.dtype} is not supported; use a float array")
    if not np.isfinite(image).all():
        raise UserInputError("image contains NaN or Inf values")
    return image


def _raw_mask(image: np.ndarray) -> np.ndarray:
    """Voxels the attack may change on the raw grid: non-zero in some channel (see gap 3)."""
    return np.broadcast_to((image != 0).any(axis=0), image.shape)


def _finish(image: np.ndarray, delta_raw: np.ndarray, spec: AttackSpec, eps: list[float]) -> tuple:
    """Re-project on the raw grid, keep zero voxels and the non-zero mask, add, cast back."""
    mask = torch.from_numpy(_raw_mask(image).copy())
    eps_t = torch.tensor(eps, dtype=torch.float32)
    delta = project(torch.from_numpy(delta_raw.astype(np.float32)), spec.kind.norm, eps_t, mask)
    work = image.astype(np.float64)
    perturbed = work + delta.numpy().astype(np.float64)
    # a non-zero voxel pushed exactly onto 0 would change nnU-Net's non-zero mask: leave it unperturbed
    landed_on_zero = (perturbed == 0) & (work != 0)
    perturbed[landed_on_zero] = work[landed_on_zero]
    achieved = torch.from_numpy(perturbed - work)
    linf, rms = norms(achieved, mask)
    out_dtype = image.dtype if image.dtype.kind == "f" else np.float32
    return perturbed.astype(out_dtype), linf, rms


def random_sign_case(image: np.ndarray, spec: AttackSpec, seed: int) -> AttackResult:
    """The control: ``eps_c * s`` with an independent random sign ``s`` per voxel and channel, on the
    raw grid and the same voxels an attack may change (L-inf norm and RMS both exactly ``eps_c``)."""
    start = time.perf_counter()
    image = _check_image(image)
    eps = spec.channel_eps(intensity_reference(torch.from_numpy(image.astype(np.float32))).span)
    generator = torch.Generator().manual_seed(int(seed))
    signs = torch.where(torch.rand(image.shape, generator=generator) < 0.5, -1.0, 1.0)
    delta = signs * torch.tensor(eps, dtype=torch.float32).view(-1, *[1] * (image.ndim - 1))
    perturbed, linf, rms = _finish(image, delta.numpy(), spec, eps)
    return AttackResult(perturbed, spec, eps, linf, rms, seconds=time.perf_counter() - start)


def attack_case(predictor, image: np.ndarray, properties: dict, attack: str | AttackSpec, seed: int = 0,
                label: np.ndarray | None = None, verify: bool = False) -> AttackResult:
    """Perturb raw ``image`` (C, *spatial) as read by the model's reader, with ``properties`` (at least
    ``spacing``), against the initialised ``nnUNetPredictor``; see the module docstring.

    ``seed`` fixes the random start (and the control's signs): the same inputs give the same output.
    ``verify`` re-runs nnU-Net's preprocessing on the result and records the loss there (the gap).
    """
    spec = resolve_attack(attack)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise UserInputError(f"seed must be an int, got {seed!r}")
    if spec.family == "adv_random_sign":
        return random_sign_case(image, spec, seed)
    if spec.family == "adv_ensemble":
        return _ensemble(predictor, image, properties, spec, int(seed), label, verify)
    # gradients are needed even if the caller predicts under torch.inference_mode
    with torch.inference_mode(False):
        return _attack(predictor, image, properties, spec, int(seed), label, verify)


def _ensemble(predictor, image: np.ndarray, properties: dict, spec: AttackSpec, seed: int,
              label: np.ndarray | None, verify: bool) -> AttackResult:
    """Every member of ``ENSEMBLE_MEMBERS`` at ``spec``'s budget (same seed, same objective); the result is
    the member whose final loss on the objective is highest on this case (an attack ensemble as Croce &
    Hein's AutoAttack uses for classification: each attack alone overestimates robustness)."""
    budget = {key: getattr(spec, key) for key in ("severity", "eps", "eps_raw") if getattr(spec, key) is not None}
    results = {}
    for member in ENSEMBLE_MEMBERS:
        with torch.inference_mode(False):
            results[member] = _attack(predictor, image, properties, AttackSpec(member, **budget), seed, label, verify)
    strongest = max(results, key=lambda name: results[name].loss_final)
    chosen = results[strongest]
    return dataclasses.replace(chosen, spec=spec, member=strongest,
                               member_losses={name: float(r.loss_final) for name, r in results.items()},
                               network_calls=sum(r.network_calls for r in results.values()),
                               seconds=sum(r.seconds for r in results.values()))


def _attack(predictor, image: np.ndarray, properties: dict, spec: AttackSpec, seed: int,
            label: np.ndarray | None, verify: bool) -> AttackResult:
    image = _check_image(image)
    if not isinstance(properties, dict) or "spacing" not in properties:
        raise UserInputError("properties must be the reader's dict with at least 'spacing'")
    start = time.perf_counter()
    label_manager = predictor.label_manager
    regions = label_manager.has_regions
    if regions and label is not None:
        raise UserInputError("region-based models are attacked away from their clean prediction; omit label=")

    case = preprocess_case(predictor, image, properties, label)
    eps = spec.channel_eps(intensity_reference(torch.from_numpy(image.astype(np.float32))).span)
    window = SlidingWindow(predictor, case.network_input.shape[1:])
    z, slope, mask = case.network_input, case.slope, case.mask
    eps_t = torch.tensor(eps, dtype=torch.float32)

    clean_logits = window.logits(z)
    if label is not None:
        target = torch.from_numpy(case.segmentation[0].astype(np.int64))
        valid = target >= 0
        if label_manager.has_ignore_label:
            valid &= target != label_manager.ignore_label
        target = target.clamp_min(0)
    elif regions:
        target = (clean_logits > 0).long()
        valid = torch.ones(target.shape, dtype=torch.bool)
    else:
        target = clean_logits.argmax(0)
        valid = torch.ones(target.shape, dtype=torch.bool)

    def class_logits(logits: torch.Tensor) -> torch.Tensor:
        return as_class_logits(logits, target, regions)[0]

    class_target = as_class_logits(clean_logits, target, regions)[1]
    loss_clean = mean_cross_entropy(class_logits(clean_logits), class_target, valid)

    norm = spec.kind.norm
    generator = torch.Generator().manual_seed(int(seed))
    if spec.kind.random_start:
        delta = random_start(norm, eps_t, mask, generator)
    else:
        delta = torch.zeros_like(z)
    step = eps_t * spec.step_fraction
    history: list[float] = []
    logits = clean_logits
    total = spec.n_steps
    for iteration in range(total):
        if iteration > 0 or spec.kind.random_start:
            logits = window.logits(z + slope * delta)
        leaf = logits.detach().requires_grad_(True)
        with torch.enable_grad():
            objective = attack_objective(spec.kind.loss, class_logits(leaf), class_target, valid, iteration, total)
            (logits_gradient,) = torch.autograd.grad(objective, leaf)
        history.append(mean_cross_entropy(class_logits(logits), class_target, valid))
        gradient = slope * window.input_gradient(z + slope * delta, logits_gradient)
        delta = project(ascent_step(delta, gradient, norm, step, mask), norm, eps_t, mask)

    delta_raw = delta_to_raw(predictor, case, delta)
    perturbed, linf, rms = _finish(image, delta_raw, spec, eps)
    # loss of the final iterate on the preprocessed grid (the raw-grid result is checked by verify=True)
    final_logits = window.logits(z + slope * delta)
    history.append(mean_cross_entropy(class_logits(final_logits), class_target, valid))
    result = AttackResult(perturbed, spec, eps, linf, rms, loss_clean=loss_clean, loss_history=history,
                          flipped_fraction=flipped_fraction(class_logits(final_logits), class_target, valid),
                          resampled=case.resampled, num_tiles=window.num_tiles)
    if verify:
        again = preprocess_case(predictor, perturbed, properties, None)
        if tuple(again.network_input.shape) == tuple(z.shape):
            result.loss_after_pipeline = mean_cross_entropy(class_logits(window.logits(again.network_input)),
                                                            class_target, valid)
    result.network_calls = window.network_calls
    result.seconds = time.perf_counter() - start
    return result


def perturb_case(predictor, image: np.ndarray, properties: dict, attack: str | AttackSpec, seed: int = 0,
                 label: np.ndarray | None = None) -> np.ndarray:
    """The perturbed raw image (same shape; same dtype for float input, float32 otherwise). The entry
    point for ``nnunet-robust run``: feed the result to ``predict_single_npy_array`` like a corruption.
    ``adv_random_sign`` does not use ``predictor`` (it may be None)."""
    return attack_case(predictor, image, properties, attack, seed=seed, label=label).image


__all__ = ["ATTACKS", "AttackResult", "PreprocessedCase", "SlidingWindow", "attack_case", "delta_to_raw",
           "perturb_case", "preprocess_case", "random_sign_case", "resolve_attack"]
