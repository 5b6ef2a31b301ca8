"""Controlled synthetic datasets and task-complexity measures (docs/datasets.md).

- ``textures_dataset``: texture-blend segmentation datasets in nnU-Net's raw format
  (``nnunet-robust make-dataset textures``), built from ``texture_sources`` and ``blobs``;
- ``complexity``: per-case LBP texture disparity, contrast-to-noise ratio, foreground fraction;
- ``dataset_complexity`` / ``raw_dataset``: the same over a raw dataset (``nnunet-robust complexity``).

Submodules are not imported here, so importing the package stays cheap.
"""
