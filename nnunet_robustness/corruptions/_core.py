"""The machinery every corruption shares: severity tables, input validation and dtype handling,
the robust intensity reference, and the registry behind ``get_corruption``.

A corruption is used in two steps, as in TorchIO: ``sample_parameters`` draws everything random
(from an explicit ``torch.Generator``, never the global RNG) and turns the severity into absolute
values for *this* image; ``apply`` is then a deterministic function of ``(image, params)``.
``Corruption.__call__`` does both after validating and converting the input.
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import hashlib
import math
from contextlib import contextmanager
from numbers import Real
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch

from nnunet_robustness.condition_words import FAMILY_WORDS
from nnunet_robustness.conditions import MAX_SEVERITY
from nnunet_robustness.errors import UserInputError

#: Parameters of one draw, as returned by ``sample_parameters``: plain ints, floats, strings and
#: lists of them, so that a runner can log them as JSON and replay them through ``apply``.
Params = dict[str, Any]

ImageLike = torch.Tensor | np.ndarray

_SUPPORTED_DTYPES = (
    torch.float16, torch.bfloat16, torch.float32, torch.float64,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
)
# numpy dtypes torch cannot hold; they are computed via float32 and cast back with numpy.
_NUMPY_ONLY_INT_DTYPES = (np.dtype(np.uint16), np.dtype(np.uint32))


@dataclasses.dataclass(frozen=True)
class SeverityTable:
    """The graded parameters of one family.

    ``levels[k - 1]`` holds the values at severity ``k`` (1..5) and ``meanings[k - 1]`` says what
    that level means physically. ``identity`` holds the values that leave the image unchanged and
    serves as severity 0, so a float severity in [0, 5] interpolates linearly between neighbouring
    rows (used for sweeps).
    """

    identity: Mapping[str, float]
    levels: tuple[Mapping[str, float], ...]
    meanings: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.levels) != MAX_SEVERITY or len(self.meanings) != MAX_SEVERITY:
            raise ValueError(f"a severity table needs exactly {MAX_SEVERITY} levels and meanings")
        for row in self.levels:
            if set(row) != set(self.identity):
                raise ValueError(f"level keys {sorted(row)} differ from identity keys {sorted(self.identity)}")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.identity)

    def at(self, severity: float) -> dict[str, float]:
        rows = (self.identity, *self.levels)
        lower = min(int(math.floor(severity)), MAX_SEVERITY - 1)
        weight = severity - lower
        return {key: float((1.0 - weight) * rows[lower][key] + weight * rows[lower + 1][key])
                for key in self.identity}


def check_severity(severity: object) -> float:
    """Return ``severity`` as a float, or raise if it is not a number in [0, 5]."""
    if isinstance(severity, bool) or not isinstance(severity, Real):
        raise UserInputError(f"severity must be a number from 0 to {MAX_SEVERITY}, got {severity!r}")
    value = float(severity)
    if not (0.0 <= value <= MAX_SEVERITY):  # also rejects NaN
        raise UserInputError(f"severity {severity!r} is out of range: use an int 1..{MAX_SEVERITY} "
                             f"or a float in [0, {MAX_SEVERITY}]")
    return value


class Corruption:
    """Base class of all corruptions. Subclasses set the class attributes and implement
    ``sample_parameters`` and ``apply``.

    Create one from a severity (``GaussianNoise(severity=3)``) or, without a severity, from explicit
    values for every key of its table (``GaussianNoise(std_fraction=0.03)``). ``options`` are settings
    that severity does not grade (for example the slice axis); they can be given either way.
    """

    family: ClassVar[str]
    group: ClassVar[str]
    summary: ClassVar[str]  # one line, shown by ``nnunet-robust corrupt --list``
    # set by ``register`` from nnunet_robustness.condition_words: what the family does to the image
    # (robust training's seen/unseen groups) and what it simulates in plain words (the report)
    effect: ClassVar[str]
    plain: ClassVar[str]
    table: ClassVar[SeverityTable]
    options: ClassVar[Mapping[str, Any]] = {}
    requires_label: ClassVar[bool] = False
    # The number of image channels the family works on (he_stain: 3, an RGB image), None for any: checked
    # by `corrupt` before anything is written, so "--family all" on a greyscale folder does not stop
    # half-way through the families.
    channels: ClassVar[int | None] = None
    # What the graded values are relative to: "relative" (the image's robust intensity range, so a level
    # means the same on any scale), or an absolute scale the family expects ("hu", "rgb", "8bit", "light").
    intensity_scale: ClassVar[str] = "relative"
    # nnU-Net normalisation schemes (class names in the plans) that remove this family's change exactly,
    # so that the model never sees it (e.g. z-scoring removes a * x + b); `run` warns, `eval` excludes.
    cancelled_by: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, severity: float | None = None, **settings: Any) -> None:
        known = set(self.table.keys) | set(self.options)
        unknown = sorted(set(settings) - known)
        if unknown:
            raise UserInputError(f"{self.family}: unknown parameter(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(known))}")
        if severity is None:
            missing = [key for key in self.table.keys if key not in settings]
            if missing:
                raise UserInputError(f"{self.family}: give a severity (1..{MAX_SEVERITY}) or values for "
                                     f"all of: {', '.join(missing)}")
            self.severity: float | None = None
            values: dict[str, float] = {}
        else:
            self.severity = check_severity(severity)
            values = self.table.at(self.severity)
        for key in self.table.keys:
            if key in settings:
                value = settings[key]
                if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                    raise UserInputError(f"{self.family}: {key} must be a finite number, got {value!r}")
                values[key] = float(value)
        self.values: dict[str, float] = values
        self.settings: dict[str, Any] = {**self.options,
                                         **{k: v for k, v in settings.items() if k in self.options}}
        self.validate()

    def validate(self) -> None:
        """Check ``self.values`` and ``self.settings``; raise ``UserInputError`` naming the bad one."""

    def _require(self, condition: bool, message: str) -> None:
        if not condition:
            raise UserInputError(f"{self.family}: {message}")

    def sample_parameters(self, image: torch.Tensor, spacing: tuple[float, ...],
                          generator: torch.Generator) -> Params:
        """Draw this call's random parameters and convert graded values into absolute ones.

        ``image`` is float32 ``(C, *spatial)`` with 2 or 3 spatial axes, ``spacing`` is in mm per
        spatial axis, ``generator`` is a CPU generator (so parameters do not depend on the device).
        """
        raise NotImplementedError

    def apply(self, image: torch.Tensor, params: Mapping[str, Any], spacing: tuple[float, ...],
              label: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministically corrupt float32 ``image`` (C, *spatial) with ``params``; return a new tensor."""
        raise NotImplementedError

    def __call__(self, image: ImageLike, spacing: Sequence[float], seed: int = 0,
                 label: ImageLike | None = None) -> ImageLike:
        """Corrupt ``image`` (C, X, Y[, Z]) with voxel ``spacing`` (mm, one value per spatial axis).

        Returns the same type (tensor or array), dtype, shape and device. ``label`` (the reference
        segmentation, spatial shape or (1, *spatial)) is only read, by families that need it.
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise UserInputError(f"seed must be an int, got {seed!r}")
        prepared = prepare_image(image, spacing, label, family=self.family)
        if self.requires_label and prepared.label is None:
            raise UserInputError(f"{self.family} needs the reference label (label=...) to know the foreground")
        generator = torch.Generator().manual_seed(int(seed))
        params = self.sample_parameters(prepared.image, prepared.spacing, generator)
        if prepared.removed_spacing is not None:
            params = self.with_removed_axis(params, prepared.removed_spacing, prepared.spacing)
        corrupted = self.apply(prepared.image, params, prepared.spacing, prepared.label)
        return prepared.restore(corrupted)

    def with_removed_axis(self, params: Params, removed_mm: float, spacing: tuple[float, ...]) -> Params:
        """``params`` for an image given in nnU-Net's 2D layout ``(C, 1, X, Y)``, whose singleton axis
        ``prepare_image`` removed, with that axis's spacing ``removed_mm`` (nnU-Net's dummy 999 for a true
        2D image, a real slice thickness for a one-slice volume) and the remaining ``spacing``. Only a
        family whose physics depends on the axis it does not see (a CT slice's thickness sets its photon
        count) records it; the others ignore it."""
        return params

    def __repr__(self) -> str:
        if self.severity is not None:
            return f"{type(self).__name__}(severity={self.severity:g})"
        values = ", ".join(f"{k}={v!r}" for k, v in {**self.values, **self.settings}.items())
        return f"{type(self).__name__}({values})"


# --- input preparation -------------------------------------------------------------------------------

@dataclasses.dataclass
class PreparedImage:
    image: torch.Tensor  # float32 (C, *spatial), singleton spatial axis removed; may share the input's memory
    spacing: tuple[float, ...]
    label: torch.Tensor | None
    restore: Callable[[torch.Tensor], ImageLike]
    # the spacing (mm) of the singleton axis removed from nnU-Net's 2D layout; None when none was removed
    removed_spacing: float | None = None


def prepare_image(image: ImageLike, spacing: Sequence[float], label: ImageLike | None = None,
                  family: str = "corruption") -> PreparedImage:
    """Validate the user's input and convert it to float32 for computation.

    nnU-Net stores 2D images as 3D with one singleton axis, ``(C, 1, Y, X)``; such an axis is removed
    here and put back on output, so the 2D code path is used. Its spacing (nnU-Net's dummy 999 for a
    true 2D image, a real slice thickness for a one-slice volume) is kept as ``removed_spacing`` for
    the families that need it (``Corruption.with_removed_axis``).
    """
    is_numpy = isinstance(image, np.ndarray)
    numpy_dtype: np.dtype | None = None
    if is_numpy:
        numpy_dtype = image.dtype
        if numpy_dtype in _NUMPY_ONLY_INT_DTYPES:
            tensor = torch.from_numpy(image.astype(np.int64))
        elif numpy_dtype.kind in "fiu" and numpy_dtype.itemsize <= 8:
            tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=numpy_dtype.newbyteorder("=")))
        else:
            raise UserInputError(f"{family}: image dtype {numpy_dtype} is not supported; use a float or "
                                 f"integer array")
    elif isinstance(image, torch.Tensor):
        tensor = image
        if tensor.dtype not in _SUPPORTED_DTYPES:
            raise UserInputError(f"{family}: image dtype {tensor.dtype} is not supported; use a float or "
                                 f"integer tensor")
    else:
        raise UserInputError(f"{family}: image must be a torch.Tensor or numpy.ndarray, got {type(image).__name__}")

    shape = tuple(tensor.shape)
    if tensor.ndim not in (3, 4):
        raise UserInputError(f"{family}: image must have shape (C, X, Y) or (C, X, Y, Z), got {shape}")
    if tensor.numel() == 0:
        raise UserInputError(f"{family}: image of shape {shape} is empty")
    if tensor.is_floating_point() and not shared_per_image("finite", tensor, lambda: _all_finite(tensor)):
        bad = int((~torch.isfinite(tensor)).sum())
        raise UserInputError(f"{family}: image contains {bad} NaN or Inf value(s); corruptions need "
                             f"finite intensities")

    spatial = shape[1:]
    spacing_tuple = _check_spacing(spacing, len(spatial), family)
    singleton = [axis for axis, size in enumerate(spatial) if size == 1]
    if len(spatial) - len(singleton) < 2:
        raise UserInputError(f"{family}: image of shape {shape} has fewer than two spatial axes larger than 1")
    squeeze_axis = singleton[0] if (len(spatial) == 3 and singleton) else None

    # No copy for float32 input: ``apply`` implementations never write into their input.
    work = tensor.to(torch.float32)
    removed_spacing = None
    if squeeze_axis is not None:
        work = work.squeeze(1 + squeeze_axis)
        removed_spacing = spacing_tuple[squeeze_axis]
        spacing_tuple = spacing_tuple[:squeeze_axis] + spacing_tuple[squeeze_axis + 1:]

    label_tensor = None
    if label is not None:
        label_tensor = _prepare_label(label, spatial, family, work.device)
        if squeeze_axis is not None:
            label_tensor = label_tensor.squeeze(squeeze_axis)

    out_dtype = tensor.dtype

    def restore(result: torch.Tensor) -> ImageLike:
        if squeeze_axis is not None:
            result = result.unsqueeze(1 + squeeze_axis)
        if not is_numpy:
            return cast_to_dtype(result, out_dtype)
        return cast_to_dtype(result.cpu().numpy(), numpy_dtype)

    return PreparedImage(work, spacing_tuple, label_tensor, restore, removed_spacing)


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether a float tensor holds no NaN or Inf.

    The minimum and maximum are finite iff every value is (NaN propagates through both, an Inf is an
    extreme): two vectorised reductions that only read the image. On a 128^3 float32 volume (one CPU
    thread) they take 0.2 ms, against 1.5 ms for a float64 sum (which converts every value) and 6 ms
    for ``torch.isfinite(x).all()`` (which writes a boolean image). A float32 sum would be as cheap
    but can overflow on large finite values.
    """
    return math.isfinite(float(tensor.amin())) and math.isfinite(float(tensor.amax()))


def _check_spacing(spacing: Sequence[float], ndim: int, family: str) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise UserInputError(f"{family}: spacing must be a sequence of {ndim} numbers (mm), got {spacing!r}") from None
    if len(values) != ndim:
        raise UserInputError(f"{family}: spacing {spacing!r} has {len(values)} values but the image has "
                             f"{ndim} spatial axes")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise UserInputError(f"{family}: spacing {spacing!r} must be finite and positive")
    return values


def _prepare_label(label: ImageLike, spatial: tuple[int, ...], family: str, device: torch.device) -> torch.Tensor:
    if isinstance(label, np.ndarray):
        label_tensor = torch.from_numpy(np.asarray(label).astype(np.float32))
    elif isinstance(label, torch.Tensor):
        label_tensor = label.detach()
    else:
        raise UserInputError(f"{family}: label must be a torch.Tensor or numpy.ndarray, got {type(label).__name__}")
    if tuple(label_tensor.shape) == (1, *spatial):
        label_tensor = label_tensor[0]
    if tuple(label_tensor.shape) != spatial:
        raise UserInputError(f"{family}: label shape {tuple(label.shape)} does not match the image's spatial "
                             f"shape {spatial}")
    return label_tensor.to(device)


def cast_to_dtype(values: ImageLike, dtype: torch.dtype | np.dtype) -> ImageLike:
    """Cast float results back to ``dtype`` (a tensor to a torch dtype, an array to a numpy dtype):
    integers are rounded (half to even) and clipped to the dtype's range, low-precision floats are
    clipped to their finite range (never Inf)."""
    if isinstance(values, np.ndarray):
        dtype = np.dtype(dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return np.clip(np.rint(values), info.min, info.max).astype(dtype)
        if dtype == np.float16:
            info = np.finfo(dtype)
            values = np.clip(values, info.min, info.max)
        return values.astype(dtype)
    if dtype.is_floating_point:
        if dtype in (torch.float16, torch.bfloat16):
            info = torch.finfo(dtype)
            values = values.clamp(info.min, info.max)
        return values.to(dtype)
    info = torch.iinfo(dtype)
    return values.round().clamp(info.min, info.max).to(dtype)


# --- intensity reference -----------------------------------------------------------------------------

_MAX_SAMPLES = 1 << 16


@dataclasses.dataclass(frozen=True)
class IntensityReference:
    """Per-channel robust statistics that graded intensities are defined against.

    ``low``/``high`` are the 0.5th and 99.5th percentiles of the foreground (every voxel except a
    constant padding/background value at the channel minimum that fills at least 1% of the image, so
    that the reference does not depend on how much padding surrounds the field of view), ``span = high - low``
    (never zero), ``median`` the foreground median and ``minimum`` the channel minimum.
    Because all of them move with the image under ``a * x + b`` (a > 0), a corruption defined
    as a fraction of ``span`` means the same on HU, MR arbitrary units and 0-255 images.
    """

    # tuples: one instance is shared by every condition of an image (shared_image_statistics)
    low: tuple[float, ...]
    high: tuple[float, ...]
    span: tuple[float, ...]
    median: tuple[float, ...]
    minimum: tuple[float, ...]
    maximum: tuple[float, ...]


# --- per-image work shared by every condition of one image ---------------------------------------------

_SHARED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("shared_per_image", default=None)


@contextmanager
def shared_image_statistics(cache: dict | None = None) -> Iterator[None]:
    """Within the block, work that depends on the image only (the finiteness check, the robust intensity
    reference) is done once per image and reused by every corruption applied to it: ``run`` and
    ``corrupt`` wrap all conditions of one case in it. Results are identical to computing them anew.

    ``cache``: a dict to keep the results in, so that blocks in several threads (``run`` prepares the
    conditions of a case in parallel) share them; a fresh one by default."""
    token = _SHARED.set({} if cache is None else cache)
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared_per_image(kind: str, tensor: torch.Tensor, compute: Callable[[], Any]) -> Any:
    """``compute()``, or its earlier result for the same image inside ``shared_image_statistics``.

    The key is the tensor's memory, layout and in-place version counter; the cache holds a reference to
    the tensor, so its memory cannot be reused by another image while the block lasts.
    """
    cache = _SHARED.get()
    if cache is None:
        return compute()
    key = (kind, tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype, str(tensor.device),
           tensor._version)
    if key not in cache:
        cache[key] = (compute(), tensor)
    return cache[key][0]


def intensity_reference(image: torch.Tensor) -> IntensityReference:
    """Robust per-channel intensity statistics of float32 ``image`` (C, *spatial), computed once per image
    inside ``shared_image_statistics``.

    Percentiles come from a deterministic strided subsample of at most 65536 voxels (the stride is
    odd so it does not alias with power-of-two row lengths), which keeps this cheap on large volumes.
    """
    return shared_per_image("intensity_reference", image, lambda: _intensity_reference(image))


def _intensity_reference(image: torch.Tensor) -> IntensityReference:
    flat = image.reshape(image.shape[0], -1)
    minimum = flat.amin(dim=1)
    maximum = flat.amax(dim=1)
    stride = max(1, flat.shape[1] // _MAX_SAMPLES) | 1
    sample = flat[:, ::stride]
    low, high, span, median = [], [], [], []
    for channel in range(flat.shape[0]):
        values = sample[channel]
        # The padding / air / background value: the channel minimum when it is a constant that fills at
        # least 1% of the image (zero background of MR, -3024 HU outside a CT's field of view). Left
        # out, the reference is the same with and without padding; a noisy minimum (CT air inside the
        # field of view) is image content and stays in.
        at_minimum = values == minimum[channel]
        foreground = values
        if int(at_minimum.sum()) >= max(1, values.numel() // 100):
            foreground = values[~at_minimum]
            if foreground.numel() < max(16, values.numel() // 100):
                foreground = values
        q_low, q_median, q_high = _percentiles(foreground, (0.005, 0.5, 0.995))
        channel_span = q_high - q_low
        if not channel_span > 0:
            channel_span = float(maximum[channel] - minimum[channel])
        if not channel_span > 0:  # constant image: fall back to its magnitude so fractions stay meaningful
            channel_span = max(abs(q_low), 1.0)
        low.append(q_low)
        high.append(q_high)
        span.append(channel_span)
        median.append(q_median)
    return IntensityReference(tuple(low), tuple(high), tuple(span), tuple(median), tuple(float(v) for v in minimum),
                              tuple(float(v) for v in maximum))


def _percentiles(values: torch.Tensor, fractions: Sequence[float]) -> list[float]:
    """Linear-interpolation quantiles (numpy's default) of 1D ``values``.

    Only the two order statistics around each quantile are needed, so each is selected with
    ``torch.kthvalue`` (linear time) instead of sorting the whole sample: about 4x cheaper on CPU for
    three quantiles, and exactly the values a sort would give.
    """
    last = values.numel() - 1

    def order_statistic(rank: int) -> float:  # 0-based rank in ascending order
        return float(torch.kthvalue(values, rank + 1).values)

    result = []
    for fraction in fractions:
        position = fraction * last
        lower = int(math.floor(position))
        upper = min(lower + 1, last)
        weight = position - lower
        low_value = order_statistic(lower)
        high_value = order_statistic(upper) if weight > 0 else low_value
        result.append(low_value * (1 - weight) + high_value * weight)
    return result


# --- randomness --------------------------------------------------------------------------------------

def draw_seed(generator: torch.Generator) -> int:
    """A seed for a noise field, drawn from the parameter generator."""
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def uniform(generator: torch.Generator, *shape: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low


def random_sign(generator: torch.Generator) -> float:
    return 1.0 if float(torch.rand((), generator=generator)) < 0.5 else -1.0


def field_generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts, e.g. ``derive_seed(base_seed, case_id, family, severity)``.

    Python's ``hash`` is salted per process, so this uses SHA-256: the same parts give the same seed
    on every machine and run.
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def channel_view(values: Sequence[float], image: torch.Tensor) -> torch.Tensor:
    """Per-channel values shaped to broadcast against ``image`` (C, *spatial)."""
    return torch.tensor(values, dtype=image.dtype, device=image.device).view(-1, *([1] * (image.ndim - 1)))


# --- registry ----------------------------------------------------------------------------------------

#: Every family, by name, in catalogue order.
CORRUPTIONS: dict[str, type[Corruption]] = {}

C = TypeVar("C", bound=type[Corruption])


def register(cls: C) -> C:
    if cls.family in CORRUPTIONS:
        raise ValueError(f"corruption family {cls.family!r} registered twice")
    # the plain words and the effect group live torch-free (eval and the report read them without
    # loading this library); a family cannot join the catalogue without them
    words = FAMILY_WORDS.get(cls.family)
    if words is None:
        raise ValueError(f"corruption family {cls.family!r} has no entry in "
                         "nnunet_robustness.condition_words.FAMILY_WORDS (its effect group and plain words)")
    cls.effect, cls.plain = words.effect, words.plain
    CORRUPTIONS[cls.family] = cls
    return cls


def list_families() -> list[str]:
    return list(CORRUPTIONS)


def unknown_name_error(name: str, known: Sequence[str]) -> UserInputError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return UserInputError(f"unknown corruption {name!r}{hint}; known: {', '.join(known)}")
