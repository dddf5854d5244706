"""Seeded region growing: hand-drawn maps and a randomized comparison with the per-pixel reference."""
import numpy as np
import pytest

from dsrg.growing import grow_cues
from dsrg.growing_reference import connected_components_8, grow_cues_reference

TH1, TH2 = 0.99, 0.85


def refined_from(confident, num_classes, shape):
    """Probabilities (1, C, h, w): uniform, except pixels {(row, col): (class, value)} with that value."""
    probs = np.full((num_classes,) + shape, 1.0 / num_classes)
    for (row, col), (label, value) in confident.items():
        probs[:, row, col] = (1.0 - value) / (num_classes - 1)
        probs[label, row, col] = value
    return probs[None]


def seeds_from(seeds, num_classes, shape):
    """Cues (1, C, h, w) from {(row, col): [classes]}."""
    cues = np.zeros((num_classes,) + shape, dtype=np.float32)
    for (row, col), classes in seeds.items():
        cues[classes, row, col] = 1
    return cues[None]


def labels_of(present, num_classes):
    labels = np.zeros((1, 1, 1, num_classes), dtype=np.float32)
    labels[..., 0] = 1
    labels[..., present] = 1
    return labels


def seeded_pixels(grown, label):
    return sorted(map(tuple, np.argwhere(grown[0, label] > 0.5).tolist()))


def grow_both(labels, probs, cues):
    fast = grow_cues(labels, probs, cues, TH1, TH2)
    reference = grow_cues_reference(labels, probs, cues, TH1, TH2)
    np.testing.assert_array_equal(fast, reference)
    assert fast.dtype == np.float32
    return fast


def test_double_seeded_pixel_keeps_the_highest_class():
    # (0,0) carries seeds of classes 1 and 2, (0,1) is confidently class 1, (0,2) confidently class 2.
    # The label map keeps class 2 at (0,0), so the class-1 region {(0,1)} holds no class-1 seed and
    # does not grow; the class-2 regions {(0,0)} and {(0,2)} are not connected.
    probs = refined_from({(0, 1): (1, 0.9), (0, 2): (2, 0.9)}, 3, (1, 3))
    cues = seeds_from({(0, 0): [1, 2]}, 3, (1, 3))
    grown = grow_both(labels_of([1, 2], 3), probs, cues)
    np.testing.assert_array_equal(grown, cues)


def test_region_touching_seeds_of_two_classes():
    # Row: [seed 1, conf 1, conf 1, seed 2 but confidently class 1]. The class-1 component spans the row;
    # its last pixel carries exactly one seed of another class and is excluded.
    probs = refined_from({(0, 1): (1, 0.9), (0, 2): (1, 0.9), (0, 3): (1, 0.95)}, 3, (1, 4))
    cues = seeds_from({(0, 0): [1], (0, 3): [2]}, 3, (1, 4))
    grown = grow_both(labels_of([1, 2], 3), probs, cues)
    assert seeded_pixels(grown, 1) == [(0, 0), (0, 1), (0, 2)]
    assert seeded_pixels(grown, 2) == [(0, 3)]
    assert seeded_pixels(grown, 0) == []


def test_excluded_pixel_still_bridges_two_components():
    # Row: [seed 1, conf 1, X, conf 1, conf 1], X confidently class 1 but seeded with class 2. X is
    # excluded, yet (0,3) and (0,4) grow because the component is found before the exclusion.
    probs = refined_from({(0, c): (1, 0.9) for c in range(1, 5)}, 3, (1, 5))
    cues = seeds_from({(0, 0): [1], (0, 2): [2]}, 3, (1, 5))
    grown = grow_both(labels_of([1, 2], 3), probs, cues)
    assert seeded_pixels(grown, 1) == [(0, 0), (0, 1), (0, 3), (0, 4)]
    assert seeded_pixels(grown, 2) == [(0, 2)]


def test_pixel_with_two_other_seeds_is_not_excluded():
    probs = refined_from({(0, 1): (1, 0.9), (0, 2): (1, 0.9)}, 3, (1, 3))
    cues = seeds_from({(0, 0): [1], (0, 2): [0, 2]}, 3, (1, 3))
    grown = grow_both(labels_of([1, 2], 3), probs, cues)
    assert seeded_pixels(grown, 1) == [(0, 0), (0, 1), (0, 2)]
    assert seeded_pixels(grown, 0) == [(0, 2)] and seeded_pixels(grown, 2) == [(0, 2)]


def test_absent_classes_are_ignored():
    # Class 2 dominates (0,1) and (0,2) but is absent: the best PRESENT class there is class 1 with a
    # small probability, so nothing is relabelled and nothing grows; class 2 never appears.
    probs = refined_from({(0, 1): (2, 0.97), (0, 2): (2, 0.97)}, 3, (1, 3))
    cues = seeds_from({(0, 0): [1]}, 3, (1, 3))
    grown = grow_both(labels_of([1], 3), probs, cues)
    np.testing.assert_array_equal(grown, cues)
    # The same maps with class 2 present: (0,1), (0,2) become class 2, and with no class-2 seed do not grow.
    grown_present = grow_both(labels_of([1, 2], 3), probs, cues)
    np.testing.assert_array_equal(grown_present, cues)


def test_background_needs_th1_and_foreground_th2():
    probs = refined_from({(0, 1): (0, 0.95), (0, 2): (0, 0.995), (1, 1): (1, 0.86), (1, 2): (1, 0.84)}, 2, (2, 3))
    cues = seeds_from({(0, 0): [0], (1, 0): [1]}, 2, (2, 3))
    grown = grow_both(labels_of([1], 2), probs, cues)
    # (0,1) is background at 0.95 < th1 and stays unlabelled, which cuts the background seed (0,0) off
    # from (0,2) (background at 0.995, labelled): (0,2) is not grown.
    assert seeded_pixels(grown, 0) == [(0, 0)]
    # (1,1) is class 1 at 0.86 > th2 and touches the class-1 seed (1,0); (1,2) at 0.84 is not labelled.
    assert seeded_pixels(grown, 1) == [(1, 0), (1, 1)]


def test_growth_is_8_connected_and_restarts_from_the_original_cues():
    # A diagonal chain of confident class-1 pixels from the seed at (0,0).
    probs = refined_from({(1, 1): (1, 0.9), (2, 2): (1, 0.9), (2, 0): (1, 0.9)}, 2, (3, 3))
    cues = seeds_from({(0, 0): [1]}, 2, (3, 3))
    before = cues.copy()
    grown = grow_both(labels_of([1], 2), probs, cues)
    assert seeded_pixels(grown, 1) == [(0, 0), (1, 1), (2, 0), (2, 2)]
    np.testing.assert_array_equal(cues, before)   # the input cues are not modified


def test_background_seeds_grow_too():
    probs = refined_from({(0, 1): (0, 0.995), (0, 2): (0, 0.995)}, 2, (1, 4))
    cues = seeds_from({(0, 0): [0], (0, 3): [1]}, 2, (1, 4))
    grown = grow_both(labels_of([1], 2), probs, cues)
    assert seeded_pixels(grown, 0) == [(0, 0), (0, 1), (0, 2)]


def test_connected_components_8_reference():
    mask = [[1, 0, 0, 1],
            [0, 1, 0, 1],
            [0, 0, 0, 0],
            [1, 1, 0, 1]]
    labels = connected_components_8(mask)
    assert labels[0][0] == labels[1][1] != 0
    assert labels[0][3] == labels[1][3] != labels[0][0]
    assert labels[3][0] == labels[3][1] not in (labels[0][0], labels[0][3])
    assert labels[3][3] not in (labels[0][0], labels[0][3], labels[3][0])
    assert labels[2] == [0, 0, 0, 0]


def test_shape_and_label_errors():
    probs = np.full((1, 3, 2, 2), 1 / 3)
    with pytest.raises(ValueError, match="cues must have the probabilities' shape"):
        grow_cues(labels_of([1], 3), probs, np.zeros((1, 3, 2, 3)), TH1, TH2)
    with pytest.raises(ValueError, match="N×C"):
        grow_cues(np.ones((1, 1, 1, 4)), probs, np.zeros_like(probs), TH1, TH2)
    no_background = labels_of([1], 3)
    no_background[..., 0] = 0
    with pytest.raises(ValueError, match="background"):
        grow_cues(no_background, probs, np.zeros_like(probs), TH1, TH2)


@pytest.mark.parametrize("seed", range(6))
def test_randomized_against_reference(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        num_images, num_classes = int(rng.integers(1, 4)), int(rng.integers(2, 8))
        shape = (int(rng.integers(1, 14)), int(rng.integers(1, 14)))
        labels = (rng.random((num_images, 1, 1, num_classes)) < 0.5).astype(np.float32)
        labels[..., 0] = 1
        logits = rng.normal(size=(num_images, num_classes) + shape) * rng.uniform(0.5, 6)
        # blocky maps give large connected regions, as real score maps do
        if rng.random() < 0.5:
            logits = np.repeat(np.repeat(logits, 2, axis=2), 2, axis=3)[:, :, :shape[0], :shape[1]]
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        if rng.random() < 0.5:
            probs = probs.astype(np.float32)
        cues = (rng.random(probs.shape) < rng.uniform(0, 0.3)).astype(np.float32)
        th1, th2 = float(rng.uniform(0.5, 0.999)), float(rng.uniform(0.3, 0.95))
        fast = grow_cues(labels, probs, cues, th1, th2)
        reference = grow_cues_reference(labels, probs, cues, th1, th2)
        np.testing.assert_array_equal(fast, reference)


# ---- the dense-CRF refinement that feeds the growing step (dsrg.crf) ----------------------------

from caffe_helpers import random_probs  # noqa: E402
from krahenbuhl2013.testing import reference_crf  # noqa: E402
from dsrg import crf  # noqa: E402
from dsrg.voc import CRF_MEAN_BGR  # noqa: E402


def crf_batch_inputs(seed=0, num_images=2, num_classes=4, size=(9, 7), image_size=(33, 25)):
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, (num_images, num_classes) + size, spread=3.0).astype(np.float32)
    probs[0, 1, 0, 0] = 1e-6   # below the 1e-4 floor
    images = rng.uniform(0, 255, (num_images, 3) + image_size) - np.array(CRF_MEAN_BGR)[None, :, None, None]
    return probs, images.astype(np.float32)


def test_crf_images_resize_restore_mean_and_keep_bgr():
    images = np.zeros((1, 3, 9, 9), dtype=np.float32)
    images[0, 0] = 10.0 - 104.0     # blue plane
    images[0, 1] = np.arange(9, dtype=np.float32)[None, :] * 10 - 117.0   # green ramp along x
    images[0, 2] = 250.4 - 123.0
    restored = crf.crf_images(images, 5, 3)
    assert restored.dtype == np.uint8 and restored.shape == (1, 5, 3, 3)
    assert np.all(restored[0, :, :, 0] == 10) and np.all(restored[0, :, :, 2] == 250)
    np.testing.assert_array_equal(restored[0, 0, :, 1], [0, 40, 80])   # aligned corners: x = 0, 4, 8


def test_bilinear_resize_aligned_corners():
    rng = np.random.default_rng(4)
    images = rng.normal(size=(2, 3, 11, 8)).astype(np.float32)
    resized = crf.bilinear_resize(images, 4, 6)
    exact = images.astype(np.float64)
    for row in range(4):
        for col in range(6):
            y, x = row * 10 / 3, col * 7 / 5
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, 10), min(x0 + 1, 7)
            fy, fx = y - y0, x - x0
            expected = ((1 - fy) * (1 - fx) * exact[:, :, y0, x0] + (1 - fy) * fx * exact[:, :, y0, x1]
                        + fy * (1 - fx) * exact[:, :, y1, x0] + fy * fx * exact[:, :, y1, x1])
            np.testing.assert_allclose(resized[:, :, row, col], expected, rtol=1e-12, atol=1e-12)


def test_crf_images_equal_the_published_zoom_for_321_to_41():
    from scipy import ndimage

    rng = np.random.default_rng(5)
    images = (rng.integers(0, 256, (2, 3, 321, 321)) - np.array([104.008, 116.669, 122.675])[None, :, None, None])
    images = images.astype(np.float32)
    zoomed = ndimage.zoom(images, (1, 1, 41 / 321, 41 / 321), order=1)
    published = np.round(zoomed.transpose(0, 2, 3, 1) + np.array(CRF_MEAN_BGR)).astype(np.uint8)
    np.testing.assert_array_equal(crf.crf_images(images, 41, 41), published)


def test_refine_matches_direct_crf_and_floors(crf_backend):
    probs, images = crf_batch_inputs()
    q = crf.refine(probs, images)
    assert q.shape == probs.shape and q.dtype == np.float64
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-12)
    assert q.min() >= 1e-4 / (1 + probs.shape[1] * 1e-4) - 1e-12
    # the same model through pydensecrf2, built by hand from the published recipe
    unaries = np.maximum(probs, 1e-4).transpose(0, 2, 3, 1)
    direct = np.stack([reference_crf(image, unary, maxiter=10, scale_factor=12.0, color_factor=13)
                       for image, unary in zip(crf.crf_images(images, 9, 7), unaries)])
    direct = np.maximum(direct.transpose(0, 3, 1, 2).astype(np.float64), 1e-4)
    np.testing.assert_allclose(q, direct / direct.sum(axis=1, keepdims=True), atol=1e-4)
    assert not np.allclose(q, probs, atol=1e-2)   # the CRF did change the maps


def test_refine_computes_once_and_never_writes_its_inputs(crf_backend):
    calls = []
    backend = crf.current_backend()

    def counting_backend(images, unaries, **options):
        calls.append(images.copy())
        return backend(images, unaries, **options)

    crf.set_crf_backend(counting_backend)
    probs, images = crf_batch_inputs()
    probs_before, images_before = probs.copy(), images.copy()
    first = crf.refine(probs, images)
    second = crf.refine(probs.copy(), images.copy())       # equal values, other arrays
    assert second is first and len(calls) == 1
    assert not first.flags.writeable
    np.testing.assert_array_equal(probs, probs_before)
    np.testing.assert_array_equal(images, images_before)
    changed = probs.copy()
    changed[1, 2, 3, 4] += 1e-3
    third = crf.refine(changed, images)
    assert len(calls) == 2 and third is not first
    # the images handed to the CRF are BGR: channel 0 is the blue plane plus the blue mean
    # (33×25 -> 9×7 samples every 4th input row and column exactly)
    blue = images[:, 0, ::4, ::4].astype(np.float64)
    np.testing.assert_array_equal(calls[0][..., 0], np.clip(np.round(blue + 104.0), 0, 255))


def test_refine_shape_errors(crf_backend):
    probs, images = crf_batch_inputs()
    with pytest.raises(ValueError, match=r"images must be N×3×H×W with N = 2"):
        crf.refine(probs, images[:1])
    with pytest.raises(ValueError, match="N×C×h×w"):
        crf.refine(probs[0], images)


def test_benchmark_tool_runs_on_a_small_synthetic_batch(crf_backend, capsys):
    from tools.bench_layers import main

    assert main(["--synthetic", "--no-caffe", "--batch-size", "2", "--size", "21", "--image-size", "81",
                 "--repeats", "1", "--reference-repeats", "1"]) == 0
    output = capsys.readouterr().out
    for row in ("SoftmaxLayer", "CRFLayer", "DSRGLayer (CRF shared)", "growing step", "BalancedSeedLossLayer",
                "ConstrainLossLayer", "stage-1 stack"):
        assert row in output
    assert "vectorised equals the per-pixel reference: True" in output
