"""Float comparisons whose tolerance follows from the dtype and the magnitude, not from a fixed 1e-5.

An FFT, a convolution or a parallel sum computes the same result with a different rounding when the
work is split differently (thread count, batch of channels vs one channel): pocketfft/MKL partition
transforms by thread, so a value of a 32^3 float32 transform can differ by ~1e-4 on an image whose
intensities are ~1e3. The rounding error of such an operation grows with the machine epsilon, the
largest magnitude involved and (at most) log2 of the number of terms (Higham, "Accuracy and Stability
of Numerical Algorithms", ch. 24 for the FFT; pairwise summation alike), never with an element's own
size: a per-element relative tolerance fails wherever the result crosses zero.
"""

from __future__ import annotations

import math

import torch

SAFETY = 4.0  # headroom over the leading-order bound; still ~100x tighter than any real difference tested


def rounding_tolerance(expected: torch.Tensor, terms: int | None = None) -> float:
    """Absolute tolerance for a result computed by a different but equally exact split of the work:
    ``SAFETY * eps(dtype) * log2(terms) * max|expected|`` (``terms`` defaults to the tensor's size)."""
    terms = expected.numel() if terms is None else terms
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return SAFETY * torch.finfo(expected.dtype).eps * max(1.0, math.log2(max(terms, 2))) * scale


def assert_equal_up_to_rounding(actual: torch.Tensor, expected: torch.Tensor, terms: int | None = None) -> None:
    """``actual == expected`` within the rounding of a reordered float computation (see the module)."""
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=rounding_tolerance(expected, terms))
