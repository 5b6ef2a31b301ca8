# Installed by nnunet-robustness as nnunetv2/training/nnUNetTrainer/nnunet_robustness_trainers.py.
# nnU-Net's trainer search imports every module of that folder before its subfolders, so our
# trainers are found before the search reaches primus/ (which fails to import on CPU-only installs).
# The guard keeps nnU-Net's own trainers working if nnunet-robustness is broken or uninstalled.
try:
    from nnunet_robustness.trainers import *  # noqa: F401,F403
except Exception as _error:  # noqa: BLE001
    import warnings

    warnings.warn(f"nnunet-robustness trainers are unavailable ({_error!r}); nnU-Net's own trainers are "
                  "unaffected. Run `nnunet-robust doctor` for a fix.", RuntimeWarning, stacklevel=1)
