"""Every record's reader refuses a broken file with one line that names the file: a record crosses a stage,
so whoever reads it (eval, rate, card, a study) must say which file to fix or re-create, not show a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.records.context_fbr import read_context_fbr, record_path
from nnunet_robustness.records.input_change import InputChange
from nnunet_robustness.records.item_view import ItemView
from nnunet_robustness.records.run_manifest import RunManifest
from nnunet_robustness.records.training_fbr import TRAINING_LOG, TrainingFBR
from nnunet_robustness.records.training_record import RECORD_FILE, TrainingRecord

# record -> (the file a reader reads in ``folder``, how to read it)
READERS: dict[str, tuple[Callable[[Path], Path], Callable[[Path], Any]]] = {
    "run manifest": (RunManifest.path, RunManifest.read),
    "input change": (lambda folder: InputChange.path(folder, "case_1"),
                     lambda folder: InputChange.read_if_present(folder, "case_1")),
    "item view": (lambda folder: ItemView.path(folder, "case_1"),
                  lambda folder: ItemView.read_if_present(folder, "case_1")),
    "context record": (lambda folder: record_path(folder, "case_1"), lambda folder: read_context_fbr(folder, "case_1")),
    "training FBR log": (lambda folder: folder / TRAINING_LOG, lambda folder: TrainingFBR.read(folder / TRAINING_LOG)),
    "robust-training record": (lambda folder: folder / RECORD_FILE, TrainingRecord.read_if_present),
}


@pytest.mark.parametrize("record", READERS)
@pytest.mark.parametrize("content", [b"{not json", b'{"format": 1, "seed": "x", "epochs": [{"epoch": 0}]}',
                                     b"\x00\x01binary"])
def test_a_broken_record_is_refused_in_one_line_naming_its_file(tmp_path, record, content):
    path_of, read = READERS[record]
    path = path_of(tmp_path)
    path.write_bytes(content)
    with pytest.raises(UserInputError) as refused:
        read(tmp_path)
    message = str(refused.value)
    assert str(path) in message and "\n" not in message, message
