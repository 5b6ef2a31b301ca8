"""Small U-Nets of both nnU-Net families for architecture tests: constructor arguments and class pairs."""

from __future__ import annotations

from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from torch import nn

from nnunet_robustness.architectures import SkipSelectivePlainConvUNet, SkipSelectiveResidualEncoderUNet


def arch_kwargs(family: str, dim: int, strides=None) -> dict:
    conv = nn.Conv2d if dim == 2 else nn.Conv3d
    norm = nn.InstanceNorm2d if dim == 2 else nn.InstanceNorm3d
    n_stages = 4
    common = dict(
        input_channels=2, n_stages=n_stages, features_per_stage=[4, 8, 16, 16], conv_op=conv, kernel_sizes=3,
        strides=strides or [1, 2, 2, 2], num_classes=3, n_conv_per_stage_decoder=1, conv_bias=True, norm_op=norm,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True},
    )
    if family == "plain":
        return dict(common, n_conv_per_stage=2)
    return dict(common, n_blocks_per_stage=[1, 1, 2, 2])


CLASSES = {"plain": (PlainConvUNet, SkipSelectivePlainConvUNet),
           "resenc": (ResidualEncoderUNet, SkipSelectiveResidualEncoderUNet)}
