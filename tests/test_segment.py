"""tools/segment.py: a trained model on one's own photos, through a tiny deploy net with fixed weights.

Odd sizes and image modes give a label map and an overlay of the image's size; --out, --crf and
--max-side; the label map is tools/infer.py's for the same image, net and settings; bad inputs are
one stderr line each while the good images are still done (exit 1); a usage error is exit 2.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caffe_helpers import input_layer, load_tool

caffe = pytest.importorskip("caffe")

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 3

# Class scores are a 1×1 convolution of the mean-subtracted BGR input, average-pooled to half the
# resolution (so the scores are resized back to the image, as a strided net's are).
TINY_DEPLOY = input_layer("images", (1, 3, 8, 8)) + """
layer { name: "score_full" type: "Convolution" bottom: "images" top: "score_full"
        convolution_param { num_output: 3 kernel_size: 1 } }
layer { name: "score" type: "Pooling" bottom: "score_full" top: "score"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 } }
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(deploy prototxt, caffemodel) of the tiny net: class c follows input channel c (B, G, R)."""
    folder = tmp_path_factory.mktemp("model")
    deploy = folder / "deploy.prototxt"
    deploy.write_text(TINY_DEPLOY)
    net = caffe.Net(str(deploy), caffe.TEST)
    net.params["score_full"][0].data[...] = (np.eye(3, dtype=np.float32) * 0.05)[:, :, None, None]
    net.params["score_full"][1].data[...] = [0.2, 0.0, -0.1]
    weights = folder / "tiny.caffemodel"
    net.save(str(weights))
    return deploy, weights


def noise(height, width, seed, channels=3, block=4):
    """A random photo of block×block squares of colour, so that every class wins somewhere."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (-(-height // block), -(-width // block), channels), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:height, :width]


def net_args(model, *extra):
    deploy, weights = model
    return ["--deploy", str(deploy), "--weights", str(weights), "--no-progress", *map(str, extra)]


def read_labels(path):
    with Image.open(path) as image:
        assert image.mode == "P"
        return np.asarray(image)


def image_size(path):
    with Image.open(path) as image:
        return image.size


def test_odd_sizes_and_image_modes_give_outputs_of_the_image_size(model, tmp_path, capsys):
    grey = tmp_path / "grey.jpg"
    Image.fromarray(noise(23, 37, 0, 1)[:, :, 0], "L").save(grey, quality=95)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([noise(37, 23, 1), np.full((37, 23), 128, np.uint8)]), "RGBA").save(rgba)
    palette = tmp_path / "palette.png"
    Image.fromarray(noise(19, 29, 2)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(palette)
    rgb = tmp_path / "photo.jpeg"
    Image.fromarray(noise(40, 31, 3)).save(rgb, quality=95)

    assert load_tool("segment").main([str(grey), str(rgba), str(palette), str(rgb)] + net_args(model)) == 0
    for path in (grey, rgba, palette, rgb):
        size = image_size(path)
        labels = read_labels(tmp_path / f"{path.stem}_seg.png")
        assert labels.shape == size[::-1] and labels.max() < NUM_CLASSES
        assert image_size(tmp_path / f"{path.stem}_overlay.jpg") == size
    assert len(np.unique(read_labels(tmp_path / "photo_seg.png"))) == NUM_CLASSES
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{grey} -> {tmp_path / 'grey_seg.png'}, grey_overlay.jpg: ")
    assert out[-1] == "segment.py: 4 of 4 images segmented"


def test_out_folder_png_overlay_and_crf(model, tmp_path):
    photo = tmp_path / "photos" / "street.jpg"
    photo.parent.mkdir()
    Image.fromarray(noise(23, 37, 4)).save(photo, quality=95)
    out = tmp_path / "made" / "here"
    segment = load_tool("segment")
    assert segment.main([str(photo), "--out", str(out), "--overlay-ext", ".png"] + net_args(model)) == 0
    assert sorted(path.name for path in out.iterdir()) == ["street_overlay.png", "street_seg.png"]
    assert sorted(path.name for path in photo.parent.iterdir()) == ["street.jpg"]
    plain = read_labels(out / "street_seg.png")

    assert segment.main([str(photo), "--out", str(out), "--crf"] + net_args(model)) == 0
    refined = read_labels(out / "street_seg.png")
    assert refined.shape == plain.shape == (23, 37) and refined.max() < NUM_CLASSES
    assert image_size(out / "street_overlay.jpg") == (37, 23)


@pytest.mark.parametrize("crf", [False, True], ids=["plain", "crf"])
def test_the_label_map_is_infer_py_s(model, tmp_path, crf):
    images = tmp_path / "images"
    images.mkdir()
    for name, (height, width), seed in (("a", (23, 37), 5), ("b", (50, 41), 6)):
        Image.fromarray(noise(height, width, seed)).save(images / f"{name}.jpg", quality=95)
    (tmp_path / "ids.txt").write_text("a\nb\n")
    settings = ["--scale-mode", "relative", "--scales", "0.75,1,1.25"] + (["--crf"] if crf else [])
    assert load_tool("infer").main(["--images", str(images), "--ids", str(tmp_path / "ids.txt"),
                                    "--out", str(tmp_path / "infer")] + settings + net_args(model)) == 0
    # segment's defaults are the same settings
    assert load_tool("segment").main([str(images / "a.jpg"), str(images / "b.jpg"), "--out", str(tmp_path / "seg")]
                                     + (["--crf"] if crf else []) + net_args(model)) == 0
    for name in ("a", "b"):
        expected = read_labels(tmp_path / "infer" / f"{name}.png")
        assert len(np.unique(expected)) > 1
        np.testing.assert_array_equal(read_labels(tmp_path / "seg" / f"{name}_seg.png"), expected)


def test_large_photos_run_at_max_side_and_come_back_at_full_size(model, tmp_path):
    photo = tmp_path / "big.png"
    Image.fromarray(noise(60, 90, 7, block=15)).save(photo)
    segment = load_tool("segment")
    calls = []
    forward = segment.CaffeForward.__call__

    def recording(self, batch):
        calls.append(batch.shape[2:])
        return forward(self, batch)

    segment.CaffeForward.__call__ = recording
    try:
        assert segment.main([str(photo), "--max-side", "30"] + net_args(model)) == 0
    finally:
        segment.CaffeForward.__call__ = forward
    assert calls == [(15, 22), (20, 30), (25, 38)]       # 0.75, 1, 1.25 × 20×30
    full = read_labels(tmp_path / "big_seg.png")
    assert full.shape == (60, 90) and full.max() < NUM_CLASSES
    assert segment.main([str(photo), "--max-side", "0"] + net_args(model)) == 0
    assert np.mean(read_labels(tmp_path / "big_seg.png") == full) > 0.8     # the same layout, edges aside


def test_photos_are_turned_upright_by_their_exif_orientation(model, tmp_path):
    photo = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                      # shown rotated 90° clockwise
    Image.fromarray(noise(10, 24, 8)).save(photo, quality=95, exif=exif.tobytes())
    assert load_tool("segment").main([str(photo)] + net_args(model)) == 0
    assert read_labels(tmp_path / "phone_seg.png").shape == (24, 10)
    assert image_size(tmp_path / "phone_overlay.jpg") == (10, 24)


def test_overlay_keeps_background_plain_and_names_the_classes_found(model):
    from dsrg.visual import PALETTE_RGB, overlay

    image = np.full((60, 120, 3), 200, dtype=np.uint8)
    labels = np.zeros((60, 120), dtype=np.uint8)
    labels[:, 60:] = 2
    blended = overlay(image, labels)
    assert np.all(blended[:, :60] == 200)
    np.testing.assert_array_equal(blended[0, 60], np.rint(0.5 * 200 + 0.5 * PALETTE_RGB[2].astype(float)))
    segment = load_tool("segment")
    with_legend = np.asarray(segment.overlay_image(image, labels, ["background", "cat", "dog"]))
    assert with_legend.shape == image.shape
    assert (with_legend[-10:, :40] != blended[-10:, :40]).any()        # the legend, lower left
    np.testing.assert_array_equal(with_legend[:20], blended[:20])
    tiny = np.asarray(segment.overlay_image(image[:12, :20], labels[:12, :20] + 1, ["background", "cat", "dog"]))
    np.testing.assert_array_equal(tiny, overlay(image[:12, :20], labels[:12, :20] + 1))   # no room: no legend
    assert segment.class_shares(labels, ["background", "cat", "dog"]) == "background 50%, dog 50%"


def test_outputs_named_inputs_and_clashing_stems(tmp_path):
    segment = load_tool("segment")
    for name in ("a.jpg", "a.png", "a_seg.png", "a_overlay.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"")
    jobs, notes = segment.plan([str(tmp_path / name) for name in
                                ("a.jpg", "a_seg.png", "a_overlay.jpg", "b.jpg", "a.png", "b.jpg")], None, ".jpg")
    assert [(path.name, seg.name, overlay.name, problem is None) for path, seg, overlay, problem in jobs] == [
        ("a.jpg", "a_seg.png", "a_overlay.jpg", True), ("b.jpg", "b_seg.png", "b_overlay.jpg", True),
        ("a.png", "a_seg.png", "a_overlay.jpg", False)]
    assert "would replace those of" in jobs[2][3] and str(tmp_path / "a.jpg") in jobs[2][3]
    assert notes == [f"segment.py: skipped {tmp_path / 'a_seg.png'}: named like an output of this tool",
                     f"segment.py: skipped {tmp_path / 'a_overlay.jpg'}: named like an output of this tool"]


def test_a_classes_file_must_name_every_class_of_the_net(model, tmp_path):
    photo = tmp_path / "x.png"
    Image.fromarray(noise(9, 9, 9)).save(photo)
    classes = tmp_path / "classes.txt"
    classes.write_text("background\ncat\n")
    with pytest.raises(ValueError, match=r"classes\.txt: 2 class names, but the net scores 3 classes"):
        load_tool("segment").main([str(photo), "--classes", str(classes)] + net_args(model))


def run_segment(*arguments):
    return subprocess.run([sys.executable, str(REPO / "tools" / "segment.py"), *map(str, arguments)],
                          capture_output=True, text=True, timeout=120)


def test_bad_inputs_are_one_line_each_and_the_good_images_are_still_done(model, tmp_path):
    first, last = tmp_path / "first.jpg", tmp_path / "last.png"
    Image.fromarray(noise(23, 37, 10)).save(first, quality=95)
    Image.fromarray(noise(37, 23, 11)).save(last)
    missing = tmp_path / "missing.jpg"
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo\n")
    truncated = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    bad = [missing, text, truncated, folder]

    done = run_segment(first, *bad, last, *net_args(model))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == len(bad), done.stderr
    for line, path, expected in zip(lines, bad, ("image not found", "not in a format PIL decodes; expected a JPEG",
                                                 "image file is truncated", "is a folder, expected an image file")):
        assert line.startswith("segment.py: error: ") and str(path) in line and expected in line, line
    for good in (first, last):
        assert read_labels(tmp_path / f"{good.stem}_seg.png").shape == image_size(good)[::-1]
        assert image_size(tmp_path / f"{good.stem}_overlay.jpg") == image_size(good)
    assert not list(tmp_path.glob("missing_*")) + list(tmp_path.glob("notes_*")) + list(tmp_path.glob("cut_*"))
    assert done.stdout.splitlines()[-1] == "segment.py: 2 of 6 images segmented, 4 failed (named above on stderr)"


def test_usage_errors_exit_2_and_a_missing_net_exits_1(model, tmp_path):
    photo = tmp_path / "x.png"
    Image.fromarray(noise(9, 9, 12)).save(photo)
    no_deploy = run_segment(photo, "--weights", model[1])
    assert no_deploy.returncode == 2 and "the following arguments are required: --deploy" in no_deploy.stderr
    no_image = run_segment(*net_args(model))
    assert no_image.returncode == 2 and "IMAGE" in no_image.stderr.splitlines()[-1]
    assert run_segment(photo, "--max-side", "-1", *net_args(model)).returncode == 2
    gone = tmp_path / "gone.prototxt"
    missing_net = run_segment(photo, "--deploy", gone, "--weights", model[1])
    assert missing_net.returncode == 1
    assert missing_net.stderr.strip() == f"segment.py: deploy prototxt not found: {gone}"
    assert not (tmp_path / "x_seg.png").exists()
