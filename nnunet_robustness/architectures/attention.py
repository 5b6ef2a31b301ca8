"""Additive attention gate for U-Net skip connections.

Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018,
https://arxiv.org/abs/1804.03999 (grid attention, Fig. 2 and Eq. 1-2).

The gate weighs each voxel of a skip feature map ``x`` by a coefficient ``alpha`` in [0, 1]
computed from ``x`` and a coarser gating signal ``g`` (the decoder features one level deeper):

    q     = ReLU(W_x * x  +  W_g * g)        # W_x: strided conv down to g's grid, W_g: 1x1 conv
    alpha = sigmoid(psi * q)                 # psi: 1x1 conv to one channel
    out   = upsample(alpha) * x

As in the paper, the additive term is computed on the coarse grid of ``g`` (cheap) and ``alpha`` is
resampled to the skip's grid with (bi/tri)linear interpolation. The paper's output projection W (a
1x1 conv + norm after the gating) is omitted: the decoder stage's first convolution directly
follows the gated skip and already applies a learned linear map to it.
"""

from __future__ import annotations

from typing import Sequence, Type

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.conv import _ConvNd


class AdditiveAttentionGate(nn.Module):
    """Gate a skip connection ``x`` (fine grid) with a gating signal ``g`` (coarse grid)."""

    def __init__(
        self,
        conv_op: Type[_ConvNd],
        skip_channels: int,
        gating_channels: int,
        stride: Sequence[int],
        intermediate_channels: int | None = None,
    ) -> None:
        super().__init__()
        stride = tuple(int(s) for s in stride)
        if intermediate_channels is None:
            intermediate_channels = max(skip_channels // 2, 1)
        # kernel == stride maps the skip exactly onto the coarse grid of g, also for anisotropic strides
        self.theta_x = conv_op(skip_channels, intermediate_channels, stride, stride, 0, bias=False)
        self.phi_g = conv_op(gating_channels, intermediate_channels, 1, 1, 0, bias=True)
        self.psi = conv_op(intermediate_channels, 1, 1, 1, 0, bias=True)
        self._interpolation = "bilinear" if conv_op is nn.Conv2d else "trilinear"

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Attention coefficients in [0, 1], one channel, on the spatial grid of ``x``."""
        theta = self.theta_x(x)
        phi = self.phi_g(g)
        if phi.shape[2:] != theta.shape[2:]:
            # only for inputs whose size is not divisible by the pooling (never in nnU-Net's patches)
            phi = F.interpolate(phi, size=theta.shape[2:], mode=self._interpolation, align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        return F.interpolate(alpha, size=x.shape[2:], mode=self._interpolation, align_corners=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.coefficients(x, g)
