"""nnU-Net's folders and names (``nnUNet_raw``/``_preprocessed``/``_results``, ``-d 501``), resolved the
way nnU-Net resolves them, for every command and module."""

from __future__ import annotations

import os
from pathlib import Path

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.io import is_plain_name


def check_name(name: str, what: str) -> str:
    """``name`` if it is one plain file or folder name; names from arguments (plans, trainer,
    configuration) become files or folders under nnU-Net's folders and must stay inside them."""
    if not is_plain_name(name):
        raise UserInputError(f"{what}: not a plain name (it must not be empty, '.', '..' or contain a path "
                             "separator), so it would lead outside nnU-Net's folders")
    return name


def nnunet_folder(variable: str) -> Path:
    """One of nnU-Net's folders (``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``)."""
    value = os.environ.get(variable)
    if not value:
        raise UserInputError(f"environment variable {variable} is not set; nnU-Net needs it "
                             f"(export {variable}=/path/to/folder)")
    return Path(value)


def dataset_name(dataset: str) -> str:
    """``-d 501`` or ``-d Dataset501_Textures`` -> ``Dataset501_Textures``, as nnU-Net resolves it."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise UserInputError(f"dataset {dataset!r}: {e}") from None
    # nnU-Net passes names that start with "Dataset" through unchanged, and the name becomes a folder
    # under nnUNet_raw/_preprocessed/_results: "Dataset/../../x" must not lead out of them
    if not is_plain_name(name):
        raise UserInputError(f"-d {dataset}: not a dataset name or ID (a dataset name is one folder name, "
                             "without a path separator or '..')")
    return name


def preprocessed_dataset_folder(dataset: str) -> Path:
    folder = nnunet_folder("nnUNet_preprocessed") / dataset_name(dataset)
    if not folder.is_dir():
        raise UserInputError(f"{folder}: no preprocessed dataset; run nnUNetv2_plan_and_preprocess -d {dataset}")
    return folder


def model_folder_from_ids(dataset: str, configuration: str, trainer: str = "nnUNetTrainer",
                          plans: str = "nnUNetPlans") -> Path:
    """The results folder ``nnUNetv2_predict -d D -c C -tr T -p P`` would use."""
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    # trainer, plans and configuration make up the folder name <trainer>__<plans>__<configuration>
    for option, value in (("-c", configuration), ("-tr", trainer), ("-p", plans)):
        check_name(value, f"{option} {value}")
    return Path(get_output_folder(dataset_name(dataset), trainer, plans, configuration))
