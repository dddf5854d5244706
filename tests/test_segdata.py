"""Stage-2 segmentation batches: list file, mean, scale, square and rectangular crops with padding,
centred crops, mirroring, prefetching, bad files and settings."""
import numpy as np
import pytest
from PIL import Image

from dsrg.fileio import atomic_save_label_png
from dsrg.segdata import SegmentationBatchLoader, crop_sample, crop_shape

MEAN = (104.0, 117.0, 123.0)


def write_pair(root, name, height, width, seed):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    label = rng.integers(0, 21, (height, width), dtype=np.uint8)
    (root / "images").mkdir(exist_ok=True)
    Image.fromarray(rgb).save(root / "images" / f"{name}.png")
    atomic_save_label_png(root / "labels" / f"{name}.png", label)
    return rgb, label


def write_list(root, names):
    path = root / "list.txt"
    path.write_text("".join(f"/images/{name}.png /labels/{name}.png\n" for name in names))
    return path


def loader(root, source, **options):
    settings = dict(batch_size=2, crop_size=6, mean=MEAN, mirror=False, shuffle=False, seed=0)
    settings.update(options)
    return SegmentationBatchLoader(root, source, **settings)


def test_batch_values_without_crop_or_mirror(tmp_path):
    rgb, label = write_pair(tmp_path, "a", 6, 6, 0)
    rgb_b, label_b = write_pair(tmp_path, "b", 6, 6, 1)
    data = loader(tmp_path, write_list(tmp_path, ["a", "b"]))
    try:
        images, labels = data.next_batch()
        assert images.shape == (2, 3, 6, 6) and labels.shape == (2, 1, 6, 6)
        assert images.dtype == np.float32 and labels.dtype == np.float32
        expected = rgb[:, :, ::-1].astype(np.float32) - np.array(MEAN, np.float32)
        np.testing.assert_array_equal(images[0], expected.transpose(2, 0, 1))
        np.testing.assert_array_equal(labels[0, 0], label)
        np.testing.assert_array_equal(labels[1, 0], label_b)
        images, labels = data.next_batch()   # the next epoch starts again at "a"
        np.testing.assert_array_equal(labels[0, 0], label)
    finally:
        data.close()


def test_small_images_are_padded_with_mean_and_ignore(tmp_path):
    write_pair(tmp_path, "small", 3, 4, 2)
    data = loader(tmp_path, write_list(tmp_path, ["small"]), batch_size=1, crop_size=5, ignore_label=200)
    try:
        images, labels = data.next_batch()
    finally:
        data.close()
    assert np.all(labels[0, 0, 3:, :] == 200) and np.all(labels[0, 0, :, 4:] == 200)
    assert np.all(labels[0, 0, :3, :4] < 21)
    assert np.all(images[0, :, 3:, :] == 0) and np.all(images[0, :, :, 4:] == 0)   # the mean, subtracted


def test_crop_and_mirror_keep_image_and_label_aligned():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(9, 11, 3)).astype(np.float32)
    label = np.arange(99, dtype=np.float32).reshape(9, 11)
    seen_flip = set()
    for _ in range(20):
        image_crop, label_crop = crop_sample(image, label, 5, 255, rng, mirror=True)
        flipped = label_crop[0, 0, 0] > label_crop[0, 0, -1]
        seen_flip.add(bool(flipped))
        row, col = divmod(int(label_crop[0, 0, -1 if flipped else 0]), 11)
        window = image[row:row + 5, col:col + 5].transpose(2, 0, 1)
        np.testing.assert_array_equal(image_crop, window[..., ::-1] if flipped else window)
    assert seen_flip == {True, False}


def test_seeded_shuffling_is_reproducible(tmp_path):
    names = [f"i{k}" for k in range(5)]
    for k, name in enumerate(names):
        write_pair(tmp_path, name, 7, 7, k)
    source = write_list(tmp_path, names)
    runs = []
    for _ in range(2):
        data = loader(tmp_path, source, shuffle=True, mirror=True, seed=3)
        try:
            runs.append([data.next_batch() for _ in range(4)])
        finally:
            data.close()
    for (images_a, labels_a), (images_b, labels_b) in zip(*runs):
        np.testing.assert_array_equal(images_a, images_b)
        np.testing.assert_array_equal(labels_a, labels_b)


def test_missing_and_corrupt_files_are_named(tmp_path):
    write_pair(tmp_path, "a", 6, 6, 0)
    data = loader(tmp_path, write_list(tmp_path, ["a", "gone"]))
    try:
        with pytest.raises(FileNotFoundError, match=r"images/gone\.png"):
            data.next_batch()
        with pytest.raises(FileNotFoundError):   # the error stays raised
            data.next_batch()
    finally:
        data.close()
    (tmp_path / "images" / "bad.png").write_bytes(b"not a png")
    (tmp_path / "labels" / "bad.png").write_bytes(b"not a png")
    data = loader(tmp_path, write_list(tmp_path, ["bad"]), batch_size=1)
    try:
        with pytest.raises(ValueError, match=r"images/bad\.png: cannot read image"):
            data.next_batch()
    finally:
        data.close()


def test_a_label_map_of_another_size_is_named(tmp_path):
    write_pair(tmp_path, "a", 6, 6, 0)
    _, other = write_pair(tmp_path, "b", 5, 6, 1)
    atomic_save_label_png(tmp_path / "labels" / "a.png", other)
    data = loader(tmp_path, write_list(tmp_path, ["a"]), batch_size=1)
    try:
        with pytest.raises(ValueError, match=r"labels/a\.png: label map is 5×6 but image .* is 6×6"):
            data.next_batch()
    finally:
        data.close()


def test_crop_shape_takes_an_int_or_a_height_width_pair():
    assert crop_shape(321) == (321, 321)
    assert crop_shape((321, 321)) == (321, 321)
    assert crop_shape([161, 241]) == (161, 241)
    for bad in (0, -3, True, 3.0, (3,), (3, 4, 5), (3, 0), (3, 2.5), (True, 3), "321", None):
        with pytest.raises(ValueError, match=r"crop_size must be a positive int or a \(height, width\) pair"):
            crop_shape(bad)


def test_rectangular_crops_pad_and_crop_to_height_by_width(tmp_path):
    rgb, label = write_pair(tmp_path, "r", 5, 9, 4)
    data = loader(tmp_path, write_list(tmp_path, ["r"]), batch_size=4, crop_size=(7, 4), mirror=True)
    try:
        images, labels = data.next_batch()
    finally:
        data.close()
    assert images.shape == (4, 3, 7, 4) and labels.shape == (4, 1, 7, 4)
    assert np.all(labels[:, 0, 5:] == 255) and np.all(images[:, :, 5:] == 0)   # 5 rows padded to 7
    bgr = (rgb[:, :, ::-1].astype(np.float32) - np.array(MEAN, np.float32)).transpose(2, 0, 1)
    for position in range(4):
        windows = [(bgr[:, :, left:left + 4], label[:, left:left + 4]) for left in range(6)]
        windows += [(image[..., ::-1], window[:, ::-1]) for image, window in windows]
        assert any(np.array_equal(labels[position, 0, :5], window) and np.array_equal(images[position, :, :5], image)
                   for image, window in windows)


def test_centred_crop_and_scale(tmp_path):
    rgb, label = write_pair(tmp_path, "c", 8, 10, 5)
    data = loader(tmp_path, write_list(tmp_path, ["c"]), batch_size=2, crop_size=(4, 5), random_crop=False,
                  scale=0.5)
    try:
        images, labels = data.next_batch()
    finally:
        data.close()
    expected = (rgb[:, :, ::-1].astype(np.float32) - np.array(MEAN, np.float32)) * 0.5
    for position in range(2):   # the centre, offsets (8 − 4) // 2 = 2 and (10 − 5) // 2 = 2
        np.testing.assert_array_equal(labels[position, 0], label[2:6, 2:7])
        np.testing.assert_array_equal(images[position], expected[2:6, 2:7].transpose(2, 0, 1))


def test_bad_loader_settings_are_named(tmp_path):
    write_pair(tmp_path, "a", 6, 6, 0)
    source = write_list(tmp_path, ["a"])
    with pytest.raises(ValueError, match=r"crop_size must be .* got \(321, 321, 3\)"):
        loader(tmp_path, source, crop_size=(321, 321, 3))
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        loader(tmp_path, source, batch_size=0)
