"""The picture run keeps of each item: the slice, the scale and the subsampling eval's contours rely on."""

from __future__ import annotations

import numpy as np

from nnunet_robustness.records.item_view import VIEW_SIZE, ItemView, display_range


def test_a_volume_is_shown_by_its_slice_with_most_reference_foreground():
    image = np.random.default_rng(0).random((1, 12, 40, 40)).astype(np.float32)
    label = np.zeros((1, 12, 40, 40), np.uint8)
    label[0, 3, 5:10, 5:10] = 1
    label[0, 7, 5:25, 5:25] = 1  # the most foreground
    view = ItemView.of(image, display_range(image), label)
    assert view.slice_index == 7 and view.stride == 1 and view.image.dtype == np.uint8
    np.testing.assert_array_equal(view.mask_slice(label[0]), label[0, 7])
    assert ItemView.of(image, display_range(image), None).slice_index == 6  # no reference: the middle


def test_large_2d_images_are_subsampled_and_masks_follow(tmp_path):
    image = np.zeros((1, 1, 300, 200), np.float32)
    image[0, 0, :, 100:] = 10.0
    view = ItemView.of(image, (0.0, 10.0), None)
    assert view.slice_index == -1 and view.stride == 3 and max(view.image.shape) <= VIEW_SIZE
    assert view.image[0, 0] == 0 and view.image[0, -1] == 255
    mask = np.zeros((300, 200), bool)
    assert view.mask_slice(mask).shape == view.image.shape
    view.write(tmp_path, "case_1")
    again = ItemView.read_if_present(tmp_path, "case_1")
    np.testing.assert_array_equal(again.image, view.image)
    assert (again.slice_index, again.stride) == (-1, 3)
    assert ItemView.read_if_present(tmp_path, "other") is None


def test_a_corrupted_copy_is_shown_on_the_clean_images_scale():
    """Views of a case share the clean image's range: a brighter copy looks brighter."""
    clean = np.random.default_rng(1).random((1, 1, 32, 32)).astype(np.float32)
    shared = display_range(clean)
    assert ItemView.of(clean * 1.5 + 0.5, shared, None).image.mean() > ItemView.of(clean, shared, None).image.mean()
