"""``nnunet-robust doctor``: is this machine ready to train and evaluate with our trainers?

Each check prints OK / WARN / FAIL and, for anything not OK, the command that fixes it. The exit
status is 1 when any check FAILs (WARN is information: things work, with a caveat).
"""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, List

from packaging.version import Version

SUPPORTED_NNUNET = (Version("2.8"), Version("2.9"))


@dataclass
class Check:
    status: str  # "OK", "WARN" or "FAIL"
    what: str
    fix: str = ""


def _check_python() -> List[Check]:
    return [Check("OK", f"Python {platform.python_version()} ({platform.machine()})")]


def _check_torch() -> List[Check]:
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure is the finding
        return [Check("FAIL", f"torch does not import: {e!r}",
                      "pip install torch==2.13.0   (CPU) or the CUDA build from pytorch.org, then reinstall us")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return [Check("OK", f"torch {torch.__version__}, CUDA {torch.version.cuda}: {names}")]
    return [Check("OK", f"torch {torch.__version__}, no CUDA device: pass `-device cpu` to nnUNetv2_train/predict")]


def _check_nnunet() -> List[Check]:
    try:
        version = Version(metadata.version("nnunetv2"))
    except metadata.PackageNotFoundError:
        return [Check("FAIL", "nnunetv2 is not installed", "pip install 'nnunetv2>=2.8,<2.9'")]
    low, high = SUPPORTED_NNUNET
    if not low <= version < high:
        return [Check("FAIL", f"nnunetv2 {version} is outside the supported range >={low},<{high}",
                      f"pip install 'nnunetv2>={low},<{high}'")]
    return [Check("OK", f"nnunetv2 {version}")]


def _check_environment() -> List[Check]:
    checks = []
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        value = os.environ.get(variable)
        if not value:
            checks.append(Check("WARN", f"{variable} is not set (nnU-Net commands need it)",
                                f"export {variable}=/path/to/{variable}"))
        elif not os.path.isdir(value):
            checks.append(Check("WARN", f"{variable}={value} does not exist yet", f"mkdir -p {value}"))
        else:
            checks.append(Check("OK", f"{variable}={value}"))
    for variable, default in (("nnUNet_n_proc_DA", 12), ("nnUNet_def_n_proc", 8)):
        value = os.environ.get(variable)
        cpus = os.cpu_count() or 1
        if value is None and cpus < default:
            checks.append(Check("WARN", f"{variable} unset: nnU-Net will start {default} workers on {cpus} CPUs",
                                f"export {variable}={cpus}"))
    return checks


def _check_torchvision() -> List[Check]:
    # nnU-Net's trainer search imports primus/ (timm -> torchvision) before its variants/ folder.
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return [Check("WARN", f"torchvision does not import ({type(e).__name__}: {str(e)[:80]}): nnU-Net's own "
                              "trainers in subfolders (e.g. nnUNetTrainer_5epochs) and nnUNet_extTrainer cannot be "
                              "found; ours (found earlier, via the shim) and nnUNetTrainer are fine",
                      "install a torchvision build matching your torch, or use our *_Nepochs trainers")]
    return [Check("OK", "torchvision imports")]


def _check_shim() -> List[Check]:
    from nnunet_robustness.shim import ShimState, shim_path, shim_state

    state = shim_state()
    if state is ShimState.OK:
        return [Check("OK", f"trainer shim present: {shim_path()}")]
    return [Check("FAIL", f"trainer shim {state.value}: {shim_path()} (nnUNetv2_train/predict cannot find "
                          "our trainers)", "nnunet-robust install-shim")]


def _check_trainer_lookup() -> List[Check]:
    """Resolve every trainer with nnU-Net's own lookup, as ``nnUNetv2_train -tr NAME`` does."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_robustness.trainers import TRAINERS

    failures = []
    for name, expected in TRAINERS.items():
        try:
            found = recursive_find_trainer_class_by_name(name)
        except Exception as e:  # noqa: BLE001 - nnU-Net raises RuntimeError or import errors from other modules
            failures.append(f"{name} ({type(e).__name__}: {str(e).splitlines()[0][:100]})")
            continue
        if found.__module__ != expected.__module__ or found.__qualname__ != expected.__qualname__:
            failures.append(f"{name} (resolves to {found.__module__}.{found.__qualname__})")
    if failures:
        return [Check("FAIL", f"nnU-Net's trainer lookup fails for {len(failures)} of {len(TRAINERS)} trainers: "
                              + "; ".join(failures[:3]) + (" ..." if len(failures) > 3 else ""),
                      "nnunet-robust install-shim   (then run doctor again)")]
    return [Check("OK", f"nnU-Net's trainer lookup resolves all {len(TRAINERS)} of our trainers "
                        "(e.g. nnUNetTrainerNoSkip, nnUNetTrainerAttentionGate)")]


CHECKS: List[Callable[[], List[Check]]] = [
    _check_python, _check_torch, _check_nnunet, _check_environment, _check_torchvision, _check_shim,
    _check_trainer_lookup,
]


def run_checks() -> List[Check]:
    results: List[Check] = []
    for check in CHECKS:
        try:
            results.extend(check())
        except Exception as e:  # noqa: BLE001 - a crashing check is itself a failure to report
            results.append(Check("FAIL", f"{check.__name__[7:]} check crashed: {e!r}", "report this as a bug"))
    return results


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check torch, nnU-Net, environment and that nnU-Net finds our trainers",
        description="Check torch/CUDA, the nnU-Net version and environment variables, and that nnU-Net's own "
                    "trainer lookup (used by nnUNetv2_train and nnUNetv2_predict) resolves each of our trainers. "
                    "Prints a fix for each problem; exits 1 if any check fails.")
    parser.add_argument("--list-trainers", action="store_true",
                        help="print every trainer we ship (name and what it changes) and exit; the same list is in "
                             "docs/trainers.md")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list_trainers:
        from nnunet_robustness.trainers.registry import trainer_listing

        print(trainer_listing())
        return 0
    results = run_checks()
    for check in results:
        print(f"[{check.status:^4}] {check.what}")
        if check.fix and check.status != "OK":
            print(f"       fix: {check.fix}")
    failed = sum(c.status == "FAIL" for c in results)
    print(f"\n{failed} problem(s) found." if failed else "\nAll checks passed.")
    return 1 if failed else 0
