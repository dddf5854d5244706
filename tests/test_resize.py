"""dsrg.resize.bilinear_resize: aligned corners against scipy's zoom and hand values, both precisions
(values as given with a float64 result; float32 in and out) against the formulas of the two resizers it
replaced, and its refusals."""
import numpy as np
import pytest
from scipy import ndimage

from dsrg.resize import bilinear_resize


def formerly_bilinear_resize(images, height, width):
    """The CRF's former N×K×H×W resizer (float64 arithmetic and result), written out as it was."""

    def taps(source_size, target_size):
        if target_size == 1 or source_size == 1:
            positions = np.zeros(target_size)
        else:
            positions = np.arange(target_size) * ((source_size - 1) / (target_size - 1))
        lower = np.minimum(np.floor(positions).astype(np.int64), source_size - 1)
        return lower, np.minimum(lower + 1, source_size - 1), positions - lower

    top, bottom, row_weight = taps(images.shape[2], height)
    left, right, col_weight = taps(images.shape[3], width)
    row_weight, col_weight = row_weight[:, None], col_weight[None, :]

    def corner(rows, cols):
        return images[:, :, rows[:, None], cols[None, :]].astype(np.float64)

    upper = corner(top, left) * (1.0 - col_weight) + corner(top, right) * col_weight
    lower = corner(bottom, left) * (1.0 - col_weight) + corner(bottom, right) * col_weight
    return upper * (1.0 - row_weight) + lower * row_weight


def formerly_resize_bilinear(array, height, width):
    """dsrg.inference's former C×H×W resizer: the input as float32, the result as float32."""
    array = np.asarray(array, dtype=np.float32)
    return formerly_bilinear_resize(array[np.newaxis], height, width)[0].astype(np.float32)


@pytest.mark.parametrize("height, width", [(13, 21), (4, 6), (1, 5), (7, 7), (3, 1)])
def test_both_precisions_reproduce_the_former_resizers_bit_for_bit(height, width):
    rng = np.random.default_rng(21)
    images = rng.normal(size=(2, 3, 7, 5)) * 100
    for source in (images, images.astype(np.float32), images[:, :, ::-1, ::2].astype(np.float32)):
        as_given = bilinear_resize(source, height, width)
        assert as_given.dtype == np.float64
        np.testing.assert_array_equal(as_given, formerly_bilinear_resize(source, height, width))
        for channels in source:
            rounded = bilinear_resize(channels, height, width, dtype=np.float32)
            assert rounded.dtype == np.float32 and rounded.shape == (3, height, width)
            np.testing.assert_array_equal(rounded, formerly_resize_bilinear(channels, height, width))


def test_matches_aligned_corner_zoom():
    rng = np.random.default_rng(0)
    array = rng.normal(size=(3, 7, 5)).astype(np.float32)
    resized = bilinear_resize(array, 13, 21, dtype=np.float32)
    expected = ndimage.zoom(array.astype(np.float64), (1, 13 / 7, 21 / 5), order=1, grid_mode=False)
    assert resized.shape == (3, 13, 21)
    np.testing.assert_allclose(resized, expected, atol=1e-5)
    assert resized[0, 0, 0] == array[0, 0, 0] and resized[2, -1, -1] == array[2, -1, -1]


def test_hand_example_and_degenerate_sizes():
    array = np.array([[[0.0, 2.0], [4.0, 6.0]]], dtype=np.float32)
    np.testing.assert_allclose(bilinear_resize(array, 3, 3, dtype=np.float32)[0],
                               [[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    np.testing.assert_array_equal(bilinear_resize(array, 2, 2, dtype=np.float32), array)
    single = np.full((2, 1, 1), 7.0, dtype=np.float32)
    assert np.all(bilinear_resize(single, 4, 3, dtype=np.float32) == 7.0)
    np.testing.assert_array_equal(bilinear_resize(np.arange(3, dtype=np.uint8)[None, None, None], 1, 5)[0, 0, 0],
                                  [0, 0.5, 1, 1.5, 2])


def test_refuses_other_layouts_and_empty_sizes():
    with pytest.raises(ValueError, match="N×K×H×W or C×H×W"):
        bilinear_resize(np.zeros((4, 4)), 2, 2)
    with pytest.raises(ValueError, match="output size must be positive, got 0×2"):
        bilinear_resize(np.zeros((1, 4, 4)), 0, 2)
