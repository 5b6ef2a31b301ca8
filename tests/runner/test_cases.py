"""Finding the cases of an imagesTs folder: channels complete, nothing silently dropped or ignored."""

from __future__ import annotations

import pytest

from nnunet_robustness.errors import UserInputError
from nnunet_robustness.runner.cases import list_cases


def _touch(folder, *names):
    for name in names:
        (folder / name).touch()


def test_cases_and_their_channels(tmp_path):
    _touch(tmp_path, "a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz", ".b_0000.tmp.nii.gz")
    cases = list_cases(tmp_path, ".nii.gz", 2)
    assert list(cases) == ["a", "b"]
    assert [p.name for p in cases["a"]] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    assert list(list_cases(tmp_path)) == ["a", "b"]  # ending and channel count found from the files


def test_missing_channel_or_first_channel_is_refused_naming_the_file(tmp_path):
    _touch(tmp_path, "a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz")
    with pytest.raises(UserInputError, match="case b: missing .*b_0001.nii.gz"):
        list_cases(tmp_path, ".nii.gz", 2)
    (tmp_path / "b_0000.nii.gz").unlink()
    _touch(tmp_path, "b_0001.nii.gz")  # a case without its _0000 file is never dropped silently
    with pytest.raises(UserInputError, match="case b: missing .*b_0000.nii.gz"):
        list_cases(tmp_path, ".nii.gz", 2)


def test_extra_channel_for_the_model_is_refused(tmp_path):
    _touch(tmp_path, "a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz")
    with pytest.raises(UserInputError, match=r"a_0001.nii.gz: channel 1 of case a, but the model takes 1 channel"):
        list_cases(tmp_path, ".nii.gz", 1)


def test_list_file_and_other_errors(tmp_path):
    _touch(tmp_path, "a_0000.nii.gz", "a_0001.nii.gz", "a_1_0000.nii.gz", "a_1_0001.nii.gz")
    listing = tmp_path / "list.txt"
    listing.write_text("a_0000.nii.gz\n")
    assert list(list_cases(listing, ".nii.gz", 2)) == ["a"]  # a_1 shares the prefix but is not listed
    listing.write_text("a_0001.nii.gz\n")
    with pytest.raises(UserInputError, match="list entries must be CASE_0000"):
        list_cases(listing, ".nii.gz", 2)
    with pytest.raises(UserInputError, match="no images named CASE_0000.mha"):
        list_cases(tmp_path, ".mha", 1)
    _touch(tmp_path, "c_0000.mha")
    with pytest.raises(UserInputError, match="different endings"):
        list_cases(tmp_path)
    with pytest.raises(UserInputError, match="no such folder"):
        list_cases(tmp_path / "nope", ".nii.gz", 1)
