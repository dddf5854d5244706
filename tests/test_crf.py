"""Tests of the krahenbuhl2013 dense-CRF extension (CRF/), with pydensecrf2 as the oracle.

The oracle is Krähenbühl's own DenseCRF2D (pydensecrf) set up as SEC/DSRG's wrapper does
(krahenbuhl2013.testing.reference_crf). Agreement is checked at the two sizes DSRG uses
(41x41x21 at scale_factor 12 with probabilities in training; 500x375x21 at scale 1 with
log-probabilities at test time), on natural-looking and on random inputs, for both the
AVX2 and the portable SSE kernels.
"""
import threading

import numpy as np
import pytest

import krahenbuhl2013
from krahenbuhl2013 import _native
from krahenbuhl2013.testing import natural_scene, probabilities, random_scene, reference_crf

MEAN_ABS_TOLERANCE = 1e-3
ARGMAX_AGREEMENT = 0.995


def _scene(kind, height, width, n_labels, seed):
    rng = np.random.default_rng(seed)
    if kind == "random":
        return random_scene(height, width, n_labels, rng)
    image, scores, _ = natural_scene(height, width, n_labels, rng)
    if height * width <= 41 * 41:
        return image, probabilities(scores)  # training: CRF on probabilities
    return image, np.log(probabilities(scores))  # test time: CRF on log-probabilities


CASES = {
    "natural-41x41-scale12": ("natural", 41, 41, 12.0),
    "random-41x41-scale12": ("random", 41, 41, 12.0),
    "natural-375x500-scale1": ("natural", 375, 500, 1.0),
    "random-375x500-scale1": ("random", 375, 500, 1.0),
}


@pytest.fixture(scope="module")
def reference_cases():
    """name -> (image, unary, scale_factor, reference Q), computed once per test module."""
    cases = {}
    for seed, (name, (kind, height, width, scale)) in enumerate(CASES.items()):
        image, unary = _scene(kind, height, width, 21, seed)
        cases[name] = (image, unary, scale, reference_crf(image, unary, scale_factor=scale))
    return cases


def _agreement(ours, reference):
    return float(np.abs(ours - reference).mean()), float((ours.argmax(-1) == reference.argmax(-1)).mean())


def _run_native(image, unary, scale, allow_avx2):
    q = np.empty((1,) + unary.shape, dtype=np.float32)
    _native.mean_field(image[np.newaxis], unary[np.newaxis], q, 10, 3.0 / scale, 3.0, 80.0 / scale, 13.0, 10.0, 2,
                       allow_avx2)
    return q[0]


@pytest.mark.parametrize("name", list(CASES))
def test_matches_krahenbuhl_reference(reference_cases, name):
    image, unary, scale, reference = reference_cases[name]
    ours = krahenbuhl2013.CRF(image, unary, scale_factor=scale)
    assert ours.dtype == np.float32 and ours.shape == unary.shape
    mean_abs, agreement = _agreement(ours, reference)
    assert mean_abs <= MEAN_ABS_TOLERANCE, f"{name}: mean |dQ| {mean_abs:.3g} > {MEAN_ABS_TOLERANCE}"
    assert agreement >= ARGMAX_AGREEMENT, f"{name}: argmax agreement {agreement:.5f} < {ARGMAX_AGREEMENT}"
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["natural-41x41-scale12", "random-375x500-scale1"])
def test_portable_kernels_match_reference_too(reference_cases, name):
    image, unary, scale, reference = reference_cases[name]
    portable = _run_native(image, unary, scale, allow_avx2=False)
    mean_abs, agreement = _agreement(portable, reference)
    assert mean_abs <= MEAN_ABS_TOLERANCE and agreement >= ARGMAX_AGREEMENT, (name, mean_abs, agreement)
    if _native.cpu_has_avx2():
        vectorised = _run_native(image, unary, scale, allow_avx2=True)
        assert np.abs(vectorised - portable).max() < 1e-4


def test_matches_reference_on_small_and_odd_shapes():
    """Tiny images, few labels, label counts around the 8-channel padding, odd scales; colour
    std 0.15 spreads lattice keys beyond 64 packed bits (the general hash table)."""
    rng = np.random.default_rng(7)
    shapes = [(1, 1, 3, 1.0, 13), (1, 7, 2, 1.0, 13), (5, 1, 8, 0.5, 5), (6, 9, 9, 12.0, 13), (13, 11, 17, 3.0, 40),
              (9, 8, 33, 1.0, 13), (12, 10, 40, 2.0, 13), (16, 12, 5, 1.0, 0.15)]
    for height, width, n_labels, scale, color in shapes:
        image, unary = random_scene(height, width, n_labels, rng)
        unary = unary * 5.0
        reference = reference_crf(image, unary, maxiter=5, scale_factor=scale, color_factor=color)
        ours = krahenbuhl2013.CRF(image, unary, maxiter=5, scale_factor=scale, color_factor=color)
        np.testing.assert_allclose(ours, reference, atol=1e-4, err_msg=f"{height}x{width}x{n_labels}")


def test_batch_equals_single_image_calls():
    rng = np.random.default_rng(3)
    scenes = [natural_scene(41, 41, 21, rng) for _ in range(5)]
    images = np.stack([image for image, _, _ in scenes])
    unaries = np.stack([probabilities(scores) for _, scores, _ in scenes])
    batch = krahenbuhl2013.CRF_batch(images, unaries, scale_factor=12.0, num_threads=2)
    singles = np.stack([krahenbuhl2013.CRF(image, unary, scale_factor=12.0) for image, unary in zip(images, unaries)])
    assert batch.shape == unaries.shape and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, singles)
    np.testing.assert_array_equal(krahenbuhl2013.CRF_batch(images, unaries, scale_factor=12.0, num_threads=1), batch)
    assert krahenbuhl2013.CRF_batch(images[:0], unaries[:0]).shape == (0, 41, 41, 21)


def test_threads_inside_one_image_agree():
    """Threads split the pixels; only the order of float additions in the splat changes."""
    image, unary = _scene("natural", 200, 180, 21, 11)
    one = krahenbuhl2013.CRF(image, unary, num_threads=1)
    for threads in (2, 3):
        np.testing.assert_allclose(krahenbuhl2013.CRF(image, unary, num_threads=threads), one, atol=1e-5)


def test_concurrent_python_threads_are_safe():
    image, unary = _scene("natural", 60, 50, 21, 5)
    expected = krahenbuhl2013.CRF(image, unary)
    results = [None] * 4

    def work(slot):
        results[slot] = krahenbuhl2013.CRF(image, unary)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(len(results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_map_is_argmax_of_marginals():
    image, unary = _scene("natural", 41, 41, 21, 2)
    labels = krahenbuhl2013.CRF_map(image, unary, scale_factor=12.0)
    assert labels.shape == (41, 41) and np.issubdtype(labels.dtype, np.integer)
    np.testing.assert_array_equal(labels, krahenbuhl2013.CRF(image, unary, scale_factor=12.0).argmax(-1))


def test_zero_iterations_is_softmax_of_unary():
    image, unary = _scene("random", 17, 23, 6, 4)
    unary = unary * 10.0
    expected = np.exp(unary - unary.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(krahenbuhl2013.CRF(image, unary, maxiter=0), expected, rtol=1e-5, atol=1e-7)


def test_one_pixel_and_one_label():
    image = np.array([[[10, 200, 30]]], dtype=np.uint8)
    q = krahenbuhl2013.CRF(image, np.array([[[0.2, 0.7, 0.1]]]))
    np.testing.assert_allclose(q, reference_crf(image, np.array([[[0.2, 0.7, 0.1]]], dtype=np.float32)), atol=1e-6)
    image, unary = _scene("random", 20, 30, 1, 6)
    np.testing.assert_array_equal(krahenbuhl2013.CRF(image, unary), np.ones((20, 30, 1), dtype=np.float32))


def test_non_contiguous_and_float64_inputs_are_converted():
    image, unary = _scene("natural", 41, 41, 21, 8)
    expected = krahenbuhl2013.CRF(image, unary, scale_factor=12.0)
    # Non-contiguous views (transposed twice, strided channel axis) with the same values.
    image_view = np.ascontiguousarray(image.transpose(1, 0, 2)).transpose(1, 0, 2)
    wide = np.zeros((41, 41, 42), dtype=np.float64)
    wide[:, :, ::2] = unary
    unary_view = wide[:, :, ::2]
    assert not image_view.flags.c_contiguous and not unary_view.flags.c_contiguous
    np.testing.assert_array_equal(krahenbuhl2013.CRF(image_view, unary_view, scale_factor=12.0), expected)
    # Whole-number float images and int images are accepted as uint8.
    np.testing.assert_array_equal(krahenbuhl2013.CRF(image.astype(np.float64), unary, scale_factor=12), expected)
    np.testing.assert_array_equal(krahenbuhl2013.CRF(image.astype(np.int64), unary, scale_factor=12), expected)


def test_very_large_unaries_do_not_overflow():
    image, unary = _scene("random", 30, 40, 5, 9)
    cases = [(unary * 1e4, unary.argmax(-1)), (unary * -1e20, unary.argmin(-1)),
             (unary * 1e38 - np.float32(3e38), unary.argmax(-1)), (unary.astype(np.float64) * 3e38, unary.argmax(-1))]
    for scores, winner in cases:
        q = krahenbuhl2013.CRF(image, scores)
        assert np.all(np.isfinite(q))
        np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(q.argmax(-1), winner)


def _expect_value_error(match, function, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        function(*args, **kwargs)


def test_bad_shapes_raise_value_error_naming_expected_and_actual():
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    unary = np.zeros((4, 5, 2), dtype=np.float32)
    _expect_value_error(r"image must be H x W x 3, got shape \(4, 5\)", krahenbuhl2013.CRF, image[..., 0], unary)
    _expect_value_error(r"image must be H x W x 3, got shape \(4, 5, 4\)", krahenbuhl2013.CRF,
                        np.zeros((4, 5, 4), np.uint8), unary)
    _expect_value_error(r"unary must be H x W x C \(3 dimensions\), got shape \(4, 5\)", krahenbuhl2013.CRF, image,
                        unary[..., 0])
    _expect_value_error(r"image is 4 x 5 but unary is 5 x 4", krahenbuhl2013.CRF, image,
                        np.zeros((5, 4, 2), np.float32))
    _expect_value_error(r"at least 1 label, got shape \(4, 5, 0\)", krahenbuhl2013.CRF, image,
                        np.zeros((4, 5, 0), np.float32))
    _expect_value_error(r"at least 1 x 1, got 0 x 5", krahenbuhl2013.CRF, np.zeros((0, 5, 3), np.uint8),
                        np.zeros((0, 5, 2), np.float32))
    _expect_value_error(r"images must be N x H x W x 3, got shape \(4, 5, 3\)", krahenbuhl2013.CRF_batch, image,
                        unary[np.newaxis])
    _expect_value_error(r"2 images but 1 unaries", krahenbuhl2013.CRF_batch, np.stack([image, image]),
                        unary[np.newaxis])


def test_bad_values_raise_value_error():
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    unary = np.zeros((4, 5, 2), dtype=np.float32)
    too_bright = np.zeros((4, 5, 3), dtype=np.int32)
    too_bright[1, 1, 1] = 300
    _expect_value_error(r"\[0, 255\].*got range \[0, 300\]", krahenbuhl2013.CRF, too_bright, unary)
    too_dark = np.where(too_bright > 0, -1.0, 0.0)
    _expect_value_error(r"\[0, 255\].*got range \[-1, 0\]", krahenbuhl2013.CRF, too_dark, unary)
    _expect_value_error(r"whole numbers", krahenbuhl2013.CRF, np.full((4, 5, 3), 0.5), unary)
    _expect_value_error(r"NaN or Inf", krahenbuhl2013.CRF, np.full((4, 5, 3), np.nan), unary)
    _expect_value_error(r"uint8.*got dtype <U1", krahenbuhl2013.CRF, np.full((4, 5, 3), "a"), unary)
    _expect_value_error(r"uint8.*got dtype complex128", krahenbuhl2013.CRF, image.astype(complex), unary)
    for bad in (np.nan, np.inf, -np.inf):
        broken = unary.copy()
        broken[1, 2, 1] = bad
        _expect_value_error(r"unary must be finite, got NaN or Inf", krahenbuhl2013.CRF, image, broken)
    _expect_value_error(r"must fit float32.*got \|u\| up to 1e\+39", krahenbuhl2013.CRF, image,
                        np.full((4, 5, 2), 1e39))
    _expect_value_error(r"unary must be real numbers, got dtype object", krahenbuhl2013.CRF, image,
                        np.full((4, 5, 2), None))


def test_bad_parameters_raise_value_error():
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    unary = np.zeros((4, 5, 2), dtype=np.float32)
    _expect_value_error(r"maxiter must be an integer >= 0, got -1", krahenbuhl2013.CRF, image, unary, maxiter=-1)
    _expect_value_error(r"maxiter must be an integer >= 0, got 2.5", krahenbuhl2013.CRF, image, unary, maxiter=2.5)
    for scale in (0, -1.0, np.nan, np.inf):
        _expect_value_error(r"scale_factor must be finite and > 0, got", krahenbuhl2013.CRF, image, unary,
                            scale_factor=scale)
    _expect_value_error(r"scale_factor must be a real number > 0, got '2'", krahenbuhl2013.CRF, image, unary,
                        scale_factor="2")
    _expect_value_error(r"color_factor must be finite and > 0, got 0", krahenbuhl2013.CRF, image, unary,
                        color_factor=0)
    _expect_value_error(r"num_threads must be None or an integer >= 1, got 0", krahenbuhl2013.CRF_batch,
                        image[np.newaxis], unary[np.newaxis], num_threads=0)
    _expect_value_error(r"exceed the lattice range", krahenbuhl2013.CRF, image, unary, scale_factor=1e9)
    _expect_value_error(r"exceed the lattice range", krahenbuhl2013.CRF, image, unary, color_factor=1e-9)
