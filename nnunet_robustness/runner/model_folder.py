"""What is wrong with a damaged model folder, in one line naming the file.

nnU-Net's ``nnUNetPredictor.initialize_from_trained_model_folder`` reads ``plans.json``,
``dataset.json`` and each fold's checkpoint and builds the network from them; a damaged file ends in
whatever its library raises (a JSON decode error, torch's ``PytorchStreamReader failed reading zip
archive``, a ``state_dict`` size mismatch of forty lines) with no word on which file is at fault.

``check_model_files`` checks what can be checked cheaply before nnU-Net reads anything: both JSON
files parse to what nnU-Net needs, and every checkpoint is a complete archive. ``explain_load_failure``
runs only after nnU-Net failed anyway: it compares what the first checkpoint was trained with (nnU-Net
saves the plans and dataset.json in its ``init_args``) with the folder's files and names the one that
disagrees.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Sequence

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import read_json

# what initialize_from_trained_model_folder raises for a file that parses but does not fit: a missing key,
# a wrong type or value, a network that cannot be built or does not take the weights (RuntimeError)
LOAD_ERRORS = (RuntimeError, KeyError, TypeError, ValueError, AttributeError, IndexError, AssertionError,
               EOFError, ImportError)


def checkpoint_paths(model_folder: Path, folds: Sequence[int | str], checkpoint: str) -> list[Path]:
    return [model_folder / f"fold_{fold}" / checkpoint for fold in folds]


def _channels(dataset: dict) -> Any:
    return dataset.get("channel_names", dataset.get("modality"))


def check_model_files(model_folder: Path, folds: Sequence[int | str], checkpoint: str) -> None:
    """Raise ``UserInputError`` naming the file when plans.json or dataset.json is not what nnU-Net reads,
    or a checkpoint is not a complete PyTorch archive (a copy cut short, a download that stopped)."""
    plans_path = model_folder / "plans.json"
    plans = read_json(plans_path, "plans file")
    if not isinstance(plans, dict) or not isinstance(plans.get("configurations"), dict):
        raise UserInputError(f"{plans_path}: not an nnU-Net plans file (no 'configurations' mapping)")
    dataset_path = model_folder / "dataset.json"
    dataset = read_json(dataset_path, "dataset.json")
    if not isinstance(dataset, dict) or not isinstance(_channels(dataset), dict) or not _channels(dataset):
        raise UserInputError(f"{dataset_path}: no 'channel_names' mapping (channel number -> name)")
    for path in checkpoint_paths(model_folder, folds, checkpoint):
        check_checkpoint_archive(path)


def check_checkpoint_archive(path: Path) -> None:
    """torch.save writes a zip archive whose directory is at its end, so a truncated checkpoint has none;
    reading every entry checks their CRCs too (a fraction of a second even for large checkpoints, compared
    with loading them). Files in torch's legacy format (not zip) are left to torch."""
    with open(path, "rb") as stream:
        head = stream.read(4)
    if head[:2] != b"PK":
        if not head:
            raise UserInputError(f"{path}: empty checkpoint file; copy it again or retrain this fold")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise UserInputError(f"{path}: truncated or damaged checkpoint ({e}); copy it again or retrain this "
                             "fold") from None
    if damaged is not None:
        raise UserInputError(f"{path}: damaged checkpoint (its entry {damaged} fails the CRC check); copy it "
                             "again or retrain this fold")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _arch(plans: dict, configuration: str) -> dict | None:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    try:
        manager = PlansManager(plans).get_configuration(configuration)
        return {"network_class_name": manager.network_arch_class_name, **manager.network_arch_init_kwargs}
    except Exception:  # noqa: BLE001 - a configuration that cannot even be read differs from any other
        return None


def explain_load_failure(model_folder: Path, folds: Sequence[int | str], checkpoint: str,
                         error: BaseException) -> str:
    """One line saying which file of the model folder is at fault, after nnU-Net failed with ``error``."""
    import torch

    path = checkpoint_paths(model_folder, folds, checkpoint)[0]
    plans_path, dataset_path = model_folder / "plans.json", model_folder / "dataset.json"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)  # as nnU-Net loads it
    except Exception as e:  # noqa: BLE001 - whatever the unpickler raises, the file is at fault
        return f"{path}: not a readable PyTorch checkpoint ({_first_line(e)}); copy it again or retrain this fold"
    missing = [k for k in ("network_weights", "trainer_name", "init_args") if not isinstance(saved, dict) or k not in saved]
    if missing:
        return f"{path}: not an nnU-Net checkpoint (no {', '.join(missing)})"
    init_args = saved["init_args"] if isinstance(saved["init_args"], dict) else {}
    configuration = init_args.get("configuration")
    plans, dataset = read_json(plans_path, "plans file"), read_json(dataset_path, "dataset.json")
    if configuration not in plans["configurations"]:
        return (f"{plans_path}: no configuration {configuration!r}, which {path} was trained with "
                f"(it has {', '.join(map(repr, plans['configurations']))})")
    try:
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        recursive_find_trainer_class_by_name(saved["trainer_name"])
    except (RuntimeError, AssertionError, ImportError):
        return (f"{path}: trained with trainer {saved['trainer_name']!r}, which nnU-Net does not find here "
                "(`nnunet-robust doctor` lists the trainers it finds)")
    trained_dataset = init_args.get("dataset_json")
    if isinstance(trained_dataset, dict) and isinstance(_channels(trained_dataset), dict):
        here, there = _channels(dataset), _channels(trained_dataset)
        if len(here) != len(there):
            return (f"{dataset_path}: names {len(here)} input channel(s) ({', '.join(map(str, here.values()))}), "
                    f"but {path} was trained with {len(there)} ({', '.join(map(str, there.values()))})")
    trained_plans = init_args.get("plans")
    if isinstance(trained_plans, dict):
        here, there = _arch(plans, configuration), _arch(trained_plans, configuration)
        if here != there and there is not None:
            keys = sorted(k for k in set(here or {}) | set(there) if (here or {}).get(k, "?") != there.get(k, "?"))
            return (f"{plans_path}: the network of configuration {configuration!r} differs from the one {path} was "
                    f"trained with (in {', '.join(keys) or 'its layout'}); use the plans.json saved with the model")
    return (f"{model_folder}: cannot build the model from plans.json, dataset.json and {path.name} of fold "
            f"{folds[0]} ({_first_line(error)})")
