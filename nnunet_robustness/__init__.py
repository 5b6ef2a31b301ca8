"""nnunet-robustness: robustness evaluation and architecture studies as an nnU-Net v2 plugin."""

__version__ = "0.1.0"
